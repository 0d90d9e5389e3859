"""The full-rank condition of Ambient Diffusion, checked by Monte Carlo.

Daras et al. (2023, Thm. 4.2): training with the ambient loss learns ``E[x0 | Ã x_t, Ã]`` if
``E[AᴴA | Ã]`` is full rank. In words: every direction of the image that the further corruption
``Ã`` hides from the network must, with non-zero probability, still be measured by ``A`` and so
appear in the loss. If some pixel or k-space location is never measured, or is measured only when
the network also sees it, nothing ever teaches the network what belongs there.

For a masked operator ``A = M T`` with a unitary ``T`` (pixels, Fourier, SENSE with maps that cover
the field of view) ``E[AᴴA | Ã] = Tᴴ diag(π) T`` with ``π_j = 1`` where ``Ã`` measures coordinate
``j`` and ``π_j = P(M_j = 1 | M̃_j = 0)`` elsewhere, so the smallest eigenvalue is ``min_j π_j``.
We estimate ``π_j`` per coordinate from draws of ``(A, Ã)`` (coordinate-wise conditioning, exact
for samplers that draw coordinates independently, a necessary condition otherwise). For the
Gaussian operator, given ``Ã`` the dropped rows are fresh Gaussians, so
``E[AᴴA | Ã] = ÃᴴÃ + (E[#dropped rows] / m) I``; we average its smallest eigenvalue over draws.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ambientmri.operators.corruptions import Corruption, GaussianCorruption
from ambientmri.utils import further_key_seed


@dataclass
class ConditionReport:
    """Result of :func:`check_full_rank`.

    Attributes:
        satisfied: whether ``E[AᴴA | Ã]`` is estimated full rank.
        min_eigenvalue: estimated smallest eigenvalue of ``E[AᴴA | Ã]`` (``min_j π_j`` for masks).
        never_observed_fraction: fraction of coordinates that ``A`` measured in no draw.
        unsupervised_fraction: fraction of coordinates that were hidden by ``Ã`` in some draw but
            never measured by ``A`` while hidden (``π_j = 0``): the network gets no signal there.
        coordinates: what the coordinates are ("pixels", "k-space locations", ...).
        n_coordinates: how many there are.
        draws: Monte Carlo draws of ``(A, Ã)``.
        resolution: the smallest non-zero ``π`` the draws can resolve (rule of three, 95%).
        worst: up to 10 indices of the worst coordinates.
        message: a one-paragraph explanation in plain words.
    """

    satisfied: bool
    min_eigenvalue: float
    never_observed_fraction: float
    unsupervised_fraction: float
    coordinates: str
    n_coordinates: int
    draws: int
    resolution: float
    worst: list[list[int]] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def check_full_rank(
    corruption: Corruption,
    grid: tuple[int, ...],
    *,
    draws: int = 256,
    seed: int = 0,
    n: int | None = None,
    fixed_mask: bool = False,
) -> ConditionReport:
    """Estimate by Monte Carlo whether ``E[AᴴA | Ã]`` is full rank for ``corruption`` on ``grid``.

    Args:
        corruption: the corruption family (its samplers of ``A`` and ``Ã``).
        grid: the image grid ``(H, W)`` (for the Gaussian operator: ``(m,)``).
        draws: how many independent ``(A, Ã)`` pairs to draw at first; coordinates that A measures
            but that were never supervised get up to 8x as many draws before they count as
            violations.
        seed: base seed of the draws (the global RNG is never used).
        n: the image dimension, for the Gaussian operator only.
        fixed_mask: every scan shares one ``A`` (a cohort acquired with one fixed pattern); only
            ``Ã`` varies between draws.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if isinstance(corruption, GaussianCorruption):
        if n is None:
            raise ValueError("gaussian: pass n, the image dimension")
        return _check_gaussian(corruption, n, draws, seed)
    return _check_masked(corruption, tuple(grid), draws, seed, fixed_mask)


