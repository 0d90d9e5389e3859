"""``ambientmri demo``: the whole pipeline on synthetic scans, on a CPU, in about ten minutes.

Eight stages, each in its own sub-folder of ``OUT``:

1. ``raw/``: synthesize a multi-coil cohort: training subjects (``raw/train``) and clean held-out
   subjects (``raw/heldout``), fully sampled, as fastMRI files.
2. ``prepared/``: the corrupted store of the training subjects (``prepared/store``) and of the
   held-out ones (``prepared/heldout_store``, for the held-out NMSE during training), the full-rank
   condition check and the mask figures.
3. ``run/``: train an ambient model (:func:`~ambientmri.training.run.train_run`).
4. ``samples/``: generate scans (:func:`~ambientmri.sampling.generate.generate`).
5. ``reconstructions/<method>/``: reconstruct the undersampled held-out scans with ``a-os``,
   ``a-dps``, ``zero-filled`` and ``l1-wavelet`` (as ``ambientmri reconstruct`` does).
6. ``evaluation/``: fastMRI metrics per method, the sample-set metrics of the generated scans against
   the held-out clean scans, the training curves.
7. ``audit/``: the memorization audit of the generated scans against the clean training scans,
   calibrated on the held-out subjects (``audit/report.html``).
8. ``index.html`` and ``summary.json``, written last.

**Reuse.** Each stage folder is written atomically (a temporary folder renamed at the end) with a
``stage.json`` holding a fingerprint of the stage's inputs: the recipe sections it depends on, its
options and the fingerprints of the stages it reads. A rerun skips a stage whose fingerprint matches
("reusing ...") and redoes one whose inputs changed, and with it everything downstream. Training
runs in ``.run.partial/`` and becomes ``run/`` when it finishes; an interrupted training (Ctrl-C, a
killed job) resumes from ``.run.partial/checkpoints/last.pt`` on the next run with the same inputs.
A stage that fails for another reason leaves no folder behind.

**Budget.** ``steps`` fixes the number of training steps (deterministic). Otherwise ``minutes``
(default :data:`DEFAULT_MINUTES`) is the budget of the whole demo: the training starts with
:data:`WARMUP_STEPS` timed steps, and the remaining steps are chosen so that training plus the
estimated cost of the later stages fits the budget. The chosen number is recorded in
``run/stage.json`` and ``summary.json``; the fingerprint holds ``minutes`` (not the chosen steps), so
a rerun with the same ``minutes`` reuses the run instead of timing again. Training to ``N`` steps in
one go or through the warm-up and a resume gives the same weights (the trainer resumes exactly).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from rich.console import Console

from ambientmri import __version__
from ambientmri.demo_page import render_index, restoration_markdown
from ambientmri.errors import RecipeError
from ambientmri.outputs import refuse_overlap
from ambientmri.plotting import training_curves
from ambientmri.recipes import Recipe, dump_recipe, load_recipe
from ambientmri.training.trainer import read_metrics
from ambientmri.utils import resolve_device, write_json_atomic, write_text_atomic
from ambientmri.workflows.stages import STAGE_FILE, StageCache

__all__ = ["DEFAULT_MINUTES", "METHODS", "WARMUP_STEPS", "builtin_recipe", "run_demo"]

BUILTIN_RECIPES = Path(__file__).parent / "builtin_recipes"
#: the whole demo's default budget in minutes (2 idle CPU cores)
DEFAULT_MINUTES = 10.0
#: timed training steps before the number of steps is chosen (they count towards training)
WARMUP_STEPS = 12
MAX_STEPS = 100_000
#: reconstruction methods and their options, in the order of the restoration table
METHODS: dict[str, dict[str, Any]] = {
    "a-os": {},
    "a-dps": {"steps": 50},
    "zero-filled": {},
    "l1-wavelet": {},
}
SAMPLER_STEPS = 18  # Heun: 35 network evaluations per sample
STAGES = 8
MARKER = ".ambientmri-demo.json"
PLAN_FILE = "demo_plan.json"
LEGACY = ("store", "figures", "condition.json")  # the first demo's layout, replaced by prepared/
# the cost model of the later stages, in units of one training step (measured with the demo network
# on a CPU: an A-DPS step on a batch of <= 8 slices ~ 0.45 steps, a network evaluation of a batch of
# <= 8 generated samples ~ 0.4 steps), plus fixed seconds for the rest
ADPS_STEP_COST = 0.45
SAMPLE_NFE_COST = 0.4
FIXED_SECONDS = 20.0
EVAL_OVERHEAD = 1.1  # held-out evaluations, checkpoints and logging during training

ProgressFactory = Callable[[], Any]


def builtin_recipe(name: str) -> Path:
    """Path of a recipe shipped with the package (``recipes/`` in a source checkout)."""
    path = BUILTIN_RECIPES / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no built-in recipe named {name!r}")
    return path


def run_demo(
    out: str | Path,
    *,
    recipe: str | Path | None = None,
    overrides: list[str] | None = None,
    minutes: float | None = None,
    steps: int | None = None,
    samples: int = 32,
    seed: int = 0,
    adps_steps: int | None = None,
    console: Console | None = None,
    progress_factory: ProgressFactory | None = None,
) -> dict[str, Any]:
    """Run (or finish) the demo in ``out`` and return its summary (also ``out/summary.json``).

    Args:
        out: the demo folder: new, empty, or an earlier demo's output (its finished stages are reused).
        recipe: a recipe file with ``data.kind: synthetic`` (default: the built-in demo recipe).
        overrides: ``key=value`` recipe overrides (``--set``).
        minutes: budget of the whole demo; the training steps are chosen to fit it (ignored with
            ``steps``; default :data:`DEFAULT_MINUTES`).
        steps: train exactly this many steps (deterministic).
        samples: how many scans to generate.
        seed: seed of the generated scans, of A-DPS and of the audit.
        adps_steps: A-DPS sampler steps (default 50).
        console: where stage headers go (default: a quiet console).
        progress_factory: returns a rich ``Progress`` (a context manager) for the progress bars.

    Raises:
        RecipeError / ValueError / FileExistsError: bad input, before anything is written.
        TrainingInterrupted: Ctrl-C during training (rerun to resume).
    """
    console = console or Console(quiet=True)
    refuse_overlap(out, [recipe], what="demo folder (--out)")
    _refuse_foreign_folder(Path(out))
    rec = load_recipe(recipe or builtin_recipe("demo"), overrides or [])
    if rec.data.kind != "synthetic":
        raise ValueError(f"{recipe}: data.kind: the demo needs synthetic data, got {rec.data.kind!r}")
    if rec.data.heldout_volumes < 1 or rec.data.heldout_volumes * rec.data.slices < 2:
        raise RecipeError("data.heldout_volumes", "the demo needs held-out subjects with at least 2 slices in all")
    if rec.training.objective != "ambient":
        raise RecipeError("training.objective", f"the demo trains an ambient model, got {rec.training.objective!r}")
    if steps is not None and (isinstance(steps, bool) or int(steps) < 1):
        raise ValueError(f"--steps must be an integer >= 1, got {steps!r}")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"--minutes must be a number > 0, got {minutes!r}")
    if isinstance(samples, bool) or int(samples) < 2:
        raise ValueError(f"--samples must be an integer >= 2, got {samples!r}")
    methods = {k: dict(v) for k, v in METHODS.items()}
    if adps_steps is not None:
        if int(adps_steps) < 1:
            raise ValueError(f"adps_steps must be >= 1, got {adps_steps!r}")
        methods["a-dps"]["steps"] = int(adps_steps)
    out = Path(out)
    budget = {"steps": int(steps)} if steps is not None else {"minutes": float(minutes or DEFAULT_MINUTES)}
    demo = _Demo(out, rec, budget, int(samples), int(seed), methods, console, progress_factory)
    return demo.run()


def _refuse_foreign_folder(out: Path) -> None:
    """Only write into a new or empty folder or an earlier demo's output."""
    if not out.exists():
        return
    if not out.is_dir() or any(out.iterdir()):
        legacy = (out / "summary.json").is_file() and (out / "store" / "manifest.json").is_file()
        if not (out / MARKER).is_file() and not legacy:
            raise FileExistsError(
                f"{out}: exists and is not an earlier demo output; choose another --out (nothing was changed)"
            )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _machine() -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return {"cpu_count": os.cpu_count() or 1, "torch_threads": torch.get_num_threads(),
            "load_average": round(load, 2)}


