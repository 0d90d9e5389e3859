"""The two-stage search (matrix-product candidates, then the exact score) against the exhaustive one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ambientmri.audit.candidates import _measurement_candidate_fn, candidate_topk, canonical_roll
from ambientmri.audit.run import resolve_search
from ambientmri.audit.search import topk_neighbours
from ambientmri.audit.similarity import measurement_similarity, ncc_max
from ambientmri.audit.synthetic import MemoryStore, near_copies, phantom_slices
from ambientmri.operators.corruptions import CartesianCorruption, InpaintingCorruption

SHAPE = (32, 32)


@pytest.fixture(scope="module")
def cohort() -> tuple[np.ndarray, list[str]]:
    return phantom_slices(8, 6, SHAPE, seed=11)  # 48 slices of 8 subjects


def test_canonical_roll_is_shift_equivariant(cohort) -> None:
    x = torch.from_numpy(np.abs(cohort[0][:6]))
    base = canonical_roll(x)
    for shift in ((3, -5), (-7, 1), (16, 16)):
        assert torch.equal(canonical_roll(torch.roll(x, shift, dims=(-2, -1))), base)


def test_image_candidates_find_shifted_flipped_copies(cohort, one_thread) -> None:
    images, _ = cohort
    refs = np.abs(images)
    copies, src = near_copies(images, 24, seed=1, max_shift=4, noise=0.02, shift=True)
    s, i = topk_neighbours(np.abs(copies), refs, k=2, method="candidates", candidates=4)
    assert (i[:, 0].numpy() == src).all()
    assert (s[:, 0] > 0.95).all()
    # the reported scores are the exact ones
    exact = ncc_max(np.abs(copies), refs).scores.to(torch.float64)
    assert torch.allclose(s[:, 0], exact[torch.arange(24), i[:, 0]], atol=1e-6)


@pytest.mark.parametrize("coils", [0, 4])
def test_measurement_candidates_find_flipped_copies(cohort, coils, one_thread) -> None:
    images, labels = cohort
    store = MemoryStore(images, CartesianCorruption(), labels, coils=coils)
    copies, src = near_copies(images, 16, seed=2, noise=0.02, shift=False)  # no shift search in this space
    s, i = topk_neighbours(copies, store, k=1, method="candidates", candidates=4)
    assert (i[:, 0].numpy() == src).all()
    exact = measurement_similarity(copies, store).to(torch.float64)
    assert torch.allclose(s[:, 0], exact[torch.arange(16), i[:, 0]], atol=1e-5)


def test_single_coil_candidate_score_is_exact(cohort) -> None:
    """Without coil maps ‖A_i g‖² = ⟨|F g|², M_i⟩ exactly, so the candidate score is the exact score."""
    images, labels = cohort
    for corruption in (CartesianCorruption(), InpaintingCorruption(p=0.5)):
        store = MemoryStore(images[:12], corruption, labels[:12])
        g = torch.from_numpy(phantom_slices(1, 5, SHAPE, seed=5)[0])
        score, _ = _measurement_candidate_fn(g, store, list(range(12)), size=64, flips=True, device=torch.device("cpu"))
        assert torch.allclose(score(0, 12), measurement_similarity(g, store), atol=1e-4)


def test_recall_against_exhaustive_on_fresh_scans(cohort, one_thread) -> None:
    """Fresh phantoms of other subjects (no copy to find, many near-ties): recall@1 is at least 0.9."""
    images, labels = cohort
    fresh, _ = phantom_slices(3, 6, SHAPE, seed=12)
    s_e, i_e = topk_neighbours(np.abs(fresh), np.abs(images), k=1)
    s_c, i_c = topk_neighbours(np.abs(fresh), np.abs(images), k=1, method="candidates", candidates=8)
    assert (i_c[:, 0] == i_e[:, 0]).float().mean() >= 0.9
    assert (s_c <= s_e + 1e-5).all()  # a candidate search can only miss, never overrate (float32 scores)
    store = MemoryStore(images, CartesianCorruption(), labels, coils=4)
    m_e, j_e = topk_neighbours(fresh[:8], store, k=1)
    m_c, j_c = topk_neighbours(fresh[:8], store, k=1, method="candidates", candidates=8)
    assert (j_c[:, 0] == j_e[:, 0]).all()
    assert torch.allclose(m_c, m_e, atol=1e-6)


def test_candidates_on_a_prepared_multicoil_store(make_recipe, tmp_path, one_thread) -> None:
    """The store on disk (ESPIRiT maps, fastMRI masks): the same top-1 as the exhaustive search."""
    from ambientmri.data.references import clean_reference
    from ambientmri.data.store import CorruptedStore, prepare_store
    from ambientmri.data.synth import synth_cohort

    synth_cohort(tmp_path / "raw", challenge="multicoil", volumes=3, slices=4, matrix=(64, 32), coils=4, seed=1)
    rec = make_recipe({"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
                      {"kind": "fastmri", "crop": [32, 32]})
    prepare_store(tmp_path / "raw", tmp_path / "store", rec, workers=1)
    store = CorruptedStore(tmp_path / "store")
    clean = np.stack([clean_reference(store, i) for i in range(len(store))])
    copies, src = near_copies(clean, 6, seed=4, noise=0.02, shift=False)
    queries = np.concatenate([copies, phantom_slices(1, 4, SHAPE, seed=21)[0]])
    s_e, i_e = topk_neighbours(queries, store, k=1)
    s_c, i_c = topk_neighbours(queries, store, k=1, method="candidates", candidates=3)
    store.close()
    assert (i_c[:6, 0].numpy() == src).all()
    assert torch.equal(i_c, i_e)
    assert torch.allclose(s_c, s_e, atol=1e-5)


def test_enough_candidates_is_the_exhaustive_search(cohort) -> None:
    images, _ = cohort
    q = np.abs(phantom_slices(1, 4, SHAPE, seed=13)[0])
    a = topk_neighbours(q, np.abs(images), k=3)
    b = topk_neighbours(q, np.abs(images), k=3, method="candidates", candidates=48)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_groups_are_excluded(cohort) -> None:
    images, labels = cohort
    refs = np.abs(images)
    _, i = topk_neighbours(refs[:12], refs, k=2, method="candidates", candidates=4,
                           query_groups=labels[:12], reference_groups=labels)
    for row, lab in zip(i.numpy(), labels[:12], strict=True):
        assert all(labels[j] != lab for j in row)


def test_query_blocks_do_not_change_the_result(cohort) -> None:
    images, labels = cohort
    refs = torch.from_numpy(np.abs(images))
    groups = torch.tensor([int(lab.split("-")[-1]) for lab in labels])
    one = candidate_topk(refs[:10], refs, 2, candidates=4, qg=groups[:10], rg=groups)
    blocked = candidate_topk(refs[:10], refs, 2, candidates=4, qg=groups[:10], rg=groups, query_block=3)
    assert torch.equal(one[1], blocked[1]) and torch.allclose(one[0], blocked[0])
    assert (groups[one[1]] != groups[:10, None]).all()


def test_edge_cases(cohort) -> None:
    images, _ = cohort
    refs = torch.from_numpy(np.abs(images[:5]))
    q = torch.from_numpy(np.abs(images[5:7]))
    # k larger than the references: padded with -inf / -1 after the real ones
    s, i = candidate_topk(q, refs, 8, candidates=2)
    assert s.shape == (2, 8) and (i[:, :5] >= 0).all() and (i[:, 5:] == -1).all() and torch.isinf(s[:, 5:]).all()
    # no queries
    s, i = topk_neighbours(np.zeros((0, *SHAPE), np.float32), np.abs(images), k=3, method="candidates", candidates=2)
    assert s.shape == (0, 3) and i.shape == (0, 3)
    # no references
    s, i = candidate_topk(q, refs[:0], 2, candidates=2)
    assert s.shape == (2, 2) and (i == -1).all()
    with pytest.raises(ValueError, match="method must be one of"):
        topk_neighbours(q, refs, k=1, method="fast")
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        topk_neighbours(q, refs, k=1, method="candidates", candidates=0)


def test_resolve_search() -> None:
    assert resolve_search("auto", "image", 2000) == "exhaustive"
    assert resolve_search("auto", "image", 2001) == "candidates"
    assert resolve_search("auto", "measurement", 480) == "candidates"
    assert resolve_search("exhaustive", "measurement", 10**5) == "exhaustive"
    with pytest.raises(ValueError, match="search must be one of"):
        resolve_search("fast", "image", 10)


@pytest.mark.slow
def test_audit_verdict_is_the_same_with_both_searches(tmp_path, monkeypatch, one_thread) -> None:
    """A whole audit (image space, controls on) gives the same verdict, flagged fraction and τ with the
    two-stage search (8 candidates of 64 training slices) as with the exhaustive one."""
    from ambientmri.audit import run as audit_run
    from ambientmri.audit.controls import perturbed_copies
    from ambientmri.data.fastmri import FastMRIFile
    from ambientmri.data.synth import synth_cohort

    kw = {"challenge": "singlecoil", "volumes": 16, "slices": 4, "matrix": (64, 32), "anatomy": "brain"}
    synth_cohort(tmp_path / "train", seed=0, split="train", **kw)
    synth_cohort(tmp_path / "held", seed=0, split="val", **kw)
    train = np.concatenate([FastMRIFile(p).target_all() for p in sorted((tmp_path / "train").glob("*.h5"))])
    copies, _ = perturbed_copies(train, 16, seed=3)
    fresh, _ = phantom_slices(4, 4, (32, 32), seed=99)
    np.save(tmp_path / "copies.npy", copies)
    np.save(tmp_path / "fresh.npy", np.abs(fresh).astype(np.float32))
    monkeypatch.setattr(audit_run, "SEARCH_CANDIDATES", 8)
    for samples in ("copies.npy", "fresh.npy"):
        out = {m: audit_run.run_audit(tmp_path / samples, tmp_path / "train", tmp_path / "held",
                                      tmp_path / f"audit_{samples}_{m}", quantile=0.9, search=m)
               for m in ("exhaustive", "candidates")}
        ex, ca = out["exhaustive"], out["candidates"]
        assert ca["settings"]["search_methods"] == {"image": "candidates"}
        assert ca["verdict"] == ex["verdict"]
        assert ca["memorized_fraction"] == ex["memorized_fraction"]
        assert abs(ca["threshold"] - ex["threshold"]) < 1e-3
