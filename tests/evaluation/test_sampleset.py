"""Sample-set metrics: floors, sensitivity to blur / masking, the corruption detectors, determinism, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from ambientmri.data.synth import phantom
from ambientmri.evaluation.sampleset import (
    _pyr_up,
    laplacian_pyramid,
    normalize_images,
    radial_power_spectrum,
    radial_spectrum_distance,
    sampleset_report,
    sliced_wasserstein_distance,
    unmeasured_energy_fraction,
    zero_pixel_fraction,
)

SHAPE = (64, 64)
ACS = 6


def draw(n: int, seed: int, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """``n`` magnitude brain-phantom slices with complex Gaussian noise (a fresh draw per seed)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = phantom("brain", shape, rng, fov=shape)
        x = x + 0.02 * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
        out.append(np.abs(x))
    return np.asarray(out)


def fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def train_mask_frequency(width: int = SHAPE[1], p: float = 0.25) -> np.ndarray:
    """Mean of random column masks with ``ACS`` central columns: 1 in the ACS, ``p`` elsewhere."""
    freq = np.full(width, p)
    freq[width // 2 - ACS // 2 : width // 2 + ACS // 2] = 1.0
    return freq


def zero_filled(images: np.ndarray, seed: int, p: float = 0.25) -> np.ndarray:
    """What a naive model trained on zero-filled images would generate: masked-k-space magnitudes."""
    rng = np.random.default_rng(seed)
    w = images.shape[-1]
    masks = rng.uniform(size=(images.shape[0], 1, w)) < p
    masks[..., w // 2 - ACS // 2 : w // 2 + ACS // 2] = True
    return np.abs(ifft2c(fft2c(images) * masks))


@pytest.fixture(scope="module")
def sets() -> dict[str, np.ndarray]:
    ref = draw(16, 1)
    return {
        "reference": ref,
        "fresh": draw(16, 2),
        "blurred": ndimage.gaussian_filter(ref, (0, 1.0, 1.0)),
        "zero_filled": zero_filled(ref, 3),
    }


@pytest.fixture(scope="module")
def reports(sets) -> dict[str, dict]:
    freq = train_mask_frequency()
    return {
        name: sampleset_report(images, sets["reference"], train_mask_frequency=freq, seed=0)
        for name, images in sets.items()
    }


def test_identical_sets_are_at_zero(reports):
    r = reports["reference"]
    assert r["swd"]["levels"] == [0.0] * len(r["swd"]["levels"])
    assert r["swd"]["resolutions"] == [[64, 64], [32, 32], [16, 16]]
    assert r["radial_spectrum"]["distance"] == 0.0
    assert r["zero_pixels"]["difference"] == 0.0 and not r["zero_pixels"]["flagged"]
    assert r["unmeasured_energy"]["ratio"] == 1.0 and not r["unmeasured_energy"]["flagged"]


def test_fresh_draw_sits_at_a_small_floor(reports):
    fresh = reports["fresh"]
    assert 0 < fresh["swd"]["mean"] < 0.1
    assert 0 < fresh["radial_spectrum"]["distance"] < 0.15
    assert 0.8 < fresh["unmeasured_energy"]["ratio"] < 1.25 and not fresh["unmeasured_energy"]["flagged"]
    assert not fresh["zero_pixels"]["flagged"]


@pytest.mark.parametrize("name", ["blurred", "zero_filled"])
def test_degraded_copies_are_farther_than_a_fresh_draw(reports, name):
    fresh, bad = reports["fresh"], reports[name]
    assert bad["swd"]["mean"] > fresh["swd"]["mean"]
    assert bad["swd"]["levels"][0] > 1.5 * fresh["swd"]["levels"][0]  # finest scale
    assert bad["radial_spectrum"]["distance"] > 3 * fresh["radial_spectrum"]["distance"]
    assert bad["radial_spectrum"]["band_log10_ratio"]["high"] < -0.2  # too little high-frequency power


def test_reference_descriptor_normalisation_is_sensitive_too(sets):
    fresh = sliced_wasserstein_distance(sets["fresh"], sets["reference"], descriptor_normalization="reference")
    blurred = sliced_wasserstein_distance(sets["blurred"], sets["reference"], descriptor_normalization="reference")
    assert blurred["levels"][0] > 3 * fresh["levels"][0]


def test_zeroed_high_frequency_lines_are_flagged(sets, reports):
    ue = reports["zero_filled"]["unmeasured_energy"]
    assert ue["flagged"] and ue["ratio"] < 0.5
    assert ue["region_fraction"] == pytest.approx(1 - ACS / SHAPE[1])
    # deterministically zeroing every outer column but one in four: flagged; the fraction is per image
    ref = sets["reference"]
    k = fft2c(ref)
    keep = np.zeros(SHAPE[1], bool)
    keep[::4] = True
    keep[SHAPE[1] // 2 - ACS // 2 : SHAPE[1] // 2 + ACS // 2] = True
    lined = np.abs(ifft2c(k * keep))
    frac_ref = unmeasured_energy_fraction(ref, train_mask_frequency())
    frac_lined = unmeasured_energy_fraction(lined, train_mask_frequency())
    assert frac_ref.shape == (16,) and np.all(frac_lined < frac_ref)
    report = sampleset_report(lined, ref, train_mask_frequency=train_mask_frequency()[None, :])
    assert report["unmeasured_energy"]["flagged"]


def test_unmeasured_energy_by_hand():
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal((2, 8, 8)))  # magnitudes are taken anyway
    freq = np.ones((8, 8))
    freq[:, :2] = 0.1
    power = np.abs(fft2c(x)) ** 2
    expected = power[:, :, :2].sum(axis=(1, 2)) / power.sum(axis=(1, 2))
    np.testing.assert_allclose(unmeasured_energy_fraction(x, freq), expected, rtol=1e-12)
    np.testing.assert_array_equal(unmeasured_energy_fraction(np.zeros((1, 8, 8)), freq), [0.0])


def test_pixel_masked_set_is_flagged_by_zero_fraction(sets):
    ref = sets["reference"]
    rng = np.random.default_rng(4)
    holes = rng.uniform(size=ref.shape) < 0.1  # naive inpainting model: 10% of pixels stay at 0
    masked = np.where(holes, 0.0, ref)
    report = sampleset_report(masked, ref)
    assert report["zero_pixels"]["flagged"]
    assert report["zero_pixels"]["difference"] == pytest.approx(0.1, abs=0.02)
    assert report["unmeasured_energy"] is None
    np.testing.assert_allclose(zero_pixel_fraction(masked), holes.reshape(16, -1).mean(axis=1), atol=0.01)


def test_determinism_under_a_seed(sets, global_rng_guard):
    a = sampleset_report(sets["fresh"], sets["reference"], seed=7)
    b = sampleset_report(sets["fresh"], sets["reference"], seed=7)
    c = sampleset_report(sets["fresh"], sets["reference"], seed=8)
    assert json.dumps(a) == json.dumps(b)
    assert a["swd"]["levels"] != c["swd"]["levels"]
    assert a["radial_spectrum"] == c["radial_spectrum"]  # no randomness there


def test_intensity_scale_and_unequal_sizes(sets):
    ref, fresh = sets["reference"], sets["fresh"]
    a = sampleset_report(fresh, ref)
    b = sampleset_report(7.5 * fresh, ref)  # p99 normalisation: a global scale does not matter
    assert b["swd"]["mean"] == pytest.approx(a["swd"]["mean"], rel=1e-9)
    assert b["radial_spectrum"]["distance"] == pytest.approx(a["radial_spectrum"]["distance"], abs=1e-9)
    c = sampleset_report(fresh[:5], ref)  # 5 generated against 16 reference images
    assert c["num_generated"] == 5 and c["num_reference"] == 16
    assert np.isfinite(c["swd"]["mean"]) and c["swd"]["mean"] > 0
    # complex input is reduced to magnitudes
    phase = np.exp(1j * np.random.default_rng(0).uniform(0, 6, ref.shape))
    np.testing.assert_allclose(sampleset_report(fresh * phase, ref)["swd"]["levels"], a["swd"]["levels"], rtol=1e-9)


def test_normalize_images():
    x = np.stack([np.arange(100.0).reshape(10, 10), np.zeros((10, 10)), -np.ones((10, 10))])
    out = normalize_images(x, "p99")
    assert out[0].max() == pytest.approx(99 / np.percentile(np.arange(100.0), 99))
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_array_equal(out[2], 1.0)
    assert normalize_images(x, "max")[0].max() == 1.0
    np.testing.assert_array_equal(normalize_images(x, "none"), np.abs(x))


def test_laplacian_pyramid_collapses_to_the_image():
    x = np.random.default_rng(0).standard_normal((2, 37, 30))
    pyr = laplacian_pyramid(x, 3)
    assert [p.shape[1:] for p in pyr] == [(37, 30), (19, 15), (10, 8)]
    rec = pyr[-1]
    for level in reversed(pyr[:-1]):
        rec = level + _pyr_up(rec, level.shape[-2:])
    np.testing.assert_allclose(rec, x, atol=1e-12)


def test_radial_power_spectrum_peaks_at_a_cosine():
    h, w = 32, 48
    _, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    img = 2 + np.cos(2 * np.pi * 0.25 * xx)  # 0.25 cycles/pixel
    freq, logp = radial_power_spectrum(img[None], normalize="none")
    assert freq.shape == (16,) and logp.shape == (1, 16)
    assert freq[np.argmax(logp[0][1:]) + 1] == pytest.approx(0.25, abs=0.5 / 16)
    d = radial_spectrum_distance(img[None], img[None] + 1e-3 * np.random.default_rng(0).random((1, h, w)), metric="l1")
    assert d["distance"] >= 0 and len(d["generated"]) == 16


@pytest.mark.parametrize(
    ("generated", "kwargs", "match"),
    [
        (np.ones((16, 16)), {}, r"generated: expected a stack of images \(N, H, W\)"),
        (np.ones((0, 64, 64)), {}, "empty"),
        (np.ones((2, 32, 64)), {}, "must match"),
        (np.where(np.eye(64, dtype=bool), np.nan, 1.0)[None].repeat(2, 0), {}, "generated: image 0 contains NaN"),
        (np.array([[["a"] * 64] * 64]), {}, "numeric"),
        (np.ones((2, 64, 64)), {"train_mask_frequency": np.ones(10)}, "train_mask_frequency has shape"),
        (np.ones((2, 64, 64)), {"train_mask_frequency": np.ones(64)}, "no k-space region"),
        (np.ones((2, 64, 64)), {"train_mask_frequency": np.zeros(64)}, "all zero"),
        (np.ones((2, 64, 64)), {"normalize": "z"}, "normalize must be"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(sets, generated, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sampleset_report(generated, sets["reference"], **kwargs)


def test_bad_reference_and_small_images():
    ref = np.ones((2, 8, 8))
    with pytest.raises(ValueError, match="too small"):
        sliced_wasserstein_distance(ref, ref)
    with pytest.raises(ValueError, match="reference: image 1 contains NaN or Inf"):
        radial_spectrum_distance(np.ones((1, 8, 8)), np.stack([ref[0], ref[0] * np.inf]))
    with pytest.raises(ValueError, match="descriptor_normalization"):
        sliced_wasserstein_distance(ref, ref, descriptor_normalization="global")
    with pytest.raises(ValueError, match="patches_per_image"):
        sliced_wasserstein_distance(ref, ref, patches_per_image=0)
    with pytest.raises(ValueError, match="empty radial bins"):
        radial_power_spectrum(ref, num_bins=40)
