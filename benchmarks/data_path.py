"""The data path: store size, prepare and loader throughput, version 1 (dense) against version 2 (compact).

Usage: OMP_NUM_THREADS=1 python benchmarks/data_path.py [--brain-volumes 2] [--brain-slices 2] [--loads 96]
       [--repeats 3] [--skip-brain]

Two cohorts, each prepared into a version-1 and a version-2 store:

- **demo**: the cohort of ``recipes/demo.yaml`` (8 subjects × 4 slices, 128 × 64 k-space, 4 coils,
  cropped to 64 × 64), prepared with that recipe;
- **brain**: ``ambientmri synth`` at fastMRI brain size (640 × 320, 16 coils), prepared with
  ``recipes/fastmri_brain_multicoil_r4.yaml`` (cropped to 384 × 320, coil-compressed to 4 virtual coils).

Per store it prints: bytes per slice and their ratio to the fully sampled k-space of the source slice
(C × H × W complex64 of the raw file), prepare slices/s (one process), loader slices/s with 0, 1
and 2 DataLoader workers (random order, batches of the recipe's batch size, the trainer's collate;
timed after the first batch, best of ``--repeats``; in parentheses: slices per CPU second of the reading processes, i.e.
what one dedicated core delivers on a busy machine; the cost of a step's use of the batch, e.g. its
copy to the GPU, is the trainer's and not counted) and the 1-worker rate over the 89 images/s one
H200 trains on at fastMRI size (docs/fastmri.md);
then the forward-model error of the compact maps, ‖A₂x − A₁x‖ / ‖A₁x‖ (max over slices) for
held-out images (the targets of held-out synthetic subjects) and for white noise, and the time to
open a store of 54,000 slices (its index). Runs in a temporary folder; writes nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from ambientmri.data.batch import collate
from ambientmri.data.store import CorruptedStore, prepare_store
from ambientmri.data.synth import synth_cohort
from ambientmri.recipes import load_recipe

ROOT = Path(__file__).resolve().parents[1]
H200_IMAGES_PER_SECOND = 89.0  # docs/fastmri.md: 320 × 320, batch 16, bf16, one H200


def _raw_bytes_per_slice(raw: Path) -> float:
    total = slices = 0
    for p in raw.glob("*.h5"):
        with h5py.File(p, "r") as f:
            k = f["kspace"]
            total += int(np.prod(k.shape)) * 8
            slices += int(k.shape[0])
    return total / slices


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _loader_rate(store: CorruptedStore, workers: int, loads: int, batch: int) -> tuple[float, float]:
    """(slices/s of wall time, slices per CPU second of the reading processes).

    The second is what one dedicated core delivers, whatever else runs on the machine: the main
    process's CPU time without workers, the workers' (joined at the end) with them."""
    sampler = torch.utils.data.RandomSampler(store, replacement=True, num_samples=loads + batch,
                                             generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(store, batch_size=batch, sampler=sampler, num_workers=workers,
                                         collate_fn=collate)
    who = resource.RUSAGE_CHILDREN if workers else resource.RUSAGE_SELF
    cpu0 = _cpu_seconds(who)
    it = iter(loader)
    first = next(it)  # worker start-up and the first open of each file are not the steady state
    t0 = time.perf_counter()
    n = sum(int(b.y.shape[0]) for b in it)
    wall = time.perf_counter() - t0
    del it
    cpu = _cpu_seconds(who) - cpu0
    return n / wall, (n + int(first.y.shape[0])) / cpu


def _forward_errors(v1: CorruptedStore, v2: CorruptedStore, heldout: Path) -> tuple[float, float]:
    """max over slices of ‖A₂x − A₁x‖/‖A₁x‖ for held-out images and for white noise."""
    images = []
    for p in sorted(heldout.glob("*.h5")):
        with h5py.File(p, "r") as f:
            images.extend(np.asarray(f["reconstruction_rss"][()], np.float32))
    h, w = v1.grid
    g = torch.Generator().manual_seed(0)
    worst_img = worst_noise = 0.0
    for i in range(len(v1)):
        a, b = v1[i], v2[i]
        t = images[i % len(images)]
        x = np.zeros((h, w), np.complex64)
        th, tw = min(h, t.shape[0]), min(w, t.shape[1])
        x[(h - th) // 2:(h - th) // 2 + th, (w - tw) // 2:(w - tw) // 2 + tw] = t[:th, :tw]
        noise = torch.randn((h, w), generator=g, dtype=torch.complex64)
        for probe, is_img in ((torch.from_numpy(x), True), (noise, False)):
            exact = v1.operator(a).forward(probe)
            err = float((v2.operator(b).forward(probe) - exact).norm() / exact.norm())
            if is_img:
                worst_img = max(worst_img, err)
            else:
                worst_noise = max(worst_noise, err)
    return worst_img, worst_noise


def _index_seconds(store: CorruptedStore, tmp: Path) -> float:
    manifest = dict(store.manifest)
    manifest["volumes"] = [
        {**store.manifest["volumes"][0], "file": f"volumes/v{i:05d}.h5", "slices": 18} for i in range(3000)
    ]
    big = tmp / "index-store"
    big.mkdir(exist_ok=True)
    (big / "manifest.json").write_text(json.dumps(manifest))
    t0 = time.perf_counter()
    opened = CorruptedStore(big)
    assert len(opened) == 54_000
    return time.perf_counter() - t0


def _best(store: CorruptedStore, workers: int, loads: int, batch: int, repeats: int) -> tuple[float, float]:
    """The best of ``repeats`` measurements (wall and per-CPU-second rates separately): on a shared
    machine the slowest runs measure the other jobs."""
    runs = [_loader_rate(store, workers, loads, batch) for _ in range(repeats)]
    return max(r[0] for r in runs), max(r[1] for r in runs)


def bench(name: str, raw: Path, heldout: Path, recipe_path: Path, tmp: Path, loads: int, repeats: int) -> None:
    recipe = load_recipe(recipe_path)
    raw_bytes = _raw_bytes_per_slice(raw)
    warm = tmp / f"{name}-warm-raw"  # sigpy/numba compile on first use: not part of the rate
    warm.mkdir()
    os.link(sorted(raw.glob("*.h5"))[0], warm / "warm.h5")
    prepare_store(warm, tmp / f"{name}-warm", recipe, source_kind="fastmri", workers=1)
    batch = recipe.training.batch_size
    stores = {}
    for version in (1, 2):
        result = prepare_store(raw, tmp / f"{name}-v{version}", recipe, source_kind="fastmri",
                               workers=1, store_version=version)
        store = CorruptedStore(result.store)
        size = sum(p.stat().st_size for p in result.store.rglob("*") if p.is_file()) / len(store)
        rates = [_best(store, w, loads, batch, repeats) for w in (0, 1, 2)]
        stores[version] = store
        ratio = rates[1][0] / H200_IMAGES_PER_SECOND, rates[1][1] / H200_IMAGES_PER_SECOND
        print(f"| {name} | {batch} | {version} | {size / 1e6:.3f} | {size / raw_bytes:.3f} | "
              f"{result.slices_per_second:.2f} | " + " | ".join(f"{wall:.0f} ({cpu:.0f})" for wall, cpu in rates)
              + f" | {ratio[0]:.2f} ({ratio[1]:.2f}) |", flush=True)
    img, noise = _forward_errors(stores[1], stores[2], heldout)
    print(f"{name}: {raw_bytes / 1e6:.3f} MB of fully sampled k-space per source slice; forward-model error of "
          f"the v2 maps: {img:.1e} (held-out images), {noise:.1e} (white noise); "
          f"index of a 54,000-slice store opens in {_index_seconds(stores[2], tmp) * 1e3:.0f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brain-volumes", type=int, default=2)
    parser.add_argument("--brain-slices", type=int, default=2)
    parser.add_argument("--loads", type=int, default=96, help="slices each loader measurement reads")
    parser.add_argument("--repeats", type=int, default=3, help="loader measurements per setting (the best is printed)")
    parser.add_argument("--skip-brain", action="store_true")
    args = parser.parse_args()
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch {torch.get_num_threads()}; "
          f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| cohort | batch | store version | MB/slice | store / fully sampled k-space | prepare slices/s | "
          "loader slices/s, 0 workers | 1 worker | 2 workers | 1 worker / H200 (89 images/s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        demo = load_recipe(ROOT / "recipes" / "demo.yaml").data
        for split, n, folder in (("train", demo.volumes, "demo-raw"), ("val", 2, "demo-heldout")):
            synth_cohort(tmp / folder, challenge="multicoil", volumes=n, slices=demo.slices,
                         matrix=tuple(demo.matrix), coils=demo.coils, seed=demo.seed, split=split)
        bench("demo", tmp / "demo-raw", tmp / "demo-heldout", ROOT / "recipes" / "demo.yaml", tmp,
              args.loads, args.repeats)
        if args.skip_brain:
            return
        for split, n, folder in (("train", args.brain_volumes, "brain-raw"), ("val", 1, "brain-heldout")):
            synth_cohort(tmp / folder, challenge="multicoil", volumes=n, slices=args.brain_slices,
                         matrix=(640, 320), coils=16, seed=0, split=split)
        bench("brain", tmp / "brain-raw", tmp / "brain-heldout",
              ROOT / "recipes" / "fastmri_brain_multicoil_r4.yaml", tmp, args.loads, args.repeats)
        print(f"load average at the end {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
