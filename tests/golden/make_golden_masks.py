"""Generate golden Cartesian masks with the reference fastMRI package.

Run with the separate reference environment (ambientmri itself never imports fastmri)::

    /opt/fmref/bin/python tests/golden/make_golden_masks.py

It writes ``tests/golden/fastmri_masks.npz`` with two arrays:

* ``meta``: UTF-8 JSON (as uint8) with ``valid`` cases, ``errors`` (parameters for which fastMRI's
  formulas break down: ambientmri must raise ``ValueError``) and provenance;
* ``bits``: ``np.packbits`` of all valid masks concatenated (each mask is 0/1 of length ``width``;
  every call records the bit index where its mask starts).

A valid case is ``{"type", "width", "shape", "cfs", "accs", "any", "init_seed", "calls"}`` with
``calls = [[offset, seed, num_low_frequencies, bit_start], ...]``. Single-call cases go through
``create_mask_for_mask_type(type, cfs, accs)(shape, offset, seed)``; multi-call cases construct the
fastMRI class with ``seed=init_seed`` (and ``allow_any_combination``) and call it repeatedly, some
calls with a temporary per-call seed, to pin down the RNG stream and the state restoration.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from fastmri.data import subsample

OUT = Path(__file__).with_name("fastmri_masks.npz")

TYPES = ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction")
CLASSES = {
    "random": subsample.RandomMaskFunc,
    "equispaced": subsample.EquiSpacedMaskFunc,
    "equispaced_fraction": subsample.EquispacedMaskFractionFunc,
    "magic": subsample.MagicMaskFunc,
    "magic_fraction": subsample.MagicMaskFractionFunc,
}
WIDTHS = (6, 10, 25, 50, 64, 96, 150, 320, 367, 368, 372, 640)
CENTER_FRACTIONS = (0.04, 0.08, 0.16)
ACCELERATIONS = (2, 4, 6, 8, 3.5)
FILE_SEEDS = (
    tuple(map(ord, "file1000001.h5")),
    tuple(map(ord, "file_brain_AXT2_200_2000019.h5")),
)
SEEDS = (0, 42, 2**32 - 1, *FILE_SEEDS)
INTEGER_FAMILIES = ("equispaced", "magic")


def expected_error(kind: str, width: int, cf: float, acc: float) -> str | None:
    """Why ambientmri must reject this single (cf, acc) pair, or None when it is valid."""
    if acc > width:
        return "acceleration exceeds width"
    num_low = round(width * cf)
    if kind in INTEGER_FAMILIES and acc != int(acc):
        return "non-integer stride"
    if kind == "random" and width / acc < num_low:
        return "negative probability"
    if kind == "equispaced_fraction":
        den = num_low * acc - width
        if den == 0 or (acc * (num_low - width)) / den <= 0:
            return "spacing undefined or not positive"
    if kind == "magic_fraction":
        target = round(width / acc)
        if target - max(min(num_low, target), 1) <= 0:
            return "no columns left after the center"
    return None


def shape_for(width: int, index: int) -> tuple[int, ...]:
    """Vary fastMRI's shape argument: (1, W, 1), (640, W, 2) and (15, 640, W, 2)."""
    return ((1, width, 1), (640, width, 2), (15, 640, width, 2))[index % 3]


def to_json_seed(seed):
    return list(seed) if isinstance(seed, tuple) else seed


def from_json_seed(seed):
    return tuple(seed) if isinstance(seed, list) else seed


class Writer:
    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.nbits = 0
        self.valid: list[dict] = []

    def add_mask(self, mask, width: int) -> int:
        flat = mask.numpy().reshape(-1)
        assert flat.dtype == np.float32 and flat.shape == (width,), (flat.dtype, flat.shape)
        assert set(np.unique(flat).tolist()) <= {0.0, 1.0}
        start = self.nbits
        self.chunks.append(flat.astype(np.uint8))
        self.nbits += width
        return start


