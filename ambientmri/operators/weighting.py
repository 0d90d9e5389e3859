"""Balanced weighting of the ambient loss, and drawing the further corruption ``Ã`` on the fly.

**Balanced weighting.** Per step, a training slice supervises what ``A`` measures; of that, the
coordinates ``Ã`` hides are the only ones that teach the network to fill in what it cannot see, and
they are few (at R = 4 → R̃ ≈ 5, about 3 of 64 lines). Weighting each hidden coordinate ``k`` by
``w_k = 1 / P(k ∈ A | k ∉ Ã, Ã)`` and every coordinate ``Ã`` keeps by 1 makes the ambient residual
an unbiased estimate of the *clean* residual given the network's input::

    E_A[ Σ_{k ∈ A} w_k |D_k − x0_k|²  |  Ã, x0, n ] = Σ_k |D_k − x0_k|²

(the Noisier2Noise / SSDU weighting of self-supervised MRI; Millard & Chiew 2023). The minimiser
is unchanged: any positive weight that depends on the masks only (not on ``x0`` or the noise) keeps
the per-coordinate minimiser ``E[x0_k | Ã x_t, Ã]`` whenever every coordinate has a non-zero
chance of being supervised (the full-rank condition), because ``A`` and ``x0`` are independent given
``(Ã, Ã x_t)``. See docs/theory.md.

The weights are normalised per sample so that their mean over ``A``'s measurements is 1, which
keeps the loss's scale (and so gradient clipping and the learning rate) comparable to the
unweighted loss.

``1 / P(k ∈ A | k ∉ Ã, Ã)`` is exact where the sampling law gives it in closed form
(:meth:`~ambientmri.operators.corruptions.Corruption.balance_ratio`: Cartesian ``random`` masks,
pixel inpainting, Gaussian rows) and is otherwise replaced by the marginal ratio
``P(k ∉ Ã) / P(k ∈ A, k ∉ Ã)`` per coordinate, estimated by Monte Carlo over the corruption's
own samplers (:func:`balance_map`): equispaced and magic line masks, Poisson and uniform 2-D
masks, blocks.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from ambientmri.operators.corruptions import Corruption
from ambientmri.utils import further_key_seed, stable_seed

__all__ = [
    "MAX_RATIO",
    "Redraw",
    "Weighting",
    "balance_map",
    "balanced_weights",
    "draw_further_masks",
    "further_draw_seed",
    "further_slice_seed",
]

Weighting = Literal["none", "balanced"]
Redraw = Literal["slice", "step"]

#: Cap on the per-coordinate ratio (a coordinate the Monte Carlo estimate almost never saw hidden
#: would otherwise get a huge weight; any positive cap keeps the minimiser).
MAX_RATIO = 100.0
#: Gaussian smoothing (in grid points) of the Monte Carlo counts of 2-D masks.
SMOOTHING = 1.5


@functools.lru_cache(maxsize=16)
def _balance_map_cached(corruption: Corruption, grid: tuple[int, ...], draws: int, seed: int) -> np.ndarray:
    hidden = None
    outside = None
    for d in range(draws):
        mask = corruption.sample_mask(grid, (stable_seed("balance", seed, d) % 2**32,))
        further = corruption.further_mask(mask, further_key_seed("balance", seed, d))
        m, mt = np.asarray(mask, bool), np.asarray(further, bool)
        if hidden is None:
            hidden = np.zeros(m.shape, np.float64)
            outside = np.zeros(m.shape, np.float64)
        hidden += m & ~mt
        outside += ~mt
    assert hidden is not None and outside is not None
    if hidden.ndim == 2 and min(hidden.shape) > 1:
        # 2-D masks: a few hundred draws leave few hidden events per point; densities vary smoothly
        # (variable-density Poisson) or not at all, so pool neighbours before dividing.
        from scipy.ndimage import gaussian_filter

        hidden = gaussian_filter(hidden, SMOOTHING, mode="nearest")
        outside = gaussian_filter(outside, SMOOTHING, mode="nearest")
    ratio = np.where(hidden > 1e-3 * draws, outside / np.maximum(hidden, 1e-12), 1.0)
    return np.minimum(ratio, MAX_RATIO).astype(np.float32)


def balance_map(corruption: Corruption, grid: Sequence[int], *, draws: int = 512, seed: int = 0) -> np.ndarray:
    """Monte Carlo estimate of ``P(k ∉ Ã) / P(k ∈ A, k ∉ Ã)`` per coordinate of the mask grid.

    Args:
        corruption: the corruption whose samplers are drawn (``A`` from fresh seeds, one ``Ã`` each).
        grid: the image grid ``(H, W)`` (``(m,)`` for the Gaussian operator).
        draws: number of ``(A, Ã)`` pairs.
        seed: seed of the draws (the estimate is a pure function of its arguments and is cached).

    Returns:
        float32 array in the compact mask shape (``(1, W)`` for line masks, ``(H, W)`` for 2-D
        masks); coordinates never hidden in the draws get 1, every value is capped at
        :data:`MAX_RATIO`.
    """
    return _balance_map_cached(corruption, tuple(int(g) for g in grid), int(draws), int(seed)).copy()


def balanced_weights(
    corruption: Corruption,
    mask: torch.Tensor,
    further: torch.Tensor,
    grid: Sequence[int],
    *,
    ratio_map: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-coordinate loss weights on ``A``'s mask grid, normalised to mean 1 over ``A``'s measurements.

    Args:
        corruption: the training corruption.
        mask: ``A``'s masks ``(B, *mask_shape)`` (0/1 float).
        further: ``Ã``'s masks, same shape, ``≤ mask``.
        grid: the image grid.
        ratio_map: the Monte Carlo map of :func:`balance_map` as a tensor (used when the corruption
            has no closed form; computed here if not given).

    Returns:
        ``(B, *mask_shape)`` float32: ``ratio`` where ``A`` measures and ``Ã`` hides, 1 where ``Ã``
        keeps, 0 where ``A`` measures nothing; each sample divided by its mean over ``A``'s
        measurements.
    """
    mask = mask.to(torch.float32)
    further = torch.broadcast_to(further.to(torch.float32), mask.shape)
    ratio = corruption.balance_ratio(mask, further, tuple(grid))
    if ratio is None:
        if ratio_map is None:
            ratio_map = torch.from_numpy(balance_map(corruption, grid))
        ratio = torch.broadcast_to(ratio_map.to(mask.device, torch.float32), mask.shape)
    ratio = ratio.clamp(1.0, MAX_RATIO)
    hidden = mask * (1.0 - further)
    w = further + hidden * ratio
    b = mask.shape[0]
    # The mean over A's measurements: compact masks broadcast over the rest of the grid uniformly, so
    # the mean over the compact mask's measured entries is the mean over all measured coordinates.
    total = w.reshape(b, -1).sum(1)
    count = mask.reshape(b, -1).sum(1).clamp_min(1.0)
    mean = (total / count).clamp_min(1e-12)
    return w / mean.reshape((b,) + (1,) * (mask.ndim - 1))


