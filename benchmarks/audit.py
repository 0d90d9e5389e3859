"""Memorization benchmark: ambient-trained vs clean-trained model vs the positive control.

Usage:
    python benchmarks/audit.py --out bench_audit [--steps 600] [--subjects 64] [--samples 64]

On a small synthetic training set (``--subjects`` × 4 slices of single-coil 64 × 64 brain, pixel
inpainting p = 0.6 for the ambient model), it trains an ambient model on the corrupted store and a
clean model on the clean images with the same network and budget, generates ``--samples`` scans
from each (Heun, 18 steps), draws the same number of positive-control samples from the training
set's empirical optimal denoiser, and audits the three sets with ``ambientmri audit``'s code
against the clean training scans (image space, shifts and flips searched), calibrated on held-out
subjects. It then times the nearest-neighbour search on 100 queries × 1000 training slices and
extrapolates to 1000 × 10000. Prints one table; writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from ambientmri.audit.controls import positive_control_samples
from ambientmri.audit.run import load_scan_set, run_audit
from ambientmri.audit.search import topk_neighbours
from ambientmri.recipes import validate_recipe
from ambientmri.sampling.generate import generate
from ambientmri.sampling.runs import load_run
from ambientmri.training.run import train_run
from ambientmri.utils import resolve_device, save_npy_atomic


def _recipe(objective: str, steps: int, subjects: int, heldout: int, device: str):
    return validate_recipe({
        "name": f"audit-{objective}",
        "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "brain", "volumes": subjects,
                 "heldout_volumes": heldout, "slices": 4, "matrix": [128, 64], "crop": [64, 64], "seed": 1},
        "corruption": {"kind": "inpainting", "p": 0.6, "delta": 0.1},
        "model": {"kind": "unet", "channels": [32, 64, 64], "num_res_blocks": 1,
                  "attention_levels": [False, False, True], "norm_num_groups": 16, "num_head_channels": 32},
        "training": {"objective": objective, "steps": steps, "batch_size": 8, "lr": 5e-4, "warmup_steps": 50,
                     "ema_halflife_images": 500, "log_every": 100, "checkpoint_every": 10**6, "eval_every": 0,
                     "device": device},
    }, "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_audit"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--subjects", type=int, default=64)
    parser.add_argument("--heldout", type=int, default=16)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"steps": args.steps, "train_slices": 4 * args.subjects, "heldout_slices": 4 * args.heldout,
                     "samples": args.samples, "device": device, "sets": {}}
    raw = None
    for objective in ("ambient", "clean"):
        run_dir = out / f"run_{objective}"
        if not (run_dir / "checkpoints" / "last.pt").is_file():
            t0 = time.perf_counter()
            train_run(_recipe(objective, args.steps, args.subjects, args.heldout, device), run_dir)
            print(f"trained {objective} in {time.perf_counter() - t0:.0f} s", flush=True)
        raw = run_dir / "data" / "raw"
        samples = out / f"samples_{objective}.npy"
        if not samples.is_file():
            x = generate(load_run(run_dir, device=device), args.samples, steps=18, seed=0, device=device)
            save_npy_atomic(samples, x.numpy())
    assert raw is not None
    train_images = load_scan_set(raw / "train").images
    control = out / "samples_positive_control.npy"
    if not control.is_file():
        save_npy_atomic(control, positive_control_samples(train_images.astype(np.complex64), args.samples, seed=0))
    for name, samples in (("ambient model", out / "samples_ambient.npy"), ("clean model", out / "samples_clean.npy"),
                          ("positive control", control)):
        t0 = time.perf_counter()
        summary = run_audit(samples, raw / "train", raw / "heldout", out / f"audit_{samples.stem}", controls=False)
        row = {k: summary.get(k) for k in ("verdict", "memorized_fraction", "threshold", "n_samples")}
        row["ci"] = summary.get("ci95")
        row["mann_whitney_p"] = summary.get("p_value")
        row["training_coverage"] = summary.get("training_coverage")
        row["seconds"] = round(time.perf_counter() - t0, 2)
        results["sets"][name] = row
        print(f"{name:18s} memorized {row['memorized_fraction']:.3f} CI {row['ci']} tau {row['threshold']:.4f} "
              f"p {row['mann_whitney_p']} ({row['seconds']} s)", flush=True)
    # search cost: 100 queries x 1000 training slices, extrapolated to 1000 x 10000
    rng = np.random.default_rng(0)
    refs = np.abs(rng.standard_normal((1000, 64, 64))).astype(np.float32)
    queries = np.abs(rng.standard_normal((100, 64, 64))).astype(np.float32)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    topk_neighbours(queries, refs, k=3, chunk=128, query_chunk=32)
    seconds = time.perf_counter() - t0
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    results["search"] = {"queries": 100, "references": 1000, "image": [64, 64], "seconds": round(seconds, 2),
                         "extra_peak_rss_mib": round(peak, 1),
                         "extrapolated_seconds_1000x10000": round(seconds * 100, 1)}
    print(f"top-k search 100 x 1000 at 64x64 (shifts and flips): {seconds:.1f} s, peak RSS +{peak:.0f} MiB; "
          f"1000 x 10000 extrapolates to {seconds * 100 / 60:.1f} min (linear in pairs, memory bounded by chunks)")
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