def single_cases(writer: Writer, errors: list[dict]) -> None:
    index = 0
    for kind in TYPES:
        for width in WIDTHS:
            cfs = CENTER_FRACTIONS + ((0.05,) if width in (50, 150) else ())
            for cf in cfs:
                for acc in ACCELERATIONS:
                    why = expected_error(kind, width, cf, acc)
                    shape = shape_for(width, index)
                    index += 1
                    func = subsample.create_mask_for_mask_type(kind, [cf], [acc])
                    if why is not None:
                        try:
                            mask, _ = func(shape, None, 0)
                            fastmri = f"silent mask with {int(mask.sum())} of {width} columns"
                        except Exception as err:  # what fastMRI does with it, for the record
                            fastmri = f"{type(err).__name__}: {err}"
                        errors.append({"type": kind, "width": width, "cf": cf, "acc": acc,
                                       "why": why, "fastmri": fastmri})
                        continue
                    offsets: list[int | None] = [None]
                    if kind in ("equispaced", "magic", "equispaced_fraction"):
                        offsets += [1, int(acc) - 1 if kind != "equispaced_fraction" else 2]
                    for offset in offsets:
                        seeds = SEEDS if offset is None else SEEDS[:1] + FILE_SEEDS[:1]
                        for seed in seeds:
                            mask, num_low = func(shape, offset, seed)
                            start = writer.add_mask(mask, width)
                            writer.valid.append({
                                "type": kind, "width": width, "shape": list(shape),
                                "cfs": [cf], "accs": [acc], "any": False, "init_seed": None,
                                "calls": [[offset, to_json_seed(seed), int(num_low), start]],
                            })


def multi_cases(writer: Writer) -> None:
    # several (cf, acc) pairs; per-call seeds only, through the factory
    for kind in TYPES:
        for width in (96, 368, 640):
            func = subsample.create_mask_for_mask_type(kind, [0.08, 0.04], [4, 8])
            for seed in SEEDS:
                shape = (1, width, 1)
                mask, num_low = func(shape, None, seed)
                start = writer.add_mask(mask, width)
                writer.valid.append({
                    "type": kind, "width": width, "shape": list(shape), "cfs": [0.08, 0.04],
                    "accs": [4, 8], "any": False, "init_seed": None,
                    "calls": [[None, to_json_seed(seed), int(num_low), start]],
                })
    # stateful streams: instance seed, unseeded calls interleaved with temp-seeded ones
    call_seeds = [None, None, FILE_SEEDS[0], None, 7, None, None]
    configs = [
        ([0.08, 0.04], [4, 8], False),
        ([0.04, 0.08, 0.1], [4, 8], True),
        ([0.08], [4], False),
    ]
    for kind in TYPES:
        for cfs, accs, any_comb in configs:
            for width, init_seed in ((368, 0), (640, 123), (372, list(FILE_SEEDS[1]))):
                func = CLASSES[kind](cfs, accs, allow_any_combination=any_comb,
                                     seed=from_json_seed(init_seed))
                shape = (640, width, 2)
                calls = []
                for i, seed in enumerate(call_seeds):
                    offset = 1 if (kind != "random" and i == 5) else None
                    mask, num_low = func(shape, offset, seed)
                    calls.append([offset, to_json_seed(seed), int(num_low),
                                  writer.add_mask(mask, width)])
                writer.valid.append({
                    "type": kind, "width": width, "shape": list(shape), "cfs": cfs,
                    "accs": accs, "any": any_comb, "init_seed": init_seed, "calls": calls,
                })


def main() -> int:
    import fastmri

    writer = Writer()
    errors: list[dict] = []
    single_cases(writer, errors)
    multi_cases(writer)
    bits = np.packbits(np.concatenate(writer.chunks))
    meta = {
        "generator": "tests/golden/make_golden_masks.py",
        "fastmri_version": fastmri.__version__,
        "numpy_version": np.__version__,
        "nbits": writer.nbits,
        "valid": writer.valid,
        "errors": errors,
    }
    text = json.dumps(meta, separators=(",", ":"))
    tmp = OUT.with_name(OUT.name + ".tmp.npz")
    np.savez_compressed(tmp, meta=np.frombuffer(text.encode("utf-8"), dtype=np.uint8), bits=bits)
    tmp.replace(OUT)
    ncalls = sum(len(c["calls"]) for c in writer.valid)
    print(f"{len(writer.valid)} valid cases ({ncalls} masks, {writer.nbits} bits), "
          f"{len(errors)} error cases -> {OUT} ({OUT.stat().st_size / 1024:.1f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
