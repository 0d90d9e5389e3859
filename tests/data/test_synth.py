"""Synthetic fastMRI cohorts: format, internal consistency, determinism, subject variation."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from ambientmri.data.fastmri import FastMRIFile, target_from_kspace
from ambientmri.data.synth import (
    coil_maps,
    draw_subject,
    phantom,
    render,
    subject_number,
    synth_challenge_file,
    synth_cohort,
    synth_volume,
)
from ambientmri.operators.fft import center_crop, fft2c_np


def test_cohort_layout_and_header(multicoil_files):
    assert [p.name for p in multicoil_files] == [
        "file_brain_AXT2_0000.h5",
        "file_brain_AXT2_0001.h5",
        "file_brain_AXT2_0002.h5",
    ]
    ids = set()
    for path in multicoil_files:
        with FastMRIFile(path) as f:
            info = f.info
            assert (info.challenge, info.num_slices, info.num_coils) == ("multicoil", 3, 4)
            assert info.shape == (64, 40)
            assert info.targets == ("reconstruction_rss",)
            hdr = info.header
            assert hdr["encoded_size"] == (64, 40, 1)
            assert hdr["recon_size"] == (32, 32, 1)  # (H // 2, min(W, H // 2))
            assert (hdr["center"], hdr["maximum"]) == (20, 39)
            assert (hdr["padding_left"], hdr["padding_right"]) == (0, 40)
            assert info.attrs["acquisition"] == "AXT2"
            volume = f.target_all()
            assert info.attrs["max"] == pytest.approx(float(volume.max()))
            assert info.attrs["norm"] == pytest.approx(float(np.linalg.norm(volume)))
            ids.add(f.patient_id)
    assert ids == {"synth-subject-0000", "synth-subject-0001", "synth-subject-0002"}


@pytest.mark.parametrize("which", ["multicoil", "singlecoil"])
def test_targets_equal_target_of_stored_kspace(which, multicoil_files, singlecoil_files):
    files = multicoil_files if which == "multicoil" else singlecoil_files
    for path in files:
        with FastMRIFile(path) as f:
            size = f.info.recon_size
            for i in range(f.info.num_slices):
                expected = target_from_kspace(f.kspace(i), size)
                np.testing.assert_array_equal(f.target(i), expected)
                if which == "singlecoil":
                    np.testing.assert_array_equal(f.target(i, "reconstruction_rss"), expected)
                    np.testing.assert_array_equal(f.target(i, "reconstruction_esc"), expected)


def test_singlecoil_knee_names(singlecoil_files):
    assert [p.name for p in singlecoil_files] == ["file1000000.h5", "file1000001.h5"]
    with FastMRIFile(singlecoil_files[1]) as f:
        assert f.info.attrs["acquisition"] == "CORPD_FBK"
        assert f.info.targets == ("reconstruction_esc", "reconstruction_rss")
        assert f.kspace(0).shape == (1, 64, 40)


def test_deterministic_per_seed_and_subjects_differ(tmp_path, multicoil_files):
    again = synth_cohort(tmp_path / "a", volumes=2, slices=3, matrix=(64, 40), coils=4, seed=0)
    other = synth_cohort(tmp_path / "b", volumes=1, slices=3, matrix=(64, 40), coils=4, seed=1)
    with FastMRIFile(again[1]) as f, FastMRIFile(multicoil_files[1]) as g:
        np.testing.assert_array_equal(f.kspace_all(), g.kspace_all())
        subject1 = g.target_all()
    with FastMRIFile(multicoil_files[0]) as f, FastMRIFile(other[0]) as h:
        subject0, seed1 = f.target_all(), h.target_all()
        assert h.patient_id == "synth-subject-10000"
    for a, b in ((subject0, subject1), (subject0, seed1)):
        assert np.abs(a - b).mean() > 0.1 * a.mean()  # different anatomy, not just noise


def test_per_subject_anatomy_varies():
    shape = (64, 64)
    for anatomy in ("brain", "knee"):
        supports = [render(draw_subject(anatomy, np.random.default_rng(s)), shape)[1] for s in range(4)]
        for a in range(4):
            for b in range(a + 1, 4):
                assert (supports[a] ^ supports[b]).sum() > 10


def test_global_rng_untouched(tmp_path):
    np.random.seed(1234)
    numpy_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    synth_cohort(tmp_path, volumes=1, slices=2, matrix=(32, 24), coils=2, anatomy="knee")
    phantom("brain", (32, 32), np.random.default_rng(0), 0.3)
    after = np.random.get_state()
    assert numpy_state[0] == after[0] and np.array_equal(numpy_state[1], after[1])
    assert numpy_state[2:] == after[2:]
    assert torch.equal(torch_state, torch.random.get_rng_state())


@pytest.mark.parametrize("anatomy", ["brain", "knee"])
def test_phantom_shape_fov_smoothness_and_speed(anatomy):
    shape, fov = (128, 64), (64, 64)
    img = phantom(anatomy, shape, np.random.default_rng(3), 0.0)
    assert img.shape == shape and img.dtype == np.complex64
    magnitude = np.abs(img)
    assert 0.5 < magnitude.max() < 1.5
    outside = magnitude.copy()
    top, left = (shape[0] - fov[0]) // 2, (shape[1] - fov[1]) // 2
    outside[top : top + fov[0], left : left + fov[1]] = 0
    assert outside.max() == 0  # the object lives in the recon FOV
    assert np.ptp(np.angle(img[magnitude > 0.2])) > 0.1  # a background phase is present
    # slices change smoothly with position
    near = phantom(anatomy, shape, np.random.default_rng(3), 0.05)
    far = phantom(anatomy, shape, np.random.default_rng(3), 0.9)
    assert np.abs(near - img).mean() < 0.5 * np.abs(far - img).mean()
    # band-limited: little energy in the outer half of k-space
    k = np.abs(fft2c_np(img)) ** 2
    inner = center_crop(k, (shape[0] // 2, shape[1] // 2)).sum()
    assert inner > 0.97 * k.sum()
    start = time.perf_counter()
    for _ in range(5):
        phantom(anatomy, shape, np.random.default_rng(3), 0.0)
    assert (time.perf_counter() - start) / 5 < 0.05


def test_noise_level_follows_snr():
    vol = synth_volume(matrix=(64, 40), coils=4, slices=2, snr_db=20.0, subject=7)
    clean = fft2c_np(vol.images[:, None] * vol.maps[None])
    noise = vol.kspace - clean
    assert np.std(noise) == pytest.approx(vol.noise_std, rel=0.05)
    coil_images = vol.images[:, None] * vol.maps[None]
    support = vol.support
    assert support.shape == vol.images.shape and 0.1 < support.mean() < 0.5
    signal_rms = np.sqrt(np.mean(np.abs(coil_images.transpose(1, 0, 2, 3)[:, support]) ** 2))
    assert 20 * np.log10(signal_rms / vol.noise_std) == pytest.approx(20.0, abs=0.5)
    noiseless = synth_volume(matrix=(64, 40), coils=4, slices=2, snr_db=float("inf"), subject=7)
    assert noiseless.noise_std == 0.0
    np.testing.assert_allclose(noiseless.kspace, clean, atol=1e-5)


def test_coil_maps_smooth_and_normalised():
    maps = coil_maps(8, (64, 40))
    assert maps.shape == (8, 64, 40) and maps.dtype == np.complex64
    rss = np.sqrt((np.abs(maps) ** 2).sum(0))
    assert rss[16:49, 4:37].mean() == pytest.approx(1.0, rel=1e-4)  # the recon FOV, |u|,|v| <= 1
    central = maps[:, 20:45, 8:33]  # |u|, |v| <= 0.75: where the object lies
    for axis in (-1, -2):  # smooth: neighbouring pixels differ by little
        assert np.abs(np.diff(central, axis=axis)).max() < 0.15 * np.abs(central).max()


def test_challenge_file(tmp_path):
    mask = np.zeros(40, np.float32)
    mask[17:23] = 1
    mask[::4] = 1
    path = synth_challenge_file(
        tmp_path / "file_brain_AXT2_3000.h5", mask, matrix=(64, 40), coils=4, slices=2, subject=3000
    )
    full = synth_volume(matrix=(64, 40), coils=4, slices=2, subject=3000)
    with FastMRIFile(path) as f:
        info = f.info
        assert info.is_undersampled and info.targets == ()
        np.testing.assert_array_equal(info.mask, mask)
        assert info.attrs["acceleration"] == round(40 / mask.sum())
        assert info.attrs["num_low_frequency"] == 7  # columns 16..22
        assert f.patient_id == "synth-subject-3000"
        k = f.kspace_all()
    assert (k[..., mask == 0] == 0).all()
    assert not np.signbit(k.view(np.float32)[k.view(np.float32) == 0]).any()
    np.testing.assert_array_equal(k[..., mask == 1], full.kspace[..., mask == 1])


def test_subject_numbers_and_validation():
    assert subject_number(2) == 2
    assert subject_number(2, split="val") == 1002
    assert subject_number(0, seed=3, split="test") == 32000
    with pytest.raises(ValueError, match="split must be one of"):
        subject_number(0, split="holdout")
    with pytest.raises(ValueError, match="anatomy must be one of brain, knee"):
        synth_volume(anatomy="liver")
    with pytest.raises(ValueError, match="challenge must be one of"):
        synth_volume(challenge="dualcoil")
    with pytest.raises(ValueError, match="recon_size"):
        synth_volume(matrix=(32, 16), recon_size=(40, 16))
