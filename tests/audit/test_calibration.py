"""Top-k search (brute force, chunking, groups), subject checks, train background, statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ambientmri.audit.calibration import (
    check_subject_disjoint,
    clopper_pearson,
    expected_false_positive_rate,
    mann_whitney,
    memorized_fraction,
    minimum_scans,
    threshold_from_heldout,
    train_background,
    training_coverage,
)
from ambientmri.audit.search import brute_force_topk, topk_neighbours
from ambientmri.audit.similarity import ncc_max

pytestmark = pytest.mark.usefixtures("global_rng_guard", "one_thread")


@pytest.mark.parametrize("similarity", ["ncc", "complex"])
def test_topk_matches_brute_force_and_chunking(similarity: str) -> None:
    rng = np.random.default_rng(3)
    q = (rng.normal(size=(7, 16, 12)) + 1j * rng.normal(size=(7, 16, 12))).astype(np.complex64)
    r = (rng.normal(size=(11, 16, 12)) + 1j * rng.normal(size=(11, 16, 12))).astype(np.complex64)
    full = ncc_max(q, r, complex_phase=similarity == "complex").scores
    want_s, want_i = brute_force_topk(full, 4)
    calls: list[tuple[int, int]] = []
    got_s, got_i = topk_neighbours(q, r, 4, similarity=similarity, chunk=3, query_chunk=2,
                                   progress=lambda d, t: calls.append((d, t)))
    torch.testing.assert_close(got_s, want_s)
    torch.testing.assert_close(got_i, want_i)
    # the brute-force reference really is the sorted full matrix
    np.testing.assert_allclose(want_s.numpy(), -np.sort(-full.numpy(), axis=1)[:, :4], rtol=1e-12)
    big_s, big_i = topk_neighbours(q, r, 4, similarity=similarity, chunk=100, query_chunk=100)
    torch.testing.assert_close(big_s, got_s)
    torch.testing.assert_close(big_i, got_i)
    assert calls[-1] == (77, 77) and len(calls) == 4 * 4
    # k larger than the reference set is capped
    assert topk_neighbours(q, r[:2], 5)[0].shape == (7, 2)


def test_topk_groups_exclude_pairs_and_ties_prefer_lower_index() -> None:
    img = np.random.default_rng(4).normal(size=(1, 8, 8))
    refs = np.concatenate([img, img, img])  # three identical references: a three-way tie
    s, i = topk_neighbours(img, refs, 3)
    np.testing.assert_array_equal(i.numpy(), [[0, 1, 2]])
    s, i = topk_neighbours(img, refs, 3, query_groups=["a"], reference_groups=["b", "a", "b"])
    np.testing.assert_array_equal(i.numpy(), [[0, 2, -1]])
    assert s[0, 2] == -np.inf
    with pytest.raises(ValueError, match="groups"):
        topk_neighbours(img, refs, 1, query_groups=["a", "b"], reference_groups=["a", "b", "c"])
    with pytest.raises(ValueError, match="similarity"):
        topk_neighbours(img, refs, 1, similarity="dino")


def test_subject_overlap_refused() -> None:
    check_subject_disjoint(["sub-1", "sub-2"], ["sub-3"])
    with pytest.raises(ValueError, match=r"2 subject\(s\) are in both: sub-2, sub-5") as info:
        check_subject_disjoint(["sub-1", "sub-2", "sub-5"], ["sub-5", "sub-9", "sub-2"])
    assert "\n" not in str(info.value)
    many = [f"sub-{i:02d}" for i in range(9)]
    with pytest.raises(ValueError, match=r"9 subject\(s\).*sub-04, \.\.\.$"):
        check_subject_disjoint(many, many)


def test_train_background_excludes_same_subject(phantom_cohort) -> None:
    images, subjects = phantom_cohort(4, 3, (24, 24), seed=6, anatomy="knee")
    # slice 0 duplicated inside its own subject: it must not count as a neighbour
    dup = np.concatenate([images, images[:1]])
    labels = [*subjects, subjects[0]]
    scores, idx = train_background(dup, labels)
    assert scores.shape == (len(dup),)
    assert float(scores[0]) < 0.999 and float(scores[-1]) < 0.999
    assert all(labels[int(j)] != labels[n] for n, j in enumerate(idx))
    # the same duplicate under another pseudonym is found at 1
    relabelled = [*subjects, "sub-other"]
    scores2, idx2 = train_background(dup, relabelled)
    assert float(scores2[0]) == pytest.approx(1.0, abs=1e-5) and int(idx2[0]) == len(dup) - 1
    with pytest.raises(ValueError, match="two subjects"):
        train_background(images[:3], subjects[:3])


def test_threshold_fraction_tests_and_coverage() -> None:
    rng = np.random.default_rng(7)
    held = rng.uniform(0.0, 1.0, size=1001)
    assert threshold_from_heldout(held, 0.99) == pytest.approx(np.quantile(held, 0.99))
    with pytest.raises(ValueError, match="q must be"):
        threshold_from_heldout(held, 1.0)
    # memorized fraction: CI contains the estimate and narrows with n
    widths = []
    for n in (50, 500, 5000):
        gen = rng.uniform(0.0, 1.0, size=n)
        frac, lo, hi = memorized_fraction(gen, 0.8)
        assert lo <= frac <= hi and frac == pytest.approx((gen > 0.8).mean())
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2] > 0
    # Mann-Whitney, one-sided: generated greater than held-out
    _, p_hi = mann_whitney(rng.normal(1.0, 1.0, 200), rng.normal(0.0, 1.0, 200))
    _, p_lo = mann_whitney(rng.normal(-1.0, 1.0, 200), rng.normal(0.0, 1.0, 200))
    assert p_hi < 1e-6 and p_lo > 0.5
    # coverage: training scans matched by at least one generated scan above tau
    cov = training_coverage(torch.tensor([0, 0, 3, 5, 7]), np.array([0.99, 0.98, 0.97, 0.5, 0.99]), 0.9, 10)
    assert cov == pytest.approx(3 / 10)


def test_memorized_fraction_interval_is_exact_clopper_pearson() -> None:
    from scipy.stats import binomtest

    frac, lo, hi = memorized_fraction(np.zeros(8), 0.5)  # 0 of 8 flagged
    assert (frac, lo) == (0.0, 0.0) and hi == pytest.approx(0.369, abs=5e-4)  # not 0-0%
    frac, lo, hi = memorized_fraction(np.ones(20), 0.5)  # 20 of 20
    assert (frac, hi) == (1.0, 1.0) and lo == pytest.approx(0.8316, abs=5e-4)
    for k, n in ((3, 10), (1, 100), (57, 64)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high))
        scores = np.r_[np.ones(k), np.zeros(n - k)]
        assert memorized_fraction(scores, 0.5) == pytest.approx((k / n, ci.low, ci.high))
    assert memorized_fraction(np.r_[np.nan, 1.0], 0.5)[0] == 0.5  # a blank sample is not flagged
    with pytest.raises(ValueError, match="clopper_pearson needs"):
        clopper_pearson(3, 2)


def test_expected_false_positive_rate_matches_simulation() -> None:
    rng = np.random.default_rng(3)
    for n, q in ((8, 0.99), (50, 0.99), (16, 0.9)):
        cal = rng.uniform(size=(20000, n))
        tau = np.quantile(cal, q, axis=1)
        simulated = float((rng.uniform(size=20000) > tau).mean())
        assert expected_false_positive_rate(n, q) == pytest.approx(simulated, abs=0.01)
    assert expected_false_positive_rate(10**6, 0.99) == pytest.approx(0.01, abs=1e-4)
    assert (minimum_scans(0.99), minimum_scans(0.95), minimum_scans(0.9), minimum_scans(0.5)) == (100, 20, 10, 2)
