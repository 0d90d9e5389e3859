"""Prepare throughput (slices/s) on synthetic multi-coil cohorts.

Usage: python benchmarks/prepare_throughput.py [--volumes 4] [--slices 4] [--large]

Prints one line per configuration: matrix, coils, slices, seconds, slices/s, and the share of time
spent in ESPIRiT (the dominant cost). Runs in a temporary folder; writes nothing else.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

from ambientmri.data import store as store_module
from ambientmri.data.store import prepare_store
from ambientmri.data.synth import synth_cohort
from ambientmri.recipes import validate_recipe


def run(tmp: Path, matrix: tuple[int, int], crop: tuple[int, int], coils: int, volumes: int, slices: int,
        calib: int, max_iter: int, workers: int = 1, virtual_coils: int | None = None) -> None:
    raw = tmp / f"raw-{matrix[0]}x{matrix[1]}"
    if not raw.exists():
        synth_cohort(raw, challenge="multicoil", volumes=volumes, slices=slices, matrix=matrix, coils=coils, seed=0)
    recipe = validate_recipe({
        "data": {"kind": "fastmri", "crop": list(crop)},
        "corruption": {"kind": "cartesian", "mask_type": "random", "center_fractions": [0.08], "accelerations": [4]},
        "prepare": {"coil_maps": {"calib_width": calib, "max_iter": max_iter}, "virtual_coils": virtual_coils},
    })
    espirit_seconds = 0.0
    original = store_module.espirit_maps

    def timed(*args, **kwargs):
        nonlocal espirit_seconds
        t = time.perf_counter()
        out = original(*args, **kwargs)
        espirit_seconds += time.perf_counter() - t
        return out

    dst = tmp / f"store-{matrix[0]}x{matrix[1]}-{workers}-{virtual_coils}"
    with mock.patch.object(store_module, "espirit_maps", timed):
        result = prepare_store(raw, dst, recipe, workers=workers)
    if workers > 1:
        print(f"kspace {matrix[0]}x{matrix[1]}, {coils} coils, {result.slices} slices, {workers} workers: "
              f"{result.seconds:.2f} s, {result.slices_per_second:.2f} slices/s")
        return
    print(
        f"kspace {matrix[0]}x{matrix[1]} -> image {crop[0]}x{crop[1]}, {coils} coils"
        + (f" compressed to {virtual_coils}" if virtual_coils else "")
        + f", {result.slices} slices: "
        f"{result.seconds:.2f} s, {result.slices_per_second:.2f} slices/s "
        f"(ESPIRiT {espirit_seconds / result.seconds:.0%} of the time, calib {calib}, {max_iter} iterations)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--volumes", type=int, default=4)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--large", action="store_true", help="also a fastMRI-brain-sized cohort (640x320, 16 coils)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), (128, 64), (64, 64), 4, args.volumes, args.slices, calib=8, max_iter=30)
        run(Path(tmp), (256, 128), (128, 128), 8, args.volumes, args.slices, calib=10, max_iter=30)
        run(Path(tmp), (256, 128), (128, 128), 8, args.volumes, args.slices, calib=10, max_iter=30, workers=2)
        if args.large:
            run(Path(tmp), (640, 320), (384, 320), 16, 2, args.slices, calib=24, max_iter=30)
            run(Path(tmp), (640, 320), (384, 320), 16, 2, args.slices, calib=24, max_iter=30, workers=2)
            run(Path(tmp), (640, 320), (384, 320), 16, 2, args.slices, calib=24, max_iter=30, virtual_coils=4)


if __name__ == "__main__":
    main()