def further_draw_seed(seed: int, step: int, position: int, draw: int = 0) -> tuple[int]:
    """The seed of the ``Ã`` drawn at training ``step`` for global batch ``position`` (draw ``draw``).

    A pure function of (training seed, step, global position), so a resumed run and a torchrun job
    draw exactly what an uninterrupted one-process run draws.
    """
    return (stable_seed("further-step", int(seed), int(step), int(position), int(draw)) % 2**32,)


def further_slice_seed(seed: int, index: int, draw: int) -> tuple[int]:
    """The seed of extra draw ``draw ≥ 1`` of a slice's fixed ``Ã`` (``redraw: slice`` with ``draws > 1``)."""
    return (stable_seed("further-slice", int(seed), int(index), int(draw)) % 2**32,)


def draw_further_masks(corruption: Corruption, masks: torch.Tensor, seeds: Sequence[tuple[int, ...]]) -> torch.Tensor:
    """Draw one ``Ã`` per row of ``masks`` ``(B, *mask_shape)`` from ``p(Ã | A)`` with the given seeds.

    Needs nothing but ``A``'s mask (so nothing but the measurements): the further corruption only
    removes measurements ``A`` has.
    """
    rows = masks.detach().to("cpu").numpy()
    if len(seeds) != rows.shape[0]:
        raise ValueError(f"draw_further_masks: {len(seeds)} seeds for {rows.shape[0]} masks")
    out = np.stack([
        np.asarray(corruption.further_mask((row > 0).astype(np.uint8), s), np.float32).reshape(row.shape)
        for row, s in zip(rows, seeds, strict=True)
    ])
    return torch.from_numpy(out).to(masks.device)
