"""The full-rank condition check on violating and satisfying corruptions."""

from __future__ import annotations

from ambientmri.operators.condition import check_full_rank
from ambientmri.operators.corruptions import (
    BlockCorruption,
    CartesianCorruption,
    GaussianCorruption,
    InpaintingCorruption,
    KSpace2DCorruption,
)

GRID = (24, 24)


def test_inpainting_delta_zero_violates() -> None:
    report = check_full_rank(InpaintingCorruption(p=0.6, delta=0.0), GRID, draws=64)
    assert not report.satisfied
    assert report.min_eigenvalue == 0.0
    assert report.unsupervised_fraction == 1.0  # every pixel Ã hides is also hidden by A
    assert "Violated" in report.message


def test_inpainting_delta_positive_satisfies() -> None:
    report = check_full_rank(InpaintingCorruption(p=0.6, delta=0.1), GRID, draws=256)
    assert report.satisfied
    # π_j = P(A sees j | Ã hides j) = (1-p)δ / (p + (1-p)δ) = 0.04/0.64 ≈ 0.0625 for every pixel
    assert 0.005 < report.min_eigenvalue < 0.0625
    assert report.never_observed_fraction == 0.0


def test_fixed_kspace_pattern_that_never_samples_some_lines_violates() -> None:
    corruption = CartesianCorruption("equispaced", (0.08,), (4.0,))
    report = check_full_rank(corruption, (32, 64), draws=64, fixed_mask=True)
    assert not report.satisfied
    # one equispaced pattern reused for every scan never measures ~3/4 of the columns
    assert 0.6 < report.never_observed_fraction < 0.8


def test_varying_kspace_patterns_satisfy() -> None:
    for corruption in (
        CartesianCorruption("random", (0.125,), (4.0,)),
        CartesianCorruption("equispaced", (0.125,), (4.0,)),
        KSpace2DCorruption("uniform", 3.0, (6, 6)),
    ):
        report = check_full_rank(corruption, (32, 64), draws=200)
        assert report.satisfied, (corruption, report.message)


def test_further_that_removes_nothing_violates_for_kspace() -> None:
    from ambientmri.operators.corruptions import _KSpaceFurther

    corruption = CartesianCorruption("random", (0.125,), (4.0,), _KSpaceFurther(None, 0, None))
    assert not check_full_rank(corruption, (16, 64), draws=100).satisfied


def test_block_with_extra_block_satisfies_and_without_violates() -> None:
    assert check_full_rank(BlockCorruption(size=0.25, extra_blocks=1), GRID, draws=300).satisfied
    assert not check_full_rank(BlockCorruption(size=0.25, extra_blocks=0), GRID, draws=100).satisfied


def test_gaussian_undersampled_needs_row_dropping() -> None:
    n = 32
    assert not check_full_rank(GaussianCorruption(m=16, delta=0.0), (16,), n=n, draws=8).satisfied
    good = check_full_rank(GaussianCorruption(m=16, delta=0.2), (16,), n=n, draws=8)
    assert good.satisfied and good.min_eigenvalue > 0.01
    # m >= n is full rank even without further corruption
    assert check_full_rank(GaussianCorruption(m=48, delta=0.0), (48,), n=n, draws=4).satisfied


def test_equispaced_fraction_never_measures_the_last_column() -> None:
    """fastMRI's equispaced_fraction places lines at around(arange(offset, W - 1, a)): column W-1
    is never sampled, so the condition fails on exactly that one k-space column."""
    report = check_full_rank(CartesianCorruption("equispaced_fraction", (0.125,), (4.0,)), (8, 64), draws=200)
    assert not report.satisfied
    assert report.never_observed_fraction == 1 / 64
    assert all(col == 63 for _, col in report.worst)


def test_poisson_corners_violate_only_when_cropped() -> None:
    """sigpy never samples the corners outside the inscribed ellipse (crop_corner): ~13% of a
    square grid is never measured. ambientmri's default samples them."""
    cropped = check_full_rank(KSpace2DCorruption("poisson", 3.0, (8, 8), crop_corner=True), (32, 32), draws=16)
    assert not cropped.satisfied and 0.1 < cropped.never_observed_fraction < 0.2
    full = check_full_rank(KSpace2DCorruption("poisson", 3.0, (8, 8)), (32, 32), draws=16)
    assert full.never_observed_fraction == 0.0


def test_poisson_sampler_never_fails_for_reachable_targets() -> None:
    corruption = KSpace2DCorruption("poisson", 4.0, (16, 16))
    for seed in range(60):  # about 6% of seeds miss the target with sigpy's own sampler
        mask = corruption.sample_mask((64, 64), (seed,))
        assert abs(mask.size / mask.sum() - 4.0) < 0.1
