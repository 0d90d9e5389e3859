"""k-space sampling masks: fastMRI-compatible Cartesian masks and 2-D (Poisson-disc, uniform) masks.

Cartesian masks are 1-D over the phase-encode (width) axis of k-space, in the *centered* k-space
convention of fastMRI (DC at column ``width // 2``). Every family reproduces the masks of fastMRI
0.3.0's ``create_mask_for_mask_type(...)(shape, offset, seed)`` bit for bit (``width`` is that
function's ``shape[-2]``); ``tests/golden`` holds vectors generated with the reference package.

The semantics shared by all Cartesian families, in draw order:

1. Each mask function owns a ``np.random.RandomState(seed)``. A call with ``seed=`` reseeds it
   for the duration of the call and restores the previous state afterwards (so per-volume seeding
   never disturbs the instance's own stream). numpy's global RNG is never touched.
2. The ``(center_fraction, acceleration)`` pair is chosen with ``rng.randint(len(...))`` -- one draw
   for the pair, or (``allow_any_combination``) one draw for each list, center fractions first.
   With a single pair the draw consumes no randomness.
3. ``num_low_frequencies = round(width * center_fraction)`` (Python banker's rounding); those
   columns are ones at ``[pad, pad + num_low_frequencies)`` with
   ``pad = (width - num_low_frequencies + 1) // 2``.
4. The family-specific high-frequency pattern (see the classes), OR-ed with the center.

Validation: inputs for which fastMRI's formulas break down (negative probabilities, undefined or
zero spacings, non-integer strides, accelerations above the width, ...) raise a one-line
:class:`ValueError` naming the values; every other input gives fastMRI's mask exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, NoReturn

import numpy as np

__all__ = [
    "CARTESIAN_MASK_TYPES",
    "MASK_TYPES",
    "CartesianMaskFunc",
    "EquispacedFractionMaskFunc",
    "EquispacedMaskFunc",
    "MagicFractionMaskFunc",
    "MagicMaskFunc",
    "RandomMaskFunc",
    "cartesian_mask",
    "center_slice",
    "create_mask_func",
    "draw_mask",
    "poisson_mask",
    "uniform_random_mask_2d",
]

CARTESIAN_MASK_TYPES: tuple[str, ...] = (
    "random",
    "equispaced",
    "equispaced_fraction",
    "magic",
    "magic_fraction",
)
MASK_TYPES: tuple[str, ...] = (*CARTESIAN_MASK_TYPES, "poisson", "uniform2d")

Seed = int | Sequence[int] | None


def center_slice(size: int, num: int) -> slice:
    """The ``num`` central indices of an axis of length ``size``, fastMRI's placement.

    The block starts at ``(size - num + 1) // 2``, so for even ``num`` it is centered on the DC
    index ``size // 2`` of centered k-space.

    Args:
        size: axis length.
        num: number of central indices, ``0 <= num <= size``.

    Returns:
        ``slice(pad, pad + num)``.
    """
    pad = (size - num + 1) // 2
    return slice(pad, pad + num)


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(repr(v) for v in values) + "]"


def _is_real_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


class CartesianMaskFunc:
    """Base class of the 1-D Cartesian mask functions (one subclass per family).

    Args:
        center_fractions: fraction(s) of central columns that are always sampled, each in (0, 1).
        accelerations: target acceleration(s), each > 1; same length as ``center_fractions``
            unless ``allow_any_combination``.
        allow_any_combination: choose the center fraction and the acceleration independently
            (two draws) instead of as pairs (one draw).
        seed: seed of the instance's own ``np.random.RandomState`` (int, sequence of ints or None
            for OS entropy).

    Calling the instance returns ``(mask, num_low_frequencies)``: ``mask`` float32 of shape
    ``(width,)`` with values 0/1 in centered k-space order.
    """

    mask_type: ClassVar[str] = ""
    #: families that slice with the acceleration as a stride need an integer acceleration.
    integer_acceleration: ClassVar[bool] = False

    def __init__(
        self,
        center_fractions: Sequence[float],
        accelerations: Sequence[float],
        allow_any_combination: bool = False,
        seed: Seed = None,
    ) -> None:
        cfs = list(center_fractions)
        accs = list(accelerations)
        name = self.mask_type or type(self).__name__
        if not cfs or not accs:
            raise ValueError(
                f"{name} mask: center_fractions {_fmt(cfs)} and accelerations {_fmt(accs)} "
                "must both be non-empty"
            )
        if len(cfs) != len(accs) and not allow_any_combination:
            raise ValueError(
                f"{name} mask: {len(cfs)} center_fractions {_fmt(cfs)} but {len(accs)} "
                f"accelerations {_fmt(accs)}; lengths must match unless allow_any_combination"
            )
        for cf in cfs:
            if not _is_real_number(cf) or not 0.0 < float(cf) < 1.0:
                raise ValueError(f"{name} mask: center_fraction {cf!r} must be in (0, 1)")
        for acc in accs:
            if not _is_real_number(acc) or not math.isfinite(acc) or not float(acc) > 1.0:
                raise ValueError(f"{name} mask: acceleration {acc!r} must be a number > 1")
            if self.integer_acceleration and float(acc) != int(acc):
                raise ValueError(
                    f"{name} mask: acceleration {acc!r} must be an integer (it is the stride "
                    f"between sampled columns); use '{name}_fraction' for non-integer values"
                )
        self.center_fractions = cfs
        self.accelerations = accs
        self.allow_any_combination = bool(allow_any_combination)
        self.rng = np.random.RandomState(seed)

    # -- the call ---------------------------------------------------------------------------
    def __call__(
        self, width: int, offset: int | None = None, seed: Seed = None
    ) -> tuple[np.ndarray, int]:
        """Sample a mask.

        Args:
            width: number of k-space columns (fastMRI's ``shape[-2]``), >= 1.
            offset: start of the equispaced / magic pattern; drawn from the RNG when None
                (families without an offset ignore it).
            seed: if given, the RNG is reseeded with it for this call only and its previous
                state restored afterwards (fastMRI's ``temp_seed``); fastMRI seeds validation
                volumes with ``tuple(map(ord, filename))``.

        Returns:
            ``(mask, num_low_frequencies)``: mask float32 ``(width,)`` of 0/1.

        Raises:
            ValueError: bad width/offset/seed, or a (center fraction, acceleration) pair that
                this width cannot realise. On error the RNG state is left as before the call.
        """
        name = self.mask_type or type(self).__name__
        if isinstance(width, bool) or not isinstance(width, int | np.integer) or width < 1:
            raise ValueError(f"{name} mask: width {width!r} must be an integer >= 1")
        width = int(width)
        if offset is not None:
            if isinstance(offset, bool) or not isinstance(offset, int | np.integer) or offset < 0:
                raise ValueError(f"{name} mask: offset {offset!r} must be an integer >= 0")
            offset = int(offset)
        saved = self.rng.get_state()
        try:
            if seed is not None:
                try:
                    self.rng.seed(seed)
                except (ValueError, TypeError) as err:
                    raise ValueError(
                        f"{name} mask: invalid seed {seed!r} (ints in [0, 2**32 - 1] or a "
                        f"sequence of them): {' '.join(str(err).split())}"
                    ) from None
            center_fraction, acceleration = self._choose()
            mask, num_low = self._sample(width, center_fraction, acceleration, offset)
        except BaseException:
            self.rng.set_state(saved)
            raise
        if seed is not None:
            self.rng.set_state(saved)
        return mask, num_low

    # -- shared steps -----------------------------------------------------------------------
    def _choose(self) -> tuple[float, float]:
        """Draw the (center fraction, acceleration) pair, in fastMRI's order."""
        if self.allow_any_combination:
            # fastMRI uses rng.choice(list) twice; legacy choice without p is rng.randint(len)
            i = self.rng.randint(len(self.center_fractions))
            j = self.rng.randint(len(self.accelerations))
            return self.center_fractions[i], self.accelerations[j]
        i = self.rng.randint(len(self.center_fractions))
        return self.center_fractions[i], self.accelerations[i]

    def _sample(
        self, width: int, center_fraction: float, acceleration: float, offset: int | None
    ) -> tuple[np.ndarray, int]:
        num_low = round(width * center_fraction)
        self._check(width, center_fraction, acceleration, num_low)
        mask = np.zeros(width, dtype=np.float32)
        mask[self._columns(width, acceleration, offset, num_low)] = 1.0
        mask[center_slice(width, num_low)] = 1.0
        return mask, num_low

    def _error(self, width: int, center_fraction: float, acceleration: float, why: str) -> NoReturn:
        raise ValueError(
            f"{self.mask_type} mask: acceleration {acceleration!r} is unreachable for width "
            f"{width} with center_fraction {center_fraction!r}: {why}"
        )

    def _check(self, width: int, center_fraction: float, acceleration: float, num_low: int) -> None:
        if acceleration > width:
            self._error(width, center_fraction, acceleration, "acceleration exceeds the width")

    # -- per family -------------------------------------------------------------------------
    def _columns(
        self, width: int, acceleration: float, offset: int | None, num_low: int
    ) -> np.ndarray | slice:
        """Indices of the sampled high-frequency columns (may repeat or overlap the center)."""
        raise NotImplementedError


class RandomMaskFunc(CartesianMaskFunc):
    """fastMRI ``random``: i.i.d. columns plus a fully sampled center.

    One uniform number is drawn for *every* column (center included); a column is sampled when its
    number is below ``prob = (width / R - num_low) / (width - num_low)``, so the expected number
    of sampled columns is ``width / R``. Non-integer accelerations are fine.
    """

    mask_type = "random"

    def _check(self, width: int, center_fraction: float, acceleration: float, num_low: int) -> None:
        super()._check(width, center_fraction, acceleration, num_low)
        # num_low > width / R also covers num_low == width (a zero denominator), as R > 1
        if width / acceleration < num_low:
            self._error(
                width, center_fraction, acceleration,
                f"num_low_frequencies {num_low} already exceeds width/acceleration "
                f"{width / acceleration:.6g} (sampling probability would be negative)",
            )

    def _columns(
        self, width: int, acceleration: float, offset: int | None, num_low: int
    ) -> np.ndarray:
        prob = (width / acceleration - num_low) / (width - num_low)
        return self.rng.random_sample(width) < prob


class EquispacedMaskFunc(CartesianMaskFunc):
    """fastMRI ``equispaced`` (``EquiSpacedMaskFunc``): every R-th column from ``offset``.

    ``offset`` is drawn with ``rng.randint(0, R)`` when not given. The acceleration must be an
    integer (it is the slicing stride; fastMRI fails on non-integers). With the extra center the
    achieved acceleration is below R.
    """

    mask_type = "equispaced"
    integer_acceleration = True

    def _columns(
        self, width: int, acceleration: float, offset: int | None, num_low: int
    ) -> slice:
        stride = int(acceleration)
        if offset is None:
            offset = int(self.rng.randint(0, stride))
        return slice(offset, None, stride)


class EquispacedFractionMaskFunc(CartesianMaskFunc):
    """fastMRI ``equispaced_fraction`` (``EquispacedMaskFractionFunc``): spacing matched to R.

    The spacing is ``a = R (num_low - width) / (num_low R - width)`` (so that center plus spaced
    columns give ``width / R`` on average); ``offset`` is drawn with
    ``rng.randint(0, round(a))`` when not given, and the sampled columns are
    ``rint(arange(offset, width - 1, a))`` (round half to even), hence not always exactly
    equispaced (fastMRI issue #54, kept to match the public multicoil data).
    """

    mask_type = "equispaced_fraction"

    def _check(self, width: int, center_fraction: float, acceleration: float, num_low: int) -> None:
        super()._check(width, center_fraction, acceleration, num_low)
        denominator = num_low * acceleration - width
        if denominator == 0 or (acceleration * (num_low - width)) / denominator <= 0:
            self._error(
                width, center_fraction, acceleration,
                f"num_low_frequencies {num_low} times acceleration is >= width, so the "
                "adjusted spacing is undefined or not positive",
            )

    def _columns(
        self, width: int, acceleration: float, offset: int | None, num_low: int
    ) -> np.ndarray:
        spacing = (acceleration * (num_low - width)) / (num_low * acceleration - width)
        if offset is None:
            offset = int(self.rng.randint(0, round(spacing)))
        return np.rint(np.arange(offset, width - 1, spacing)).astype(np.intp)


class MagicMaskFunc(CartesianMaskFunc):
    """fastMRI ``magic`` (Defazio 2019, offset sampling exploiting conjugate symmetry).

    Relative to DC (column ``width // 2``) the positive frequencies ``0 .. ceil(width/2) - 1`` and
    the negative ones ``1 .. floor(width/2)`` are each sampled every R-th line, with starts that
    differ between the two sides so that conjugate pairs are not both sampled: for an even
    ``offset`` o the positive side starts at o + 1 and the negative side (at frequency -1 - j for
    index j) at o + 2; for an odd o at o + 2 and o - 1. ``offset`` is drawn with
    ``rng.randint(0, R)`` when not given. The acceleration must be an integer.
    """

    mask_type = "magic"
    integer_acceleration = True

    def _columns(
        self, width: int, acceleration: float, offset: int | None, num_low: int
    ) -> np.ndarray:
        stride = int(acceleration)
        if offset is None:
            offset = int(self.rng.randint(0, stride))
        if offset % 2 == 0:
            start_pos, start_neg = offset + 1, offset + 2
        else:
            start_pos, start_neg = offset + 2, offset - 1
        dc = width // 2
        positive = dc + np.arange(start_pos, (width + 1) // 2, stride)
        negative = dc - 1 - np.arange(start_neg, width // 2, stride)
        return np.concatenate((positive, negative)).astype(np.intp)


class MagicFractionMaskFunc(MagicMaskFunc):
    """fastMRI ``magic_fraction``: ``magic`` with the stride adjusted to reach R.

    ``target = round(width / R)`` columns; ``num_low = round(width * cf)`` clamped to
    ``[1, target]`` (the returned ``num_low_frequencies`` is the clamped value); the magic
    pattern then uses the integer stride ``round(width / (target - num_low))``. Non-integer
    accelerations are fine.
    """

    mask_type = "magic_fraction"
    integer_acceleration = False

    def _sample(
        self, width: int, center_fraction: float, acceleration: float, offset: int | None
    ) -> tuple[np.ndarray, int]:
        if acceleration > width:
            self._error(width, center_fraction, acceleration, "acceleration exceeds the width")
        target = round(width / acceleration)
        num_low = max(min(round(width * center_fraction), target), 1)
        if target - num_low <= 0:
            self._error(
                width, center_fraction, acceleration,
                f"the {num_low} center columns already use all round(width/acceleration) = "
                f"{target} target columns",
            )
        stride = round(width / (target - num_low))
        mask = np.zeros(width, dtype=np.float32)
        mask[self._columns(width, stride, offset, num_low)] = 1.0
        mask[center_slice(width, num_low)] = 1.0
        return mask, num_low


_FAMILIES: dict[str, type[CartesianMaskFunc]] = {
    cls.mask_type: cls
    for cls in (
        RandomMaskFunc,
        EquispacedMaskFunc,
        EquispacedFractionMaskFunc,
        MagicMaskFunc,
        MagicFractionMaskFunc,
    )
}


def create_mask_func(
    mask_type: str,
    center_fractions: Sequence[float],
    accelerations: Sequence[float],
    seed: Seed = None,
    allow_any_combination: bool = False,
) -> CartesianMaskFunc:
    """Build the Cartesian mask function of a family (fastMRI's ``create_mask_for_mask_type``).

    Args:
        mask_type: one of :data:`CARTESIAN_MASK_TYPES`.
        center_fractions: center fraction(s), each in (0, 1).
        accelerations: acceleration(s), each > 1.
        seed: seed of the instance's RNG (fastMRI's factory always uses None).
        allow_any_combination: draw center fraction and acceleration independently.

    Returns:
        The mask function; call it as ``func(width, offset=None, seed=None)``.

    Raises:
        ValueError: unknown ``mask_type`` or invalid parameters.
    """
    cls = _FAMILIES.get(mask_type) if isinstance(mask_type, str) else None
    if cls is None:
        raise ValueError(
            f"unknown Cartesian mask type {mask_type!r}; allowed: {', '.join(CARTESIAN_MASK_TYPES)}"
        )
    return cls(center_fractions, accelerations, allow_any_combination=allow_any_combination,
               seed=seed)


def cartesian_mask(
    mask_type: str,
    width: int,
    center_fraction: float,
    acceleration: float,
    seed: Seed,
    offset: int | None = None,
) -> tuple[np.ndarray, int]:
    """One Cartesian mask for a single (center fraction, acceleration) pair.

    Equal to fastMRI's ``create_mask_for_mask_type(mask_type, [cf], [R])(shape, offset, seed)``
    with ``shape[-2] == width`` (for a given ``seed``).

    Args:
        mask_type: one of :data:`CARTESIAN_MASK_TYPES`.
        width: number of k-space columns.
        center_fraction: in (0, 1).
        acceleration: > 1.
        seed: int, sequence of ints (e.g. ``tuple(map(ord, filename))``) or None (OS entropy).
        offset: pattern start for the equispaced / magic families (drawn when None).

    Returns:
        ``(mask, num_low_frequencies)``: mask float32 ``(width,)`` of 0/1.
    """
    func = create_mask_func(mask_type, [center_fraction], [acceleration])
    return func(width, offset=offset, seed=seed)


# -- 2-D masks ----------------------------------------------------------------------------------
def _check_2d(kind: str, shape: tuple[int, int], acceleration: float,
              calib: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    try:
        h, w = (int(s) for s in shape)
        ch, cw = (int(c) for c in calib)
    except (TypeError, ValueError):
        raise ValueError(
            f"{kind} mask: shape {shape!r} and calib {calib!r} must be pairs of integers"
        ) from None
    if h < 1 or w < 1:
        raise ValueError(f"{kind} mask: shape {shape!r} must be positive")
    if not 0 <= ch <= h or not 0 <= cw <= w:
        raise ValueError(f"{kind} mask: calib {calib!r} must fit in shape {shape!r}")
    if not _is_real_number(acceleration) or not math.isfinite(acceleration) or acceleration <= 1:
        raise ValueError(f"{kind} mask: acceleration {acceleration!r} must be a number > 1")
    return (h, w), (ch, cw)


_POISSON_TOL = 0.1  # sigpy's default tolerance on the achieved acceleration
_POISSON_MAX_STEPS = 256


def poisson_mask(
    shape: tuple[int, int],
    acceleration: float,
    calib: tuple[int, int] = (24, 24),
    seed: int = 0,
    crop_corner: bool = True,
) -> np.ndarray:
    """Variable-density Poisson-disc mask, identical to ``sigpy.mri.poisson(..., seed=seed)``.

    sigpy 0.1.27's ``poisson`` bisects the density slope, calling its numba sampler
    ``sigpy.mri.samp._poisson`` once per step, until the achieved acceleration is within 0.1 of
    the target. Its loop never ends for some unreachable targets (e.g. shape ``(32, 32)``,
    acceleration 20, calib ``(2, 2)``: the bisection stalls on two adjacent floats), so this
    function runs the same bisection itself -- same slopes, same sampler calls, hence the same
    mask whenever sigpy returns one -- but stops after 256 steps or when the bisection cannot move
    any more, and raises. (256 halvings take the slope below any change the float64 sampler
    density could see.) If the private sampler is missing (another sigpy version), it falls back
    to ``sigpy.mri.poisson``.

    RNG: the sampler runs under numba, whose ``np.random`` is numba's own generator, reseeded
    with ``seed`` on every step, so the mask is a pure function of the arguments and numpy's
    global RNG is not used (it is still saved and restored around the call, as a guard).

    The calibration box is sigpy's: rows ``int(H/2 - ch/2) : int(H/2 + ch/2)`` and likewise for
    columns (the same as :func:`center_slice` for even sizes). With ``crop_corner`` (sigpy's
    default) the corners outside the inscribed ellipse are never sampled.

    Args:
        shape: ``(H, W)`` k-space grid (centered).
        acceleration: target acceleration ``H*W / samples``, > 1.
        calib: fully sampled central box ``(ch, cw)``, each smaller than the matching dimension.
        seed: int seed.
        crop_corner: zero the k-space corners outside the inscribed ellipse, as sigpy does.

    Returns:
        float32 ``(H, W)`` array of 0/1.

    Raises:
        ValueError: invalid arguments or an acceleration that cannot be reached within 0.1.
    """
    (h, w), (ch, cw) = _check_2d("poisson", shape, acceleration, calib)
    if ch >= h or cw >= w:
        raise ValueError(
            f"poisson mask: calib {calib!r} must be smaller than shape {shape!r} in each dimension"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"poisson mask: seed {seed!r} must be an integer")
    accel = float(acceleration)
    unreachable = (
        f"poisson mask: acceleration {acceleration!r} is unreachable for shape {shape!r} with "
        f"calib {calib!r}"
    )
    if ch * cw > 0 and h * w / (ch * cw) <= accel - _POISSON_TOL:
        raise ValueError(f"{unreachable}: the calib box alone samples more than 1/{accel:g}")

    try:
        from sigpy.mri.samp import _poisson as sampler  # local: sigpy and numba load slowly
    except ImportError:  # pragma: no cover - other sigpy versions
        sampler = None
    state = np.random.get_state()  # noqa: NPY002 - guarding the legacy global RNG
    try:
        if sampler is None:  # pragma: no cover
            import sigpy.mri

            try:
                mask = sigpy.mri.poisson(
                    (h, w), accel, calib=(ch, cw), seed=int(seed), crop_corner=crop_corner
                ).real
            except ValueError as err:
                raise ValueError(f"{unreachable} (sigpy: {' '.join(str(err).split())})") from None
        else:
            mask = _poisson_bisect(sampler, h, w, accel, ch, cw, int(seed), crop_corner)
            if mask is None:
                raise ValueError(f"{unreachable} within {_POISSON_TOL}")
    finally:
        np.random.set_state(state)  # noqa: NPY002
    return np.ascontiguousarray(mask, dtype=np.float32)


def _poisson_bisect(sampler, ny: int, nx: int, accel: float, ch: int, cw: int,
                    seed: int, crop_corner: bool = True) -> np.ndarray | None:
    """sigpy's slope bisection with a bounded number of steps; None when it fails."""
    y, x = np.mgrid[:ny, :nx]
    dist_x = np.maximum(np.abs(x - nx / 2) - cw / 2, 0)
    dist_x = dist_x / dist_x.max()
    dist_y = np.maximum(np.abs(y - ny / 2) - ch / 2, 0)
    dist_y = dist_y / dist_y.max()
    r = np.sqrt(dist_x**2 + dist_y**2)
    inside = r < 1 if crop_corner else np.ones_like(r, dtype=bool)
    big = max(nx, ny)
    lo, hi = 0.0, float(big)
    last: tuple[np.ndarray, np.ndarray, np.ndarray, float] | None = None
    for _ in range(_POISSON_MAX_STEPS):
        if not lo < hi:
            return None
        slope = (hi + lo) / 2
        radius_x = np.clip((1 + r * slope) * nx / big, 1, None)
        radius_y = np.clip((1 + r * slope) * ny / big, 1, None)
        if last is not None and np.array_equal(radius_x, last[0]) and np.array_equal(
            radius_y, last[1]
        ):
            mask, achieved = last[2], last[3]  # same inputs, same seed: same (slow) result
        else:
            mask = sampler(nx, ny, 30, radius_x, radius_y, (ch, cw), seed) * inside
            achieved = nx * ny / np.sum(mask)
            last = (radius_x, radius_y, mask, achieved)
        if abs(achieved - accel) < _POISSON_TOL:
            return mask
        if achieved < accel:
            if slope == lo:  # stalled: sigpy would loop forever here
                return None
            lo = slope
        else:
            if slope == hi:  # stalled the other way
                return None
            hi = slope
    return None


def uniform_random_mask_2d(
    shape: tuple[int, int],
    acceleration: float,
    calib: tuple[int, int] = (24, 24),
    seed: int = 0,
) -> np.ndarray:
    """2-D mask: fully sampled central calib box, every other point i.i.d. Bernoulli.

    The probability ``p = (H*W/R - n_calib) / (H*W - n_calib)`` makes the expected sampled
    fraction exactly ``1/R``. One uniform number is drawn for every grid point (calib box
    included, like fastMRI's ``random``) from ``np.random.default_rng(seed)``; the calib box sits
    at :func:`center_slice` in each dimension.

    Args:
        shape: ``(H, W)`` k-space grid (centered).
        acceleration: target acceleration, > 1.
        calib: fully sampled central box ``(ch, cw)``.
        seed: seed for ``np.random.default_rng``.

    Returns:
        float32 ``(H, W)`` array of 0/1.

    Raises:
        ValueError: invalid arguments, or a calib box that alone exceeds ``H*W/R`` samples.
    """
    (h, w), (ch, cw) = _check_2d("uniform2d", shape, acceleration, calib)
    total, n_calib = h * w, ch * cw
    if n_calib > total / acceleration:
        raise ValueError(
            f"uniform2d mask: acceleration {acceleration!r} is unreachable for shape {shape!r}: "
            f"the calib box {calib!r} ({n_calib} points) exceeds {total / acceleration:.6g} samples"
        )
    prob = (total / acceleration - n_calib) / (total - n_calib)
    mask = (np.random.default_rng(seed).random((h, w)) < prob).astype(np.float32)
    mask[center_slice(h, ch), center_slice(w, cw)] = 1.0
    return mask


def draw_mask(
    kind: str,
    shape: tuple[int, int],
    *,
    center_fraction: float = 0.08,
    acceleration: float = 4.0,
    seed: int = 0,
    seed_file: str | None = None,
) -> tuple[np.ndarray, str]:
    """One sampling mask of any :data:`MASK_TYPES` kind (``ambientmri mask``), and a line describing it.

    Cartesian kinds give fastMRI's 1-D float32 line mask of width ``shape[1]``; ``poisson`` and
    ``uniform2d`` a 2-D mask of ``shape`` with a calibration box of ``center_fraction`` of each side.
    ``seed_file`` seeds like fastMRI's per-volume seeding (``tuple(map(ord, NAME))``; the 2-D
    kinds use a stable integer hash of the name) instead of ``seed``.

    Raises:
        ValueError: an unknown kind (one line listing the known ones).
    """
    from ambientmri.utils import fastmri_volume_seed, stable_seed

    if kind not in MASK_TYPES:
        raise ValueError(f"--type {kind!r} is not a mask type; allowed: {', '.join(MASK_TYPES)}")
    h, w = shape
    if kind in CARTESIAN_MASK_TYPES:
        m, num_low = cartesian_mask(kind, w, center_fraction, acceleration,
                                    fastmri_volume_seed(seed_file) if seed_file else seed)
        info = f"{int(m.sum())}/{w} lines ({num_low} central), R = {w / m.sum():.2f}"
    else:
        calib = (max(2, round(h * center_fraction)), max(2, round(w * center_fraction)))
        fn = poisson_mask if kind == "poisson" else uniform_random_mask_2d
        m = fn((h, w), acceleration, calib=calib, seed=stable_seed(seed_file) % 2**32 if seed_file else seed)
        info = f"{int(m.sum())}/{m.size} points, calib {calib[0]}x{calib[1]}, R = {m.size / m.sum():.2f}"
    return np.asarray(m, dtype=np.float32), info
