"""Draw the mask figures used in docs/operators.md.

Run from the repository root:

    python docs/make_figures.py            # writes docs/figures/mask_<family>.png

One PNG per mask family, drawn with :func:`ambientmri.plotting.plot_mask` (the mask, its
point-spread function, and the PSF's center row):

- the five fastMRI Cartesian families at width W = 368 (fastMRI knee), center fraction 0.08, R = 4;
- the two 2-D families (Poisson disc, uniform random) on a 128 x 128 grid, R = 4, drawn as
  ``kspace2d`` recipes draw them by default: 16 x 16 calibration box and, for Poisson, the corners
  sampled too (``crop_corner=False``; ``poisson_mask`` and ``ambientmri mask`` default to sigpy's
  ``crop_corner=True``).

Every mask is drawn with seed 0, so the figures are reproducible. The figures are rendered at
70 dpi to keep them small.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import matplotlib

from ambientmri.operators.masks import (
    CARTESIAN_MASK_TYPES,
    cartesian_mask,
    poisson_mask,
    uniform_random_mask_2d,
)
from ambientmri.plotting import plot_mask

WIDTH = 368
CENTER_FRACTION = 0.08
ACCELERATION = 4
GRID_2D = (128, 128)
CALIB_2D = (16, 16)
SEED = 0
DPI = 70


def main(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.rc_context({"savefig.dpi": DPI}):
        for family in CARTESIAN_MASK_TYPES:
            mask, num_low = cartesian_mask(family, WIDTH, CENTER_FRACTION, ACCELERATION, SEED)
            path = out / f"mask_{family}.png"
            plot_mask(mask, path, title=f"{family}, W={WIDTH}, cf={CENTER_FRACTION}, R={ACCELERATION}")
            print(f"{path}: {int(mask.sum())}/{WIDTH} lines, {num_low} central")
            written.append(path)
        poisson = partial(poisson_mask, crop_corner=False)  # as kspace2d recipes draw it
        for family, fn in (("poisson", poisson), ("uniform2d", uniform_random_mask_2d)):
            mask = fn(GRID_2D, ACCELERATION, calib=CALIB_2D, seed=SEED)
            path = out / f"mask_{family}.png"
            plot_mask(
                mask,
                path,
                title=f"{family}, {GRID_2D[0]}x{GRID_2D[1]}, calib {CALIB_2D[0]}x{CALIB_2D[1]}, R={ACCELERATION}",
            )
            print(f"{path}: {int(mask.sum())}/{mask.size} points")
            written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "figures"
    paths = main(target)
    total = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} figures, {total / 1024:.0f} KiB in all")