def _check_masked(
    corruption: Corruption, grid: tuple[int, ...], draws: int, seed: int, fixed_mask: bool
) -> ConditionReport:
    # Count on the masks' own (compact) shape: a Cartesian line mask is (1, W), so its
    # coordinates are k-space lines and the fractions are those of the whole grid.
    shape = np.broadcast_shapes(corruption.sample_mask(grid, (seed, 0, 0)).shape, (1,) * len(grid))
    seen = np.zeros(shape, np.int64)  # draws in which A measured j
    hidden = np.zeros(shape, np.int64)  # draws in which Ã hid j
    supervised = np.zeros(shape, np.int64)  # draws in which A measured j while Ã hid it
    done = 0
    max_draws = 8 * draws
    while True:
        for d in range(done, draws):
            mask = corruption.sample_mask(grid, (seed, 0 if fixed_mask else d, 0))
            further = corruption.further_mask(mask, further_key_seed(seed, d))
            m = np.broadcast_to(mask.astype(bool), shape)
            mt = np.broadcast_to(further.astype(bool), shape)
            seen += m
            hidden += ~mt
            supervised += m & ~mt
        done = draws
        # A zero count for a coordinate that A does measure may be bad luck with a small
        # probability: draw more (up to 8x) before calling it structural.
        undecided = (supervised == 0) & (hidden > 0) & (seen > 0)
        if not undecided.any() or draws >= max_draws:
            break
        draws = min(2 * draws, max_draws)
    with np.errstate(invalid="ignore", divide="ignore"):
        pi = np.where(hidden > 0, supervised / np.maximum(hidden, 1), 1.0)
    never = seen == 0
    pi = np.where(never, 0.0, pi)
    unsupervised = (pi == 0) & (hidden > 0)
    min_eig = float(pi.min())
    if corruption.domain == "image":
        coords = "pixels"
    elif shape[-2] == 1 and grid[-2] > 1:
        coords = "k-space lines"
    else:
        coords = "k-space locations"
    worst = np.argwhere(pi <= min_eig)[:10].tolist()
    draws = done
    satisfied = bool(min_eig > 0)
    resolution = 3.0 / draws
    if satisfied:
        msg = (
            f"Satisfied: every one of the {pi.size} {coords} hidden by the further corruption was "
            f"still measured by A in at least {min_eig:.3g} of the draws where it was hidden, so the "
            "ambient loss supervises every part of the image."
        )
    else:
        msg = (
            f"Violated: {never.mean():.1%} of the {coords} are never measured and "
            f"{unsupervised.mean():.1%} are never supervised when the network cannot see them "
            f"(in {draws} draws; a true probability above {resolution:.2g} would have shown). "
            "The model cannot learn what belongs there. "
            + (
                "Use a sampling pattern that covers every one of them across scans (e.g. mask_type "
                "random with seed_mode slice, or crop_corner false)."
                if never.any()
                else "Make the further corruption remove them sometimes (delta > 0, extra lines or blocks)."
            )
        )
    return ConditionReport(
        satisfied=satisfied,
        min_eigenvalue=min_eig,
        never_observed_fraction=float(never.mean()),
        unsupervised_fraction=float(unsupervised.mean()),
        coordinates=coords,
        n_coordinates=int(pi.size),
        draws=draws,
        resolution=resolution,
        worst=worst,
        message=msg,
    )


def _check_gaussian(corruption: GaussianCorruption, n: int, draws: int, seed: int) -> ConditionReport:
    eigs = []
    for d in range(min(draws, 64)):  # an eigendecomposition per draw: n³
        g = corruption.matrix(n, (seed, d, 1)).astype(np.float64)
        mask = corruption.sample_mask((corruption.m,), (seed, d, 0)).astype(bool)
        further = corruption.further_mask(mask, further_key_seed(seed, d)).astype(bool)
        gt = g[further]
        expected_dropped = mask.sum() - further.sum()
        if gt.shape[0] < n:  # ÃᴴÃ is singular: its smallest eigenvalue is 0, exactly
            eigs.append(float(expected_dropped / corruption.m))
            continue
        cond = gt.T @ gt + (expected_dropped / corruption.m) * np.eye(n)
        eigs.append(float(np.linalg.eigvalsh(cond)[0]))
    min_eig = float(np.mean(eigs))
    tol = 1e-9 * n
    satisfied = bool(min_eig > tol)
    msg = (
        f"{'Satisfied' if satisfied else 'Violated'}: the mean smallest eigenvalue of E[AᴴA | Ã] over "
        f"{len(eigs)} draws is {min_eig:.3g}"
        + ("" if satisfied else f" (m={corruption.m} < n={n} and no rows dropped by Ã)")
        + "."
    )
    return ConditionReport(
        satisfied=satisfied,
        min_eigenvalue=min_eig,
        never_observed_fraction=0.0,
        unsupervised_fraction=0.0 if satisfied else float(max(n - corruption.m, 0) / n),
        coordinates="image directions",
        n_coordinates=n,
        draws=len(eigs),
        resolution=tol,
        message=msg,
    )
