"""Restoration benchmark: method x setting -> PSNR, SSIM, NMSE, NFE, seconds per slice.

Usage:
    python benchmarks/restoration.py --out bench_restoration [--steps 600] [--device auto]

For each setting (single-coil Cartesian k-space R = 4 and R = 8, pixel inpainting p = 0.6 and
p = 0.9) it synthesizes a training cohort and a held-out cohort (synthetic single-coil brain,
64 x 64), trains two models with the same network and budget: an ambient model on the corrupted
store and a clean (oracle) model on the clean images, then reconstructs the held-out scans, undersampled
with the setting's mask, with every applicable method through the same code as
``ambientmri reconstruct``, and scores them with fastMRI's metrics (``ambientmri evaluate``). It
prints one table (the shape of Daras et al.'s restoration table) and writes OUT/results.json and
OUT/results.md. Models and reconstructions stay under OUT.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ambientmri.data.synth import synth_cohort
from ambientmri.evaluation.metrics import evaluate_folders
from ambientmri.recipes import validate_recipe
from ambientmri.sampling.reconstruct import reconstruct
from ambientmri.sampling.runs import load_run
from ambientmri.training.run import train_run
from ambientmri.utils import resolve_device

SETTINGS: dict[str, dict[str, Any]] = {
    "kspace R=4": {"kind": "cartesian", "center_fractions": [0.125], "accelerations": [4]},
    "kspace R=8": {"kind": "cartesian", "center_fractions": [0.0625], "accelerations": [8]},
    "inpainting p=0.6": {"kind": "inpainting", "p": 0.6, "delta": 0.1},
    "inpainting p=0.9": {"kind": "inpainting", "p": 0.9, "delta": 0.1},
}
MODEL = {"kind": "unet", "channels": [32, 64, 64], "num_res_blocks": 1, "attention_levels": [False, False, True],
         "norm_num_groups": 16, "num_head_channels": 32}


def recipe(corruption: dict[str, Any], objective: str, steps: int, device: str, volumes: int) -> Any:
    return validate_recipe({
        "name": f"bench-{objective}",
        "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "brain", "volumes": volumes,
                 "heldout_volumes": 0, "slices": 4, "matrix": [128, 64], "crop": [64, 64], "seed": 0},
        "corruption": corruption,
        "model": MODEL,
        "training": {"objective": objective, "steps": steps, "batch_size": 8, "lr": 5e-4, "warmup_steps": 50,
                     "ema_halflife_images": 500, "log_every": 100, "checkpoint_every": 10**6, "eval_every": 0,
                     "device": device},
    }, "bench")


def methods_for(corruption: dict[str, Any], dps_steps: int, adps_steps: int) -> list[tuple[str, str, dict]]:
    """(label, method, options): which run each uses is decided by the method."""
    kspace = corruption["kind"] == "cartesian"
    rows = [("zero-filled", "zero-filled", {})]
    if kspace:
        rows += [("L1-wavelet", "l1-wavelet", {}), ("CG-SENSE (least squares)", "sense", {})]
    rows += [
        ("DPS (clean model)", "dps", {"steps": dps_steps}),
        ("DDRM (clean model)", "ddrm", {"steps": 20}),
        ("A-OS (ambient, sigma 0.1)", "a-os", {"sigma": 0.1}),
        ("A-OS (ambient, sigma 0.03)", "a-os", {"sigma": 0.03}),
        ("A-DPS (ambient)", "a-dps", {"steps": adps_steps}),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_restoration"))
    parser.add_argument("--steps", type=int, default=600, help="training steps per model")
    parser.add_argument("--volumes", type=int, default=16, help="training subjects (4 slices each)")
    parser.add_argument("--heldout", type=int, default=2, help="held-out subjects (4 slices each)")
    parser.add_argument("--dps-steps", type=int, default=100)
    parser.add_argument("--adps-steps", type=int, default=100)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    args = parser.parse_args()
    device = resolve_device(args.device)
    out: Path = args.out
    heldout = out / "heldout_scans"
    if not heldout.is_dir():
        synth_cohort(heldout, challenge="singlecoil", anatomy="brain", volumes=args.heldout, slices=4,
                     matrix=(128, 64), seed=0, split="val")
    results: dict[str, Any] = {"steps": args.steps, "device": device, "settings": {}}
    for name in args.settings:
        corruption = SETTINGS[name]
        tag = name.replace(" ", "_").replace("=", "")
        runs = {}
        for objective in ("ambient", "clean"):
            run_dir = out / tag / f"run_{objective}"
            if not (run_dir / "checkpoints" / "last.pt").is_file():
                t0 = time.perf_counter()
                train_run(recipe(corruption, objective, args.steps, device, args.volumes), run_dir)
                print(f"[{name}] trained {objective} model in {time.perf_counter() - t0:.0f} s", flush=True)
            runs[objective] = load_run(run_dir, device=device)
        rows = {}
        for label, method, options in methods_for(corruption, args.dps_steps, args.adps_steps):
            run = runs["clean"] if method in ("dps", "ddrm") else runs["ambient"]
            pred = out / tag / f"recon_{label.split(' ')[0]}_{options.get('sigma', '')}".rstrip("_")
            summary = reconstruct(heldout, pred, method, run=run, options={"seed": 0, **options}, device=device,
                                  nifti=False)
            metrics = evaluate_folders(heldout, pred)["mean"]
            rows[label] = {**{k: float(v) for k, v in metrics.items()}, "nfe": summary["nfe_per_slice"],
                           "seconds_per_slice": summary["seconds_per_slice"]}
            print(f"[{name}] {label:28s} PSNR {metrics['psnr']:6.2f} SSIM {metrics['ssim']:.4f} "
                  f"NMSE {metrics['nmse']:.4f} NFE {summary['nfe_per_slice']:4d} "
                  f"{summary['seconds_per_slice']:.3f} s/slice", flush=True)
        results["settings"][name] = rows
        (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = [f"Training: {args.steps} steps x batch 8 per model on {device}; held-out: {args.heldout} subjects x 4 "
             "slices, 64x64 single-coil synthetic brain; metrics: fastMRI NMSE/PSNR/SSIM (per volume, mean).", "",
             "| setting | method | PSNR (dB) | SSIM | NMSE | NFE | s/slice |", "|---|---|---|---|---|---|---|"]
    for name, rows in results["settings"].items():
        for label, r in rows.items():
            lines.append(f"| {name} | {label} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['nmse']:.4f} | {r['nfe']} | "
                         f"{r['seconds_per_slice']:.3f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
