"""Corruptions: a deterministic operator built from parameters, plus seeded samplers of those
parameters (the training corruption ``A``) and of the further corruption ``Ã ⊆ A``.

Every corruption here is a :class:`~ambientmri.operators.linear.MaskedOperator` ``A = M · T``, so
its parameters are a 0/1 mask ``M`` on ``T``'s output grid (plus coil maps for SENSE and a
per-sample matrix seed for the Gaussian operator). Masks are stored in a compact shape that
broadcasts to the grid: ``(1, W)`` for Cartesian line masks, ``(H, W)`` for pixel and 2-D k-space
masks, ``(m,)`` for the Gaussian operator's measured rows.

The further corruption only removes measurements that ``A`` has, and needs nothing but ``A``'s mask:
``Ã x0 = M̃ ⊙ y`` is computable from the measurements alone (Daras et al. 2023, §3).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ambientmri.operators.base import Identity
from ambientmri.operators.linear import FFT2, CoilSensitivity, MaskedOperator, Matrix
from ambientmri.operators.masks import (
    center_slice,
    create_mask_func,
    poisson_mask,
    uniform_random_mask_2d,
)
from ambientmri.utils import stable_seed

SeedLike = int | Sequence[int]

__all__ = [
    "BlockCorruption",
    "CartesianCorruption",
    "Corruption",
    "GaussianCorruption",
    "InpaintingCorruption",
    "KSpace2DCorruption",
    "KSpaceFurtherParams",
    "SeedLike",
]


def _rng(seed: SeedLike) -> np.random.Generator:
    return np.random.default_rng(seed if isinstance(seed, int) else [int(s) for s in seed])


def _int_seed(seed: SeedLike) -> int:
    return int(seed) % 2**32 if isinstance(seed, int) else stable_seed(*seed) % 2**32


def _remove_count(n_sampled: int, n_candidates: int, size: int, *, increase: float | None,
                  count: int | None, fraction: float | None) -> int:
    """How many of ``n_candidates`` removable measurements the further corruption drops.

    ``increase``: raise the acceleration ``size / n_sampled`` by this much (R̃ = R + increase);
    ``count``: drop exactly this many; ``fraction``: drop this fraction of the removable ones.
    """
    if count is not None:
        n = count
    elif fraction is not None:
        n = round(fraction * n_candidates)
    elif increase is not None and n_sampled > 0:
        r_tilde = size / n_sampled + increase
        n = n_sampled - round(size / r_tilde)
    else:
        n = 0
    return int(min(max(n, 0), n_candidates))


class Corruption(ABC):
    """A family of corruption operators with seeded samplers of ``A`` and of ``Ã ⊆ A``."""

    kind: ClassVar[str]
    #: "image" (mask on pixels), "kspace" (mask on k-space) or "vector" (Gaussian rows).
    domain: ClassVar[str]

    @abstractmethod
    def sample_mask(self, grid: tuple[int, ...], seed: SeedLike) -> np.ndarray:
        """Draw ``A``'s mask for one sample: a compact 0/1 ``uint8`` array broadcastable to ``grid``."""

    @abstractmethod
    def further_mask(self, mask: np.ndarray, seed: SeedLike) -> np.ndarray:
        """Draw ``Ã``'s mask given ``A``'s (``uint8``, same shape, ``≤ mask`` element-wise)."""

    def balance_ratio(self, mask: torch.Tensor, further: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor | None:
        """``1 / P(k ∈ A | k ∉ Ã, Ã)`` per coordinate in closed form, where the sampling law gives it.

        Returns a float tensor of ``mask``'s shape (only its values where ``A`` measures and ``Ã``
        hides are used), or None when there is no closed form: then
        :func:`ambientmri.operators.weighting.balance_map` estimates the marginal ratio
        ``P(k ∉ Ã) / P(k ∈ A, k ∉ Ã)`` by Monte Carlo over this corruption's samplers.
        """
        return None

    def operator(
        self,
        mask: torch.Tensor,
        grid: tuple[int, ...],
        *,
        maps: torch.Tensor | None = None,
        matrix: torch.Tensor | None = None,
    ) -> MaskedOperator:
        """Build ``A`` from its parameters.

        Args:
            mask: ``(*batch, *mask_shape)`` 0/1 tensor broadcastable to ``(*batch, *grid)``.
            grid: the image grid ``(H, W)`` (or ``(m,)`` measurements for the Gaussian operator).
            maps: coil maps ``(*batch, C, H, W)`` complex64 for multi-coil k-space (SENSE).
            matrix: the sensing matrix ``(*batch, m, n)`` for the Gaussian operator.
        """
        if self.domain == "image":
            return MaskedOperator(mask, Identity(grid), kind=self.kind)
        if self.domain == "kspace":
            if maps is None:
                return MaskedOperator(mask, FFT2(grid), kind=self.kind)
            coils = CoilSensitivity(maps)
            if coils.in_shape != tuple(grid):
                raise ValueError(
                    f"{self.kind}: coil maps have image shape {coils.in_shape}, expected {tuple(grid)}"
                )
            return MaskedOperator(mask, FFT2(coils.out_shape) @ coils, coil_axis=True, kind=self.kind)
        raise NotImplementedError(f"{self.kind}: operator() must be overridden")

    def describe(self) -> str:
        """A one-line human description."""
        return self.kind


def _as_tuple(values: float | Sequence[float]) -> tuple[float, ...]:
    if isinstance(values, int | float):
        return (float(values),)
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class InpaintingCorruption(Corruption):
    """Random pixel inpainting ("dust"): each pixel kept with probability ``1 − p``.

    Further corruption: each kept pixel dropped with probability ``delta``. The full-rank condition
    holds iff ``delta > 0`` (Daras et al. 2023).
    """

    p: float = 0.6
    delta: float = 0.1

    kind: ClassVar[str] = "inpainting"
    domain: ClassVar[str] = "image"

    def __post_init__(self) -> None:
        if not 0.0 <= self.p < 1.0:
            raise ValueError(f"inpainting: p must be in [0, 1), got {self.p}")
        if not 0.0 <= self.delta < 1.0:
            raise ValueError(f"inpainting: delta must be in [0, 1), got {self.delta}")

    def sample_mask(self, grid: tuple[int, ...], seed: SeedLike) -> np.ndarray:
        return (_rng(seed).random(grid) >= self.p).astype(np.uint8)

    def further_mask(self, mask: np.ndarray, seed: SeedLike) -> np.ndarray:
        keep = _rng(seed).random(mask.shape) >= self.delta
        return (mask.astype(bool) & keep).astype(np.uint8)

    def balance_ratio(self, mask: torch.Tensor, further: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor | None:
        """``P(k ∉ Ã) / P(k ∈ A, k ∉ Ã) = (p + (1 − p) δ) / ((1 − p) δ)``: the same for every pixel."""
        return _iid_ratio(self.p, self.delta, mask)

    def describe(self) -> str:
        return f"pixel inpainting, p={self.p:g} erased, further δ={self.delta:g}"


@dataclass(frozen=True)
class BlockCorruption(Corruption):
    """Block masking: ``blocks`` rectangles erased, each fully inside the image, placed at random.

    The block side is ``size`` times the image side (the reference code's ``fixed_box``) unless
    ``size_pixels`` is given. Further corruption: ``extra_blocks`` more blocks of the same size.
    """

    size: float = 0.25
    size_pixels: tuple[int, int] | None = None
    blocks: int = 1
    extra_blocks: int = 1

    kind: ClassVar[str] = "block"
    domain: ClassVar[str] = "image"

    def __post_init__(self) -> None:
        if not 0.0 < self.size < 1.0:
            raise ValueError(f"block: size must be a fraction in (0, 1), got {self.size}")
        if self.blocks < 1 or self.extra_blocks < 0:
            raise ValueError("block: blocks must be >= 1 and extra_blocks >= 0")

    def block_shape(self, grid: tuple[int, ...]) -> tuple[int, int]:
        """The erased block's ``(height, width)`` on ``grid``."""
        h, w = grid[-2:]
        if self.size_pixels is not None:
            bh, bw = self.size_pixels
        else:
            bh, bw = max(1, round(self.size * h)), max(1, round(self.size * w))
        if not (0 < bh < h and 0 < bw < w):
            raise ValueError(f"block: block {bh}x{bw} does not fit strictly inside the image {h}x{w}")
        return int(bh), int(bw)

    def _erase(self, mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        h, w = mask.shape[-2:]
        bh, bw = self.block_shape((h, w))
        out = mask.copy()
        for _ in range(n):
            top = int(rng.integers(0, h - bh + 1))
            left = int(rng.integers(0, w - bw + 1))
            out[..., top : top + bh, left : left + bw] = 0
        return out

    def sample_mask(self, grid: tuple[int, ...], seed: SeedLike) -> np.ndarray:
        return self._erase(np.ones(grid[-2:], dtype=np.uint8), self.blocks, _rng(seed))

    def further_mask(self, mask: np.ndarray, seed: SeedLike) -> np.ndarray:
        return self._erase(mask.astype(np.uint8), self.extra_blocks, _rng(seed))

    def describe(self) -> str:
        return f"block masking, {self.blocks} block(s) of {self.size:g}·side, +{self.extra_blocks} further"


@dataclass(frozen=True)
class KSpaceFurtherParams:
    """How many of ``A``'s removable k-space measurements ``Ã`` drops.

    ``acceleration_increase`` is one number (R̃ = R + it) or a range ``(lo, hi)``: then the increase
    is drawn uniformly from it for every draw of ``Ã`` (from the draw's own seed).
    """

    acceleration_increase: float | tuple[float, float] | None = 1.0
    extra: int | None = None
    extra_fraction: float | None = None

    def count(self, n_sampled: int, n_candidates: int, size: int, rng: np.random.Generator | None = None) -> int:
        increase = self.acceleration_increase
        if isinstance(increase, tuple):
            lo, hi = increase
            increase = float(lo if rng is None or hi <= lo else rng.uniform(lo, hi))
        return _remove_count(
            n_sampled, n_candidates, size,
            increase=increase, count=self.extra, fraction=self.extra_fraction,
        )


@dataclass(frozen=True)
class CartesianCorruption(Corruption):
    """Cartesian line sampling ``A = M F`` (single coil) or ``A = M F S`` (multi-coil SENSE).

    ``M`` selects phase-encode columns with one of fastMRI's mask families (bit-identical to
    fastMRI 0.3.0 for the same seed). Further corruption: remove extra sampled lines outside the
    calibration (ACS) block, chosen uniformly; by default as many as raise the acceleration by
    ``acceleration_increase`` (R̃ ≈ R + 1, as in Aali et al. 2025), or ``extra`` lines, or a
    fraction ``extra_fraction`` of the non-ACS lines.
    """

    mask_type: str = "random"
    center_fractions: tuple[float, ...] = (0.08,)
    accelerations: tuple[float, ...] = (4.0,)
    further: KSpaceFurtherParams = KSpaceFurtherParams()

    kind: ClassVar[str] = "cartesian"
    domain: ClassVar[str] = "kspace"

    def __post_init__(self) -> None:
        object.__setattr__(self, "center_fractions", _as_tuple(self.center_fractions))
        object.__setattr__(self, "accelerations", _as_tuple(self.accelerations))
        create_mask_func(self.mask_type, self.center_fractions, self.accelerations)  # validates

    def mask_func(self):
        """The fastMRI-compatible mask function."""
        return create_mask_func(self.mask_type, self.center_fractions, self.accelerations)

    def sample_mask(self, grid: tuple[int, ...], seed: SeedLike) -> np.ndarray:
        mask, _ = self.mask_func()(int(grid[-1]), seed=seed)
        return (np.asarray(mask) > 0).astype(np.uint8).reshape(1, -1)

    def further_mask(self, mask: np.ndarray, seed: SeedLike) -> np.ndarray:
        cols = np.asarray(mask).reshape(-1).astype(bool)
        acs = self.protected_columns(cols)
        candidates = np.flatnonzero(cols & ~acs)
        rng = _rng(seed)
        n = self.further.count(int(cols.sum()), candidates.size, cols.size, rng)
        out = cols.copy()
        if n:
            out[rng.choice(candidates, size=n, replace=False)] = False
        return out.astype(np.uint8).reshape(np.shape(mask))

    def balance_ratio(self, mask: torch.Tensor, further: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor | None:
        """Closed form for the ``random`` family: ``(non-ACS lines outside Ã) / (lines A has and Ã hides)``.

        fastMRI's random mask keeps every column independently with one probability, and ``Ã``
        removes a uniform subset of ``A``'s non-ACS lines, so given ``Ã`` the hidden lines are a
        uniform subset of the non-ACS lines outside ``Ã``: each is in ``A`` with probability
        ``n_hidden / n_outside``. Other families (equispaced, magic) have no such symmetry and use
        the Monte Carlo estimate.
        """
        if self.mask_type != "random":
            return None
        m = mask.reshape(-1, mask.shape[-1]) > 0
        mt = further.reshape(-1, further.shape[-1]) > 0
        protected = torch.stack([
            torch.from_numpy(self.protected_columns(row.cpu().numpy())) for row in m
        ]).to(mask.device)
        outside = (~mt & ~protected).sum(-1).to(torch.float32)
        hidden = (m & ~mt).sum(-1).to(torch.float32)
        ratio = outside / hidden.clamp_min(1.0)
        return ratio.reshape((*mask.shape[:-1], 1)).expand(mask.shape)

    def protected_columns(self, cols: np.ndarray) -> np.ndarray:
        """The calibration columns the further corruption never removes.

        The central ``round(W · center_fraction)`` columns (the smallest of the configured
        fractions), clipped to the sampled run around the center. Not the whole sampled run: a
        random line that happens to touch the ACS block must stay removable, or it would never be
        supervised while hidden (the full-rank check flags exactly that).
        """
        cols = np.asarray(cols).astype(bool).reshape(-1)
        width = cols.size
        num_low = min(round(width * cf) for cf in self.center_fractions)
        num_low = min(num_low, int(acs_columns(cols).sum()))
        protected = np.zeros_like(cols)
        protected[center_slice(width, num_low)] = True
        return protected & cols

    def describe(self) -> str:
        return (
            f"Cartesian {self.mask_type} mask, R={'/'.join(f'{a:g}' for a in self.accelerations)}, "
            f"center fraction {'/'.join(f'{c:g}' for c in self.center_fractions)}"
        )


def acs_columns(cols: np.ndarray) -> np.ndarray:
    """The calibration (ACS) block of a 1-D line mask: the run of sampled columns around ``W // 2``.

    Derived from the mask alone, so the further corruption needs nothing but the measurements.
    """
    cols = np.asarray(cols).astype(bool).reshape(-1)
    acs = np.zeros_like(cols)
    c = cols.size // 2
    if cols.size == 0 or not cols[c]:
        return acs
    lo = c
    while lo > 0 and cols[lo - 1]:
        lo -= 1
    hi = c
    while hi + 1 < cols.size and cols[hi + 1]:
        hi += 1
    acs[lo : hi + 1] = True
    return acs


def calib_box(grid: tuple[int, int], calib: tuple[int, int]) -> tuple[slice, slice]:
    """Slices of the centered calibration box on a 2-D k-space grid (fastMRI-style centering)."""
    h, w = grid
    return center_slice(h, min(calib[0], h)), center_slice(w, min(calib[1], w))


@dataclass(frozen=True)
class KSpace2DCorruption(Corruption):
    """Incoherent 2-D k-space undersampling for compressed sensing (3-D Cartesian / simulation).

    ``pattern``: ``"poisson"`` (variable-density Poisson disc, sigpy) or ``"uniform"`` (i.i.d.
    points outside a fully sampled ``calib`` box). Further corruption: extra points removed outside
    the calibration box (same options as :class:`CartesianCorruption`). ``crop_corner`` keeps
    sigpy's habit of never sampling the corners outside the inscribed ellipse; it is off by default
    because corners that are never measured violate the full-rank condition. A seed for which the
    Poisson sampler cannot reach the acceleration moves on to the next derived seed.
    """

    pattern: str = "poisson"
    acceleration: float = 4.0
    calib: tuple[int, int] = (16, 16)
    further: KSpaceFurtherParams = KSpaceFurtherParams()
    crop_corner: bool = False

    #: Poisson-disc sampling cannot hit the target acceleration for every seed; so many derived
    #: seeds are tried, in a fixed order, before giving up.
    POISSON_SEED_TRIES: ClassVar[int] = 16

    kind: ClassVar[str] = "kspace2d"
    domain: ClassVar[str] = "kspace"

    def __post_init__(self) -> None:
        if self.pattern not in ("poisson", "uniform"):
            raise ValueError(f"kspace2d: pattern must be one of poisson, uniform; got {self.pattern!r}")
        if self.acceleration <= 1:
            raise ValueError(f"kspace2d: acceleration must be > 1, got {self.acceleration}")

    def sample_mask(self, grid: tuple[int, ...], seed: SeedLike) -> np.ndarray:
        shape = (int(grid[-2]), int(grid[-1]))
        calib = (min(self.calib[0], shape[0]), min(self.calib[1], shape[1]))
        if self.pattern == "poisson":
            mask = self._poisson(shape, calib, _int_seed(seed))
        else:
            mask = uniform_random_mask_2d(shape, self.acceleration, calib=calib, seed=_int_seed(seed))
        return (np.asarray(mask) > 0).astype(np.uint8)

    def _poisson(self, shape: tuple[int, int], calib: tuple[int, int], seed: int) -> np.ndarray:
        error: ValueError | None = None
        for attempt in range(self.POISSON_SEED_TRIES):
            try:
                return poisson_mask(
                    shape, self.acceleration, calib=calib, seed=(seed + attempt) % 2**32,
                    crop_corner=self.crop_corner,
                )
            except ValueError as exc:
                error = exc
        raise ValueError(f"{error} (tried {self.POISSON_SEED_TRIES} seeds)")

    def further_mask(self, mask: np.ndarray, seed: SeedLike) -> np.ndarray:
        m = np.asarray(mask).astype(bool)
        protected = np.zeros_like(m)
        protected[calib_box(m.shape, self.calib)] = True
        candidates = np.flatnonzero(m & ~protected)
        rng = _rng(seed)
        n = self.further.count(int(m.sum()), candidates.size, m.size, rng)
        out = m.reshape(-1).copy()
        if n:
            out[rng.choice(candidates, size=n, replace=False)] = False
        return out.reshape(m.shape).astype(np.uint8)

    def balance_ratio(self, mask: torch.Tensor, further: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor | None:
        """Closed form for the ``uniform`` pattern (i.i.d. points outside the calibration box, a
        uniform subset of them removed by ``Ã``): ``(points outside Ã and the box) / (hidden points)``.
        Poisson-disc masks are not exchangeable (variable density): Monte Carlo."""
        if self.pattern != "uniform":
            return None
        h, w = mask.shape[-2:]
        protected = torch.zeros((h, w), dtype=torch.bool, device=mask.device)
        protected[calib_box((h, w), self.calib)] = True
        m, mt = mask > 0, torch.broadcast_to(further, mask.shape) > 0
        outside = (~mt & ~protected).reshape(*mask.shape[:-2], -1).sum(-1).to(torch.float32)
        hidden = (m & ~mt).reshape(*mask.shape[:-2], -1).sum(-1).to(torch.float32)
        ratio = outside / hidden.clamp_min(1.0)
        return ratio[..., None, None].expand(mask.shape)

    def describe(self) -> str:
        return f"2-D {self.pattern} k-space sampling, R={self.acceleration:g}, calib {self.calib}"


@dataclass(frozen=True)
class GaussianCorruption(Corruption):
    """A dense Gaussian sensing matrix ``G`` (``m × n``, entries N(0, 1/m)), one per sample.

    ``A = diag(M) G`` where ``M`` keeps each of the ``m`` rows with probability ``1 − p`` (``p = 0``:
    all rows measured). ``G`` is drawn from the sample's matrix seed, so it is reproducible from
    the store. Further corruption: each measured row dropped with probability ``delta``. For small
    experiments (``n`` a few thousand at most).
    """

    m: int = 64
    p: float = 0.0
    delta: float = 0.1

    kind: ClassVar[str] = "gaussian"
    domain: ClassVar[str] = "vector"

    def __post_init__(self) -> None:
        if self.m < 1:
            raise ValueError(f"gaussian: m must be >= 1, got {self.m}")
        if not (0.0 <= self.p < 1.0 and 0.0 <= self.delta < 1.0):
            raise ValueError("gaussian: p and delta must be in [0, 1)")

    def matrix(self, n: int, seed: SeedLike) -> np.ndarray:
        """The sample's sensing matrix ``(m, n)`` float32 with entries N(0, 1/m)."""
        return (_rng(seed).standard_normal((self.m, n)) / np.sqrt(self.m)).astype(np.float32)

    def sample_mask(self, grid: tuple[int, ...], seed: SeedLike) -> np.ndarray:
        return (_rng(seed).random(self.m) >= self.p).astype(np.uint8)

    def further_mask(self, mask: np.ndarray, seed: SeedLike) -> np.ndarray:
        keep = _rng(seed).random(np.shape(mask)) >= self.delta
        return (np.asarray(mask).astype(bool) & keep).astype(np.uint8)

    def operator(
        self,
        mask: torch.Tensor,
        grid: tuple[int, ...],
        *,
        maps: torch.Tensor | None = None,
        matrix: torch.Tensor | None = None,
    ) -> MaskedOperator:
        if matrix is None:
            raise ValueError("gaussian: operator() needs the sample's matrix")
        return MaskedOperator(mask, Matrix(matrix, name="Gaussian"), kind=self.kind)

    def balance_ratio(self, mask: torch.Tensor, further: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor | None:
        """Rows are kept and dropped independently: the inpainting closed form."""
        return _iid_ratio(self.p, self.delta, mask)

    def describe(self) -> str:
        return f"Gaussian sensing, m={self.m}, rows dropped p={self.p:g}, further δ={self.delta:g}"


def _iid_ratio(p: float, delta: float, mask: torch.Tensor) -> torch.Tensor:
    hidden = (1.0 - p) * delta
    value = (p + hidden) / hidden if hidden > 0 else 1.0
    return torch.full_like(mask, float(value), dtype=torch.float32)

_KSpaceFurther = KSpaceFurtherParams  # the former private name, kept for existing callers
