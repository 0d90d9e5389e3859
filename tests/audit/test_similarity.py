"""ncc_max (shift/flip/phase invariance, brute force), measurement_similarity, relative ℓ2, SSIM."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from ambientmri.audit.search import topk_neighbours
from ambientmri.audit.similarity import measurement_similarity, ncc_max, relative_l2, ssim_rerank

pytestmark = pytest.mark.usefixtures("global_rng_guard", "one_thread")


@pytest.fixture(scope="module")
def images(phantom_cohort) -> np.ndarray:
    return phantom_cohort(4, 3, (32, 24), seed=5)[0]


def test_shifted_flipped_copy_scores_one(images: np.ndarray) -> None:
    ref = images
    q = np.flip(np.roll(ref[7], (5, -7), axis=(0, 1)), axis=1).copy()
    res = ncc_max(q, ref)
    assert res.scores.shape == (1, len(ref)) and res.shifts.shape == (1, len(ref), 2)
    assert int(res.scores[0].argmax()) == 7
    assert res.scores[0, 7] == pytest.approx(1.0, abs=1e-5)
    assert bool(res.flipped[0, 7])
    # the reported alignment reproduces the query: flip(q) = roll(r, shift)
    dy, dx = (int(v) for v in res.shifts[0, 7])
    np.testing.assert_allclose(np.abs(np.flip(q, axis=1)), np.abs(np.roll(ref[7], (dy, dx), axis=(0, 1))), atol=1e-6)
    # without the flip search the copy is not found exactly
    assert ncc_max(q, ref, flips=False).scores[0, 7] < 0.999
    assert torch.all(res.scores <= 1.0) and torch.all(res.scores >= -1.0)


def test_complex_phase_invariance(images: np.ndarray) -> None:
    q = np.roll(images[3], (-4, 9), axis=(0, 1)) * np.exp(1j * 2.1)
    res = ncc_max(q, images, complex_phase=True)
    assert int(res.scores[0].argmax()) == 3 and res.scores[0, 3] == pytest.approx(1.0, abs=1e-5)
    assert torch.all(res.scores >= 0.0) and torch.all(res.scores <= 1.0)
    assert [int(v) for v in res.shifts[0, 3]] == [-4, 9] and not bool(res.flipped[0, 3])
    # without shifts: exactly |<q, r>| / (|q| |r|)
    plain = ncc_max(images[:4] * np.exp(-0.7j), images, complex_phase=True, shifts=False, flips=False).scores
    a, b = images[:4].reshape(4, -1).astype(np.complex128), images.reshape(len(images), -1).astype(np.complex128)
    expected = np.abs(a.conj() @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(plain.numpy(), expected, atol=1e-5)


def test_ncc_max_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, 6, 5))
    r = rng.normal(size=(4, 6, 5))

    def ncc(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))

    expected = np.array([
        [max(ncc(qq if f == 0 else qq[:, ::-1], np.roll(rr, (dy, dx), axis=(0, 1)))
             for f, dy, dx in itertools.product(range(2), range(6), range(5))) for rr in r]
        for qq in q
    ])
    res = ncc_max(torch.from_numpy(q), torch.from_numpy(r))
    assert res.scores.dtype == torch.float64
    np.testing.assert_allclose(res.scores.numpy(), expected, atol=1e-10)
    # a real image against its negative: -1 without shifts or flips
    neg = ncc_max(q[:1], -q[:1], flips=False, shifts=False).scores
    assert float(neg[0, 0]) == pytest.approx(-1.0)
    # zero images score 0, mismatched grids refuse
    assert float(ncc_max(np.zeros((6, 5)), r).scores.abs().max()) == 0.0
    with pytest.raises(ValueError, match="references"):
        ncc_max(q, r[:, :5])


def test_relative_l2_and_ssim(images: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    q = np.stack([images[2] + 0.001 * rng.normal(size=images[2].shape), images[5] * 0.3 + images[9] * 0.7])
    ratio, nearest = relative_l2(q, images, alpha=0.5, n=5)
    assert int(nearest[0]) == 2 and float(ratio[0]) < 0.05 and float(ratio[1]) > float(ratio[0])
    # brute force
    d = np.linalg.norm(np.abs(q)[:, None] - np.abs(images)[None], axis=(2, 3))
    nn = np.sort(d, axis=1)[:, :5]
    np.testing.assert_allclose(ratio.numpy(), nn[:, 0] / (0.5 * nn.mean(axis=1)), rtol=1e-6)
    # SSIM: an aligned (shift + flip) copy ranks first at about 1
    copy = np.flip(np.roll(images[4], (3, 2), axis=(0, 1)), axis=1)
    s = ssim_rerank(copy, images[[1, 4, 8]])
    assert s.shape == (3,) and int(np.argmax(s)) == 1 and s[1] == pytest.approx(1.0, abs=1e-6)
    assert ssim_rerank(copy, images[[4]], align=False)[0] < 0.9


# ------------------------------------------------------------------------------------------
# against the corrupted store
# ------------------------------------------------------------------------------------------
def _store(make_recipe, src: Path, dst: Path, corruption: dict):
    from ambientmri.data.store import CorruptedStore, prepare_store

    rec = make_recipe(corruption, {"kind": "fastmri", "crop": [32, 32]})
    return CorruptedStore(prepare_store(src, dst, rec, workers=1).store)


def test_measurement_full_mask_equals_clean_complex(make_recipe, singlecoil_dir: Path, tmp_path: Path) -> None:
    from ambientmri.data.references import clean_reference

    store = _store(make_recipe, singlecoil_dir, tmp_path / "p0", {"kind": "inpainting", "p": 0.0, "delta": 0.1})
    assert all(bool(store[i].mask.all()) for i in range(len(store)))
    clean = np.stack([clean_reference(store, i) for i in range(len(store))])
    rng = np.random.default_rng(2)
    g = np.concatenate([clean[[1, 3]] * np.exp(1j * 0.4) * 3.0, clean[[0]] + 0.3 * rng.normal(size=(1, 32, 32))])
    got = measurement_similarity(g, store, flips=False)
    expected = ncc_max(g, clean, complex_phase=True, shifts=False, flips=False).scores
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
    assert float(got[0, 1]) == pytest.approx(1.0, abs=1e-5)
    with_flips = measurement_similarity(g, store)
    expected_f = ncc_max(g, clean, complex_phase=True, shifts=False, flips=True).scores
    np.testing.assert_allclose(with_flips.numpy(), expected_f.numpy(), atol=1e-5)


def test_measurement_ranks_source_under_kspace_mask(make_recipe, singlecoil_dir: Path, tmp_path: Path) -> None:
    from ambientmri.data.references import clean_reference

    corruption = {"kind": "kspace2d", "pattern": "uniform", "acceleration": 3, "calib": [8, 8]}
    store = _store(make_recipe, singlecoil_dir, tmp_path / "k", corruption)
    assert float(store[0].mask.mean()) < 0.6
    clean = np.stack([clean_reference(store, i) for i in range(len(store))])
    g = clean * np.exp(1j * np.arange(len(clean)))[:, None, None]
    s = measurement_similarity(g, store, indices=[3, 2, 1, 0], batch=3)
    assert s.shape == (4, 4)
    np.testing.assert_array_equal(s.argmax(dim=1).numpy(), [3, 2, 1, 0])
    np.testing.assert_allclose(np.diag(s.numpy()[:, ::-1]), 1.0, atol=1e-4)
    # the chunked search over the store finds the source first, whatever the chunks
    scores, idx = topk_neighbours(g, store, k=2, chunk=3, query_chunk=3)
    np.testing.assert_array_equal(idx[:, 0].numpy(), np.arange(4))
    scores2, idx2 = topk_neighbours(g, store, k=2, chunk=10, query_chunk=10)
    torch.testing.assert_close(scores, scores2)
    torch.testing.assert_close(idx, idx2)
