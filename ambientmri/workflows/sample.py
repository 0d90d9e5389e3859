"""The sampling step, once: generate scans from a run and describe them (``ambientmri sample``, the
demo, the API).

:func:`sample_scans` returns a :class:`SampleRun` (the scans, the network evaluations each took,
the seconds and the metadata that ``meta.json`` records); :func:`write_sample_run` writes it as a
sample folder (:func:`~ambientmri.sampling.outputs.write_samples`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ambientmri.sampling.generate import generate_result
from ambientmri.sampling.outputs import write_samples
from ambientmri.sampling.runs import LoadedRun

__all__ = ["SampleRun", "sample_scans", "write_sample_run"]


@dataclass(frozen=True)
class SampleRun:
    """Generated scans and how they were made.

    Attributes:
        samples: complex64 ``(num, H, W)`` in the training data's units.
        nfe_per_sample: network evaluations per scan (what the sampler counted).
        seconds: wall-clock seconds of the sampling.
        meta: the settings, the run's step, objective and checkpoint hash (``meta.json``).
    """

    samples: np.ndarray
    nfe_per_sample: int
    seconds: float
    meta: dict[str, Any]


def sample_scans(
    run: LoadedRun,
    num: int,
    *,
    seed: int = 0,
    steps: int = 18,
    sampler: str = "heun",
    batch_size: int = 8,
    churn: float = 0.0,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    guidance_weight: float = 0.0,
    guidance_masks: int = 0,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    run_label: str | None = None,
) -> SampleRun:
    """Generate ``num`` scans from ``run`` (:func:`~ambientmri.sampling.generate.generate_result`).

    ``run_label`` is what ``meta.json`` records as the run (default: the run's path; the demo
    records a path relative to its folder); ``progress(done, total)`` follows the sampler steps.
    """
    t0 = time.perf_counter()
    result = generate_result(
        run, num, steps=steps, sampler=sampler, seed=seed, batch_size=batch_size, churn=churn, sigma_min=sigma_min,
        sigma_max=sigma_max, guidance_weight=guidance_weight, guidance_masks=guidance_masks, device=device,
        callback=progress,
    )
    seconds = time.perf_counter() - t0
    meta = {
        "run": run_label if run_label is not None else str(run.path),
        **({} if run_label is not None else {"checkpoint": str(run.checkpoint)}),
        "step": run.step, "objective": run.objective, "num": num, "seed": seed, "steps": steps, "sampler": sampler,
        "churn": churn, "sigma_min": sigma_min, "sigma_max": sigma_max, "guidance_weight": guidance_weight,
        "guidance_masks": guidance_masks, "nfe_per_sample": result.nfe, "seconds": round(seconds, 3),
        "checkpoint_hash": run.checkpoint_hash,
        "title": f"{run.recipe.name}: {run.objective} model, step {run.step}, seed {seed}",
    }
    return SampleRun(result.x.numpy(), result.nfe, seconds, meta)


def write_sample_run(result: SampleRun, out: str | Path, *, inputs: Sequence[str | Path | None] = (),
                     overwrite: bool = False) -> dict[str, Path]:
    """Write ``result`` as a sample folder ``out`` (refusing ``inputs`` and a folder it did not write)."""
    return write_samples(result.samples, out, result.meta, inputs=inputs, overwrite=overwrite)
