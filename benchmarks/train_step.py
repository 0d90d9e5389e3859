"""Training-step throughput and where the time goes.

Usage:
    python benchmarks/train_step.py                       # 64x64, batch 8, the demo model, CPU
    python benchmarks/train_step.py --size 320 320 --batch 8 --model fastmri --device cuda

For one image size and batch it prints: images/s of the full training step (data loading, operators,
ambient loss, forward, backward, clipping, AdamW, EMA), peak memory, and the share of the step spent
outside the network's forward and backward, with a breakdown. The network-only time is measured in
the same run, on tensors of the same shapes and precision, so the ratio is robust to a noisy machine.
Target: outside share <= 10% (64x64 on CPU, 320x320 on a GPU).

The store is synthesized and prepared in a temporary folder (multi-coil brain, Cartesian R=4).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ambientmri.data.store import CorruptedStore
from ambientmri.demo import builtin_recipe
from ambientmri.recipes import load_recipe, validate_recipe
from ambientmri.training.data import to_device
from ambientmri.training.distributed import DistInfo
from ambientmri.training.run import prepare_run_data
from ambientmri.training.trainer import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _once(fn, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def _timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``repeats`` calls (robust to a shared, noisy machine)."""
    return statistics.median(_once(fn, device) for _ in range(repeats))


def build(tmp: Path, size: tuple[int, int], batch: int, coils: int, model: str, device: str, precision: str,
          compile_: bool, workers: int = 0) -> Trainer:
    model_recipe = load_recipe(builtin_recipe("demo" if model == "demo" else "fastmri_brain_multicoil_r4"))
    h, w = size
    tree = {
        "name": "bench",
        "data": {"kind": "synthetic", "challenge": "multicoil", "volumes": 2, "heldout_volumes": 0,
                 "slices": max(2, batch // 2), "matrix": [2 * h, w], "crop": [h, w], "coils": coils},
        "corruption": {"kind": "cartesian", "center_fractions": [0.08], "accelerations": [4]},
        "prepare": {"coil_maps": {"calib_width": 8, "max_iter": 10}, "workers": 2},
        "model": model_recipe.model.model_dump(mode="json"),
        "training": {"batch_size": batch, "device": device, "precision": precision, "compile": compile_,
                     "eval_every": 0, "warmup_steps": 0, "num_workers": workers},
    }
    recipe = validate_recipe(tree, "bench")
    store_path, _ = prepare_run_data(recipe, tmp)
    dev = torch.device("cuda" if device == "cuda" else "cpu")
    return Trainer(recipe, tmp / "run", CorruptedStore(store_path), DistInfo(0, 1, 0, dev))


def measure(trainer: Trainer, steps: int, warmup: int) -> dict[str, float]:
    dev = trainer.device
    loader = iter(trainer._loader(0, warmup + steps + 8))
    for _ in range(warmup):
        trainer.train_step(to_device(next(loader), dev))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    batch = to_device(next(loader), dev)
    b = batch.y.shape[0]
    x = torch.randn(b, trainer.model.in_channels, *trainer.image_shape, device=dev)
    c = torch.randn(b, device=dev)

    def full() -> None:  # the step as the training loop runs it, data loading included
        trainer.train_step(to_device(next(loader), dev))

    def net() -> None:  # the network alone, same shapes and precision
        with trainer._autocast():
            out = trainer.model.net(x, c).float()
        out.square().mean().backward()

    # interleaved, so both see the same machine load; medians
    pairs = [(_once(full, dev), _once(net, dev)) for _ in range(steps)]
    t_step = statistics.median(p[0] for p in pairs)
    t_net = statistics.median(p[1] for p in pairs)
    trainer.optimizer.zero_grad()
    data_iter = iter(trainer._loader(0, steps + 1))
    t_data = _timed(lambda: to_device(next(data_iter), dev), dev, steps)
    t_ema = _timed(lambda: trainer.ema.update(trainer.model, 10**6, b), dev, steps)
    A = trainer.store.operator(batch)
    t_ops = _timed(lambda: A.adjoint(A.forward(A.adjoint(batch.y))), dev, steps)
    net(); t_opt = _timed(trainer.optimizer.step, dev, steps)  # noqa: E702
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "images_per_second": b / t_step,
        "step_ms": 1e3 * t_step,
        "network_fwd_bwd_ms": 1e3 * t_net,
        "outside_share": max(0.0, 1 - t_net / t_step),
        "data_ms": 1e3 * t_data,
        "operators_ms": 1e3 * t_ops,
        "optimizer_ms": 1e3 * t_opt,
        "ema_ms": 1e3 * t_ema,
        "peak_memory_mib": peak,
        "parameters_m": sum(p.numel() for p in trainer.model.parameters()) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--coils", type=int, default=4)
    parser.add_argument("--model", choices=("demo", "fastmri"), default="demo")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack():
        trainer = build(Path(tmp), tuple(args.size), args.batch, args.coils, args.model, args.device,
                        args.precision, args.compile, args.workers)
        result = measure(trainer, args.steps, args.warmup)
    result.update(size=list(args.size), batch=args.batch, workers=args.workers, coils=args.coils,
                  model=args.model, device=args.device,
                  precision=args.precision, threads=torch.get_num_threads(),
                  gpu=torch.cuda.get_device_name() if args.device == "cuda" else None)
    print(f"{args.size[0]}x{args.size[1]} batch {args.batch} ({args.model} model, {result['parameters_m']:.2f} M "
          f"params, {args.device}, {args.precision}): {result['images_per_second']:.1f} img/s, "
          f"step {result['step_ms']:.1f} ms, network fwd+bwd {result['network_fwd_bwd_ms']:.1f} ms, "
          f"outside the network {100 * result['outside_share']:.1f}% "
          f"(data {result['data_ms']:.1f} ms, operators {result['operators_ms']:.1f} ms, "
          f"AdamW {result['optimizer_ms']:.1f} ms, EMA {result['ema_ms']:.1f} ms), "
          f"peak memory {result['peak_memory_mib']:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