def _versions() -> dict[str, str]:
    import h5py
    import monai
    import scipy

    return {"ambientmri": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "monai": monai.__version__,
            "h5py": h5py.__version__, "platform": platform.platform()}


class _Demo:
    """One demo run: the stages in order, their records, the report."""

    def __init__(self, out: Path, rec: Recipe, budget: dict[str, Any], samples: int, seed: int,
                 methods: dict[str, dict[str, Any]], console: Console, progress_factory: ProgressFactory | None):
        self.out, self.rec, self.budget, self.samples, self.seed = out, rec, budget, samples, seed
        self.methods = methods
        self.console = console
        self.progress_factory = progress_factory
        self.t0 = time.perf_counter()
        self.cache = StageCache(out, log=lambda line: console.print(line, highlight=False))
        self.stages = self.cache.stages
        self.device = resolve_device("auto") if rec.training.device != "cpu" else "cpu"

    # -- plumbing ------------------------------------------------------------------------------
    def header(self, k: int, text: str) -> None:
        self.console.print(f"[bold]{k}/{STAGES}[/] {text}", highlight=False)

    @contextmanager
    def progress(self) -> Iterator[Any]:
        if self.progress_factory is None:
            yield None
        else:
            with self.progress_factory() as p:
                yield p

    def rel(self, path: Path) -> str:
        return self.cache.rel(path)

    def stage(self, key: str, folder: Path, inputs: dict[str, Any], work: Callable[[Path], dict[str, Any]]
              ) -> dict[str, Any]:
        """Reuse ``folder`` if its fingerprint matches, else run ``work(tmp)`` into it atomically."""
        return self.cache.run(key, folder, inputs, work)

    # -- the pipeline --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        out, rec = self.out, self.rec
        out.mkdir(parents=True, exist_ok=True)
        if not (out / MARKER).is_file():
            for name in LEGACY:  # an output of the first demo: its layout is replaced
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            write_json_atomic(out / MARKER, {"ambientmri_demo": 1, "created": _now(),
                                             "ambientmri_version": __version__})
        self.machine = _machine()
        d = rec.data

        self.header(1, f"synthesizing {d.volumes} training + {d.heldout_volumes} held-out subjects")
        synth_keys = ("challenge", "anatomy", "volumes", "heldout_volumes", "slices", "matrix", "coils", "snr_db",
                      "seed")
        data = rec.data.model_dump(mode="json")
        raw = self.stage("raw", out / "raw", {"data": {k: data.get(k) for k in synth_keys}}, self._synthesize)

        self.header(2, "preparing the corrupted stores, checking the full-rank condition, drawing the masks")
        tree = rec.model_dump(mode="json")
        prepared = self.stage("prepared", out / "prepared", {
            "raw": raw["fingerprint"], "data": tree["data"], "corruption": tree["corruption"],
            "prepare": {k: v for k, v in tree["prepare"].items() if k != "workers"},
        }, self._prepare)

        self.header(3, "training the ambient model")
        run = self._train(prepared["fingerprint"])

        self.header(4, f"generating {self.samples} scans")
        samples = self.stage("samples", out / "samples", {
            "run": run["fingerprint"], "num": self.samples, "seed": self.seed, "sampler": "heun",
            "steps": SAMPLER_STEPS,
        }, self._generate)

        self.header(5, f"reconstructing the undersampled held-out scans ({', '.join(self.methods)})")
        recon: dict[str, dict[str, Any]] = {}
        for method, options in self.methods.items():
            upstream = ({"run": run["fingerprint"]} if method in ("a-os", "a-dps")
                        else {"raw": raw["fingerprint"], "corruption": tree["corruption"], "prepare": tree["prepare"],
                              "crop": tree["data"]["crop"]})
            recon[method] = self.stage(
                f"reconstruct {method}", out / "reconstructions" / method,
                {**upstream, "method": method, "options": {**options, "seed": self.seed}},
                lambda tmp, m=method, o=options: self._reconstruct(tmp, m, o),
            )

        self.header(6, "evaluating: fastMRI metrics, sample-set metrics, training curves")
        evaluation = self.stage("evaluation", out / "evaluation", {
            "raw": raw["fingerprint"], "prepared": prepared["fingerprint"], "run": run["fingerprint"],
            "samples": samples["fingerprint"], "reconstructions": {m: r["fingerprint"] for m, r in recon.items()},
        }, self._evaluate)

        self.header(7, "auditing memorization against the training scans")
        audit = self.stage("audit", out / "audit", {
            "raw": raw["fingerprint"], "samples": samples["fingerprint"], "quantile": 0.99, "controls": True,
            "seed": self.seed, "summary": "verdict",  # the summary's layout: redo audits cached before the verdict
        }, self._audit)

        self.header(8, "writing index.html and summary.json")
        summary = self._summary(raw, prepared, run, samples, recon, evaluation, audit)
        write_text_atomic(out / "recipe.resolved.yaml", dump_recipe(rec))
        write_json_atomic(out / "summary.json", summary)
        write_text_atomic(out / "index.html", render_index(summary))
        return summary

    # -- stage 1 -------------------------------------------------------------------------------
    def _synthesize(self, tmp: Path) -> dict[str, Any]:
        from ambientmri.training.run import synthesize_data

        synthesize_data(tmp, self.rec)
        return {"train_files": len(list((tmp / "train").glob("*.h5"))),
                "heldout_files": len(list((tmp / "heldout").glob("*.h5")))}

    # -- stage 2 -------------------------------------------------------------------------------
    def _prepare(self, tmp: Path) -> dict[str, Any]:
        from ambientmri.data.store import CorruptedStore, prepare_store
        from ambientmri.operators.condition import check_full_rank

        rec, raw = self.rec, self.out / "raw"
        with self.progress() as progress:
            task = progress.add_task("prepare", total=None) if progress is not None else None

            def update(done: int, total: int) -> None:
                if progress is not None:
                    progress.update(task, completed=done, total=total)

            result = prepare_store(raw / "train", tmp / "store", rec, source_kind="fastmri", progress=update)
            prepare_store(raw / "heldout", tmp / "heldout_store", rec, source_kind="fastmri")
        store = CorruptedStore(tmp / "store")
        grid = store.grid
        report = check_full_rank(store.corruption, grid, draws=256, seed=0, n=grid[0] * grid[1],
                                 fixed_mask=rec.corruption.seed_mode == "fixed")
        write_json_atomic(tmp / "condition.json", report.to_dict())
        figures = _mask_figures(store, tmp / "figures")
        stats = _store_stats(store)
        info = {
            "path": "prepared/store", "volumes": result.volumes, "slices": result.slices,
            "subjects": store.manifest["num_subjects"], "grid": list(grid), "coils": store.coils,
            "corruption": store.corruption.describe(), "prepare_seconds": round(result.seconds, 3),
            "prepare_slices_per_second": round(result.slices_per_second, 3), **stats,
        }
        store.close()
        return {
            "store": info,
            "condition": {"satisfied": report.satisfied, "min_eigenvalue": report.min_eigenvalue,
                          "never_observed_fraction": report.never_observed_fraction, "message": report.message},
            "figures": {k: f"prepared/figures/{p.name}" for k, p in figures.items()},
        }

    # -- stage 3 -------------------------------------------------------------------------------
    def _train(self, prepared_fp: str) -> dict[str, Any]:
        """Train in ``.run.partial`` (resumable), then rename it to ``run``."""
        tree = self.rec.model_dump(mode="json")
        training = {k: v for k, v in tree["training"].items() if k not in ("steps", "store", "heldout_store", "device",
                                                                            "num_workers")}
        inputs = {"prepared": prepared_fp, "model": tree["model"], "training": training, "budget": self.budget}

        def can_resume(partial: Path) -> bool:
            plan = _read_json(partial / PLAN_FILE)
            return bool(plan and plan.get("steps")) and (partial / "checkpoints" / "last.pt").is_file()

        return self.cache.resumable("train", self.out / "run", inputs, self._train_in, can_resume=can_resume,
                                    describe=lambda result: f"{result['steps']} steps")

    def _train_in(self, partial: Path, resume: bool) -> dict[str, Any]:
        """The training stage's work in ``partial``: resume its plan, or time a few steps and plan."""
        from ambientmri.training.run import with_training

        m = self.machine
        if m["torch_threads"] > 1 and m["load_average"] > m["cpu_count"]:
            self.console.print(
                f"  [yellow]note:[/] this machine is busy (load {m['load_average']:.1f} on {m['cpu_count']} cores); "
                f"torch's {m['torch_threads']} threads can then run many times slower than one: "
                "OMP_NUM_THREADS=1 ambientmri demo ... is often faster", highlight=False)
        prepared = (self.out / "prepared").resolve()
        rec = with_training(self.rec, store=prepared / "store", heldout_store=prepared / "heldout_store")
        plan_path = partial / PLAN_FILE
        if resume:
            plan = _read_json(plan_path) or {}
            self.console.print(f"  resuming the interrupted training in {self.rel(partial)}/ "
                               f"towards {plan['steps']} steps", highlight=False)
        elif self.budget.get("steps") is None:  # --minutes: time a few steps, then choose
            plan = {"steps": None}
            write_json_atomic(plan_path, plan)
            self._fit(rec, partial, WARMUP_STEPS, resume=False, log_every=1)
            per_step = self._per_step
            chosen = self._choose_steps(per_step)
            plan.update(steps=chosen, seconds_per_step=round(per_step, 4), warmup_steps=WARMUP_STEPS,
                        chosen_by=f"{WARMUP_STEPS} timed warm-up steps and a {self.budget['minutes']:g}-minute "
                                  "budget")
            write_json_atomic(plan_path, plan)
            self.console.print(f"  {per_step:.3f} s per step: training {chosen} steps to fit "
                               f"{self.budget['minutes']:g} minutes", highlight=False)
            resume = True
        else:
            plan = {"steps": self.budget["steps"], "chosen_by": "--steps"}
            write_json_atomic(plan_path, plan)
        result = self._fit(rec, partial, int(plan["steps"]), resume=resume)
        records = read_metrics(partial)
        evals = [r for r in records if any(k.startswith("heldout_nmse@") for k in r)]
        plan_path.unlink(missing_ok=True)
        return {
            "steps": result.step, "chosen_by": plan.get("chosen_by"), "budget": self.budget,
            "seconds_per_step": plan.get("seconds_per_step"), "warmup_steps": plan.get("warmup_steps"),
            "images_per_second": round(result.images_per_second, 2),
            "final_loss": records[-1]["loss"] if records else None,
            "first_loss": records[0]["loss"] if records else None,
            "heldout": ({k: v for k, v in evals[-1].items() if k.startswith("heldout_") or k == "step"}
                        if evals else None),
        }

    def _fit(self, rec: Recipe, run_dir: Path, steps: int, *, resume: bool, log_every: int | None = None) -> Any:
        """``train_run`` with a progress bar; ``self._per_step``: the median seconds per step between logs
        (the first two steps, slower while torch warms up, left out when there are more)."""
        from ambientmri.training.run import train_run

        quiet_every = max(1, steps // 10)
        state = {"next": quiet_every}
        ticks: list[tuple[int, float]] = []
        with self.progress() as progress:
            task = progress.add_task("train", total=steps) if progress is not None else None
            show_lines = progress is None or getattr(progress, "disable", False)

            def callback(event: str, data: dict[str, Any]) -> None:
                if event in ("start", "log"):
                    ticks.append((int(data["step"]), time.perf_counter()))
                if event == "start" and progress is not None:
                    progress.update(task, completed=data["step"], total=data["steps"])
                elif event == "log":
                    if progress is not None:
                        progress.update(task, completed=data["step"], description=f"train (loss {data['loss']:.3g})")
                    if show_lines and data["step"] >= state["next"]:
                        state["next"] = data["step"] + quiet_every
                        extra = "".join(f", {k} {v:.3g}" for k, v in data.items() if k.startswith("heldout_nmse@"))
                        self.console.print(f"  step {data['step']}/{steps}: loss {data['loss']:.4g}, "
                                           f"{data['images_per_second']:.1f} img/s{extra}", highlight=False)

            result = train_run(rec, run_dir, resume=resume, steps=steps, log_every=log_every, callback=callback)
        rates = [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in itertools.pairwise(ticks) if s1 > s0]
        if len(rates) > 4:
            rates = rates[2:]
        self._per_step = float(np.median(rates)) if rates else result.seconds / max(result.step - result.start_step, 1)
        return result

    def _choose_steps(self, per_step: float) -> int:
        """Training steps that fit what is left of the budget after the later stages' estimated cost."""
        d = self.rec.data
        batches = d.heldout_volumes * math.ceil(d.slices / 8)
        adps = self.methods["a-dps"].get("steps", 100) * batches * ADPS_STEP_COST
        sampling = math.ceil(self.samples / 8) * (2 * SAMPLER_STEPS - 1) * SAMPLE_NFE_COST
        later = FIXED_SECONDS + per_step * (adps + sampling)
        left = self.budget["minutes"] * 60.0 - (time.perf_counter() - self.t0) - later
        extra = int(left / (per_step * EVAL_OVERHEAD)) if left > 0 else 0
        steps = min(MAX_STEPS, WARMUP_STEPS + max(extra, 0))
        if extra <= 0:
            self.console.print("  [yellow]note:[/] the budget is too small for more than the warm-up steps",
                               highlight=False)
        return steps

    # -- stage 4 -------------------------------------------------------------------------------
    def _generate(self, tmp: Path) -> dict[str, Any]:
        from ambientmri.sampling.runs import load_run
        from ambientmri.workflows.sample import sample_scans, write_sample_run

        run = load_run(self.out / "run", device=self.device)
        with self.progress() as progress:
            task = progress.add_task("sample", total=None) if progress is not None else None
            result = sample_scans(run, self.samples, steps=SAMPLER_STEPS, seed=self.seed, device=self.device,
                                  run_label="run",
                                  progress=(lambda done, total: progress.update(task, completed=done, total=total))
                                  if progress is not None else None)
        write_sample_run(result, tmp)
        return {"num": self.samples, "nfe_per_sample": result.nfe_per_sample, "seconds": round(result.seconds, 2),
                "grid": "samples/grid.png"}

    # -- stage 5 -------------------------------------------------------------------------------
    def _reconstruct(self, tmp: Path, method: str, options: dict[str, Any]) -> dict[str, Any]:
        from ambientmri.sampling.reconstruct import reconstruct
        from ambientmri.sampling.runs import load_run

        run = load_run(self.out / "run", device=self.device) if method in ("a-os", "a-dps") else None
        with self.progress() as progress:
            task = progress.add_task(method, total=None) if progress is not None else None
            summary = reconstruct(
                self.out / "raw" / "heldout", tmp, method, run=run, recipe=None if run else self.rec,
                options={**options, "seed": self.seed}, device=self.device, nifti=True,
                progress=(lambda done, total: progress.update(task, completed=done, total=total))
                if progress is not None else None,
            )
        self.console.print(f"  {method}: {summary['slices']} slices, NFE {summary['nfe_per_slice']}, "
                           f"{summary['seconds_per_slice']:.3f} s per slice", highlight=False)
        pngs = sorted(p.name for p in (tmp / "previews").glob("*.png"))
        return {"slices": summary["slices"], "nfe_per_slice": summary["nfe_per_slice"],
                "seconds_per_slice": summary["seconds_per_slice"], "options": summary["options"],
                "figures": [f"reconstructions/{method}/previews/{n}" for n in pngs]}

    # -- stage 6 -------------------------------------------------------------------------------
    def _evaluate(self, tmp: Path) -> dict[str, Any]:
        from ambientmri.evaluation.metrics import evaluate_folders, write_metrics_json

        out = self.out
        restoration: dict[str, dict[str, Any]] = {}
        for method in self.methods:
            folder = out / "reconstructions" / method
            result = evaluate_folders(out / "raw" / "heldout", folder)
            write_metrics_json(result, tmp / f"metrics_{method}.json")
            info = json.loads((folder / STAGE_FILE).read_text(encoding="utf-8"))["result"]
            restoration[method] = {**{k: float(v) for k, v in result["mean"].items()},
                                   "nfe": info["nfe_per_slice"], "seconds_per_slice": info["seconds_per_slice"]}
        write_json_atomic(tmp / "restoration.json", restoration)
        write_text_atomic(tmp / "restoration.md", restoration_markdown(restoration))
        sampleset = self._sampleset()
        write_json_atomic(tmp / "sampleset.json", sampleset)
        records = read_metrics(out / "run")
        training_curves(records, tmp / "training_curves.png", title="the demo's ambient model")
        return {"restoration": restoration, "sampleset": {k: _sampleset_row(v) for k, v in sampleset.items()},
                "files": ["evaluation/restoration.json", "evaluation/restoration.md", "evaluation/sampleset.json",
                          "evaluation/training_curves.png", *(f"evaluation/metrics_{m}.json" for m in self.methods)]}

    def _sampleset(self) -> dict[str, Any]:
        """Sample-set metrics against the held-out clean scans: the generated scans, and two yardsticks
        (the clean training scans: what a perfect model would score; their zero-filled Aᴴy images:
        what a model of the corrupted data itself would learn)."""
        from ambientmri.audit.run import load_scan_set, zero_filled_images
        from ambientmri.data.store import CorruptedStore
        from ambientmri.evaluation.sampleset import sampleset_report
        from ambientmri.operators.fft import center_crop

        out = self.out
        gen = np.abs(np.load(out / "samples" / "samples.npy"))
        ref = np.abs(load_scan_set(out / "raw" / "heldout").images)
        train = np.abs(load_scan_set(out / "raw" / "train").images)
        store = CorruptedStore(out / "prepared" / "store")
        zero_filled = np.abs(zero_filled_images(store))
        shape = min(gen.shape[-2], ref.shape[-2]), min(gen.shape[-1], ref.shape[-1])
        frequency = None
        if store.corruption.domain == "kspace" and tuple(store.grid) == shape:
            frequency = store.mask_frequency()
        store.close()
        sets = {"generated (ambient model)": gen, "clean training scans (yardstick)": train,
                "zero-filled training scans Aᴴy (yardstick)": zero_filled}
        return {name: sampleset_report(center_crop(s, shape), center_crop(ref, shape), train_mask_frequency=frequency,
                                       seed=self.seed)
                for name, s in sets.items()}

    # -- stage 7 -------------------------------------------------------------------------------
    def _audit(self, tmp: Path) -> dict[str, Any]:
        from ambientmri.audit.run import run_audit

        out = self.out
        with self.progress() as progress:
            task = progress.add_task("audit", total=None) if progress is not None else None
            summary = run_audit(
                out / "samples" / "samples.npy", out / "raw" / "train", out / "raw" / "heldout", tmp,
                quantile=0.99, controls=True, seed=self.seed,
                progress=(lambda stage, done, total: progress.update(task, description=f"audit: {stage}"))
                if progress is not None else None,
            )
        self.console.print(f"  {summary['verdict_sentence']}", highlight=False, soft_wrap=True)
        controls = summary.get("controls") or {}
        return {
            "verdict": summary["verdict"], "verdict_sentence": summary["verdict_sentence"],
            "failed_controls": [{k: c[k] for k in ("check", "label", "measured", "target")}
                                for c in summary["failed_controls"]],
            "fallbacks": summary["fallbacks"], "finding": summary["finding"],
            "memorized_fraction": summary["memorized_fraction"], "ci95": summary["ci95"],
            "threshold": summary["threshold"], "n_samples": summary["n_samples"], "n_train": summary["n_train"],
            "n_heldout": summary["n_heldout"], "p_value": summary["p_value"],
            "training_coverage": summary["training_coverage"], "space": summary["space_label"],
            "controls": {k: v.get("flagged") for k, v in controls.items() if isinstance(v, dict)},
            "report": "audit/report.html",
        }

    # -- stage 8 -------------------------------------------------------------------------------
    def _summary(self, raw: dict, prepared: dict, run: dict, samples: dict, recon: dict, evaluation: dict,
                 audit: dict) -> dict[str, Any]:
        p = prepared["result"]
        figures = [*p["figures"].values(), samples["result"]["grid"], "evaluation/training_curves.png"]
        for r in recon.values():
            figures += r["result"]["figures"]
        return {
            "ambientmri_version": __version__,
            "versions": _versions(),
            "recipe": self.rec.name,
            "finished": _now(),
            "seconds": round(time.perf_counter() - self.t0, 2),
            "stages": self.stages,
            "device": self.device,
            "machine_at_start": self.machine,
            "store": p["store"],
            "heldout_volumes": self.rec.data.heldout_volumes,
            "condition": {k: v for k, v in p["condition"].items() if k != "message"},
            "condition_message": p["condition"]["message"],
            "training": run["result"],
            "samples": samples["result"],
            "restoration": evaluation["result"]["restoration"],
            "sampleset": evaluation["result"]["sampleset"],
            "audit": audit["result"],
            "figures": figures,
            "files": {
                "recipe": "recipe.resolved.yaml", "metrics": "run/metrics.jsonl",
                "checkpoint": "run/checkpoints/last.pt",
                "samples": "samples/samples.h5", "samples_nifti": "samples/samples.nii.gz",
                "audit_report": "audit/report.html", "audit_summary": "audit/summary.json",
                "condition": "prepared/condition.json", **{f"evaluation_{i}": f for i, f in
                                                          enumerate(evaluation["result"]["files"])},
            },
        }


# ---------------------------------------------------------------------------------------------
# helpers: store statistics, figures, tables, the page
# ---------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _store_stats(store: Any) -> dict[str, float]:
    acc, acc_f = [], []
    for i in range(len(store)):
        s = store[i]
        full = float(np.prod(store.grid)) if s.mask.shape[-2] > 1 else float(s.mask.shape[-1])
        acc.append(full / float(s.mask.sum()))
        acc_f.append(full / float(s.further_mask.sum()))
    return {
        "mean_acceleration": round(float(np.mean(acc)), 3),
        "mean_further_acceleration": round(float(np.mean(acc_f)), 3),
    }


def _zero_filled_slice(store: Any, i: int) -> np.ndarray:
    s = store[i]
    batch = s._replace(y=s.y[None], mask=s.mask[None], further_mask=s.further_mask[None],
                       maps=s.maps[None] if s.maps.numel() else s.maps)
    op = store.operator(batch)
    return op.adjoint(batch.y)[0].abs().numpy()


def _mask_figures(store: Any, folder: Path) -> dict[str, Path]:
    from ambientmri.plotting import plot_mask

    folder.mkdir(parents=True, exist_ok=True)
    n = min(4, len(store))
    fig, axes = plt.subplots(3, n, figsize=(2.6 * n, 7.8), squeeze=False)
    for j in range(n):
        s = store[j]
        grid = store.grid
        a = torch.broadcast_to(s.mask, grid).numpy()
        at = torch.broadcast_to(s.further_mask, grid).numpy()
        axes[0, j].imshow(a, cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"A, slice {j}")
        axes[1, j].imshow(a - at, cmap="magma", vmin=0, vmax=1)
        axes[1, j].set_title("lines Ã removes")
        axes[2, j].imshow(_zero_filled_slice(store, j), cmap="gray")
        axes[2, j].set_title("|Aᴴy| (zero-filled)")
        for ax in axes[:, j]:
            ax.axis("off")
    fig.tight_layout()
    paths = {"masks": folder / "masks.png"}
    fig.savefig(paths["masks"], dpi=90)
    plt.close(fig)
    paths["psf"] = folder / "mask_psf.png"
    plot_mask(store[0].mask.numpy(), paths["psf"], title="A of slice 0 and its point-spread function")
    return paths


def _sampleset_row(report: dict[str, Any]) -> dict[str, Any]:
    u = report.get("unmeasured_energy") or {}
    z = report["zero_pixels"]
    return {"swd": report["swd"]["mean"], "radial_spectrum_distance": report["radial_spectrum"]["distance"],
            "zero_pixels": z["generated"], "zero_pixels_reference": z["reference"], "zero_pixels_flagged": z["flagged"],
            "unmeasured_energy_ratio": u.get("ratio"), "unmeasured_energy_flagged": u.get("flagged"),
            "num": report["num_generated"], "num_reference": report["num_reference"]}
