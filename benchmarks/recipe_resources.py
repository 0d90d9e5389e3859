"""Seconds per training step and peak memory for every built-in recipe.

Usage:
    python benchmarks/recipe_resources.py                    # every built-in recipe, CPU
    python benchmarks/recipe_resources.py --recipes demo block --steps 5
    python benchmarks/recipe_resources.py --device cuda --batch-scale 1   # on a GPU, recipe batch sizes

Each recipe runs in its own subprocess (so that peak RSS is per recipe). The recipe's own data,
corruption, prepare, model and training sections are used, with two changes that do not touch the
training step: the cohort is small (synthetic recipes: 2 subjects, no held-out set; fastMRI recipes:
one synthetic volume of fastMRI size made with ``ambientmri synth``) and held-out evaluation is off.
Timed: the full training step (data loading, operators, ambient loss, forward, backward, clipping,
AdamW, EMA), median over ``--steps`` steps after one warm-up step.

On a CPU, recipes on large images (more than 128 × 128 pixels: the fastMRI recipes and their
25 M-parameter network, seconds per image) are measured at ``--big-cpu-batch`` (default 1) instead of
their batch; the table says which batch was measured and gives seconds per step scaled linearly to
the recipe's batch (compute is linear in the batch; memory is not scaled).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUILTIN = Path(__file__).resolve().parents[1] / "ambientmri" / "builtin_recipes"


def _one(name: str, steps: int, warmup: int, device: str, big_cpu_batch: int) -> dict:
    import torch

    from ambientmri.data.store import CorruptedStore
    from ambientmri.data.synth import synth_cohort
    from ambientmri.recipes import load_recipe, validate_recipe
    from ambientmri.training.data import to_device
    from ambientmri.training.distributed import DistInfo
    from ambientmri.training.run import prepare_run_data
    from ambientmri.training.trainer import Trainer

    recipe = load_recipe(BUILTIN / f"{name}.yaml")
    tree = recipe.model_dump(mode="json")
    batch = int(tree["training"]["batch_size"])
    crop = tree["data"].get("crop") or [0, 0]
    big = crop[0] * crop[1] > 128 * 128
    measured = min(batch, big_cpu_batch) if device == "cpu" and big else batch
    tree["training"].update(batch_size=measured, eval_every=0, num_workers=0, device=device, warmup_steps=0)
    tmp = Path(tempfile.mkdtemp(prefix=f"rr_{name}_"))
    t0 = time.perf_counter()
    if tree["data"]["kind"] == "synthetic":
        tree["data"].update(volumes=2, heldout_volumes=0, slices=max(2, measured))
    else:  # fastMRI recipes: one synthetic volume of fastMRI size
        multicoil = tree["data"].get("challenge") == "multicoil"
        raw = tmp / "raw"
        synth_cohort(raw, challenge="multicoil" if multicoil else "singlecoil", volumes=1,
                     slices=max(2, measured), matrix=(640, 320) if multicoil else (640, 368),
                     coils=16, anatomy="brain" if multicoil else "knee", seed=0)
        tree["data"]["path"] = str(raw)
        tree["prepare"]["workers"] = 1
    rec = validate_recipe(tree, name)
    store_path, _ = prepare_run_data(rec, tmp)
    prep_s = time.perf_counter() - t0
    dev = torch.device(device)
    trainer = Trainer(rec, tmp / "run", CorruptedStore(store_path), DistInfo(0, 1, 0, dev))
    loader = iter(trainer._loader(0, steps + warmup + 1))

    def step() -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        trainer.train_step(to_device(next(loader), dev))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = [step() for _ in range(steps)]
    t_step = statistics.median(times)
    out = {
        "recipe": name,
        "image": list(trainer.image_shape),
        "parameters_m": round(sum(p.numel() for p in trainer.model.parameters()) / 1e6, 2),
        "recipe_batch": batch,
        "measured_batch": measured,
        "seconds_per_step": round(t_step, 3),
        "seconds_per_step_at_recipe_batch": round(t_step * batch / measured, 2),
        "images_per_second": round(measured / t_step, 2),
        "recipe_steps": int(tree["training"]["steps"]),
        "hours_for_recipe_steps": round(tree["training"]["steps"] * t_step * batch / measured / 3600, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "prepare_seconds": round(prep_s, 1),
        "threads": torch.get_num_threads(),
        "device": device,
    }
    if dev.type == "cuda":
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20)
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", default=sorted(p.stem for p in BUILTIN.glob("*.yaml")))
    parser.add_argument("--steps", type=int, default=3, help="timed steps per recipe (after one warm-up)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--big-cpu-batch", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one recipe
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.steps, args.warmup, args.device, args.big_cpu_batch)))
        return
    rows = []
    for name in args.recipes:
        cmd = [sys.executable, __file__, "--one", name, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--device", args.device, "--big-cpu-batch", str(args.big_cpu_batch)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    gpu = args.device == "cuda"
    head = "| recipe | image | params (M) | batch (measured) | s/step (measured) | s/step at recipe batch "
    head += "| images/s | peak RSS (MiB) |" + (" peak GPU (MiB) |" if gpu else "")
    print(head + " recipe steps | hours at this rate |")
    print("|---|---|---|---|---|---|---|---|" + ("---|" if gpu else "") + "---|---|")
    for r in rows:
        print(f"| `{r['recipe']}` | {r['image'][0]} × {r['image'][1]} | {r['parameters_m']} | "
              f"{r['recipe_batch']} ({r['measured_batch']}) | {r['seconds_per_step']} | "
              f"{r['seconds_per_step_at_recipe_batch']} | {r['images_per_second']} | {r['peak_rss_mib']} | "
              + (f"{r.get('peak_gpu_mib')} | " if gpu else "")
              + f"{r['recipe_steps']} | {r['hours_for_recipe_steps']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
