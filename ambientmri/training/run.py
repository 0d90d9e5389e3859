"""``ambientmri train``: set up a run folder, its data, and the trainer.

A run folder holds ``recipe.resolved.yaml``, ``metrics.jsonl``, ``checkpoints/`` and, when the
recipe names no prepared store (``training.store``), ``data/``: for synthetic recipes the scans are
synthesized under ``data/raw`` (training and held-out subjects) and prepared into ``data/store``
(and ``data/heldout_store``); other recipes prepare ``data.path`` into ``data/store``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ambientmri.data.store import CorruptedStore, config_hash, prepare_store
from ambientmri.errors import InputError, RecipeError
from ambientmri.models.checkpoint import find_checkpoint, load_checkpoint
from ambientmri.outputs import LOCK_FILE, exclusive_lock, refuse_overlap
from ambientmri.recipes import Recipe, dump_recipe
from ambientmri.training.distributed import DistInfo, barrier, cleanup_distributed, init_distributed
from ambientmri.training.trainer import Trainer, TrainResult
from ambientmri.utils import atomic_dir, write_text_atomic

__all__ = ["prepare_run_data", "synthesize_data", "train_run", "with_training"]

Callback = Callable[[str, dict[str, Any]], None]
# the training keys a resumed run may change (how long and how it reports, not what it learns)
_RESUMABLE_KEYS = {
    "steps", "log_every", "checkpoint_every", "keep_checkpoints", "eval_every", "eval_sigmas",
    "eval_slices", "num_workers", "tensorboard", "compile", "device", "precision", "store", "heldout_store",
    "init_from",
}


def synthesize_data(raw: Path, recipe: Recipe) -> None:
    """Write a synthetic recipe's training (``raw/train``) and held-out (``raw/heldout``) subjects,
    each folder atomically; a folder that already exists is kept."""
    from ambientmri.data.synth import synth_cohort

    d = recipe.data
    common = dict(challenge=d.challenge, slices=d.slices, matrix=tuple(d.matrix), coils=d.coils,
                  anatomy=d.anatomy, seed=d.seed, snr_db=d.snr_db)
    for split, folder, count in (("train", "train", d.volumes), ("val", "heldout", d.heldout_volumes)):
        target = raw / folder
        if count and not target.is_dir():
            with atomic_dir(target) as tmp:
                synth_cohort(tmp, volumes=count, split=split, **common)


def _check_store(store: Path, recipe: Recipe, key: str) -> Path:
    """A prepared store whose settings match the recipe's data/corruption/prepare sections."""
    if not (store / "manifest.json").is_file():
        raise InputError(store, f"{key}: not a prepared store (manifest.json missing); run prepare first")
    recorded = json.loads((store / "manifest.json").read_text()).get("config_hash")
    if recorded != config_hash(recipe):
        raise RecipeError(
            key,
            f"{store} was prepared with other data/corruption/prepare settings than this recipe; "
            "use the recipe it was prepared with or prepare a new store",
        )
    return store


def prepare_run_data(
    recipe: Recipe,
    run_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    prepare: bool = True,
) -> tuple[Path, Path | None]:
    """The training store (and held-out store, or None) of a run, preparing them if needed.

    With ``prepare=False`` (the other processes of a ``torchrun`` job, after process 0 prepared)
    only the paths are worked out and checked.
    """
    cfg = recipe.training
    heldout = _check_store(Path(cfg.heldout_store), recipe, "training.heldout_store") if cfg.heldout_store else None
    if cfg.store is not None:
        return _check_store(Path(cfg.store), recipe, "training.store"), heldout
    data_dir = run_dir / "data"
    if not prepare:
        store = _check_store(data_dir / "store", recipe, "training.store")
        if heldout is None and (data_dir / "heldout_store").is_dir():
            heldout = _check_store(data_dir / "heldout_store", recipe, "training.heldout_store")
        return store, heldout
    if recipe.data.kind == "synthetic":
        synthesize_data(data_dir / "raw", recipe)
        store = data_dir / "store"
        prepare_store(data_dir / "raw" / "train", store, recipe, source_kind="fastmri", progress=progress)
        if heldout is None and recipe.data.heldout_volumes:
            heldout = data_dir / "heldout_store"
            prepare_store(data_dir / "raw" / "heldout", heldout, recipe, source_kind="fastmri")
        return store, Path(heldout) if heldout else None
    src = getattr(recipe.data, "path", None)
    if src is None:
        raise RecipeError(
            "data.path", f"set it to your {recipe.data.kind} data (--set data.path=/folder) or give training.store"
        )
    store = data_dir / "store"
    prepare_store(src, store, recipe, progress=progress)
    return store, Path(heldout) if heldout else None


def with_training(recipe: Recipe, **changes: Any) -> Recipe:
    """The recipe with some ``training`` keys replaced (``--steps``, ``--init-from``)."""
    return recipe.model_copy(update={"training": recipe.training.model_copy(update=changes)})


def _check_resume(run_dir: Path, recipe: Recipe) -> None:
    """A resumed run must learn the same thing: only reporting and length keys may change."""
    path = run_dir / "recipe.resolved.yaml"
    if not path.is_file():
        return
    import yaml

    old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    new = recipe.model_dump(mode="json")
    for section in ("data", "corruption", "prepare", "model"):
        if old.get(section) != new.get(section):
            raise RecipeError(section, f"differs from the run's recipe.resolved.yaml in {run_dir}; cannot resume")
    for key, value in new["training"].items():
        if key not in _RESUMABLE_KEYS and old.get("training", {}).get(key) != value:
            raise RecipeError(
                f"training.{key}", f"differs from the run's recipe.resolved.yaml in {run_dir}; cannot resume"
            )


def train_run(
    recipe: Recipe,
    out: str | Path,
    *,
    resume: bool = False,
    steps: int | None = None,
    log_every: int | None = None,
    init_from: str | Path | None = None,
    callback: Callback | None = None,
    prepare_progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``recipe`` into the run folder ``out`` (``torchrun`` aware).

    Process 0 holds an exclusive lock on ``out`` (:func:`ambientmri.outputs.exclusive_lock`) for the
    whole run. ``resume`` continues from ``checkpoints/last.pt``, or starts from step 0 when the run
    has no checkpoint yet. A run that fails before its first checkpoint (bad ``--init-from``, a
    model that does not fit, divergence) removes ``out`` if this call created it.

    Raises:
        RecipeError / InputError: bad recipe, data or run folder (one line each).
        OutputError: ``out`` is locked by another process, or is, holds or lies in an input.
        TrainingInterrupted: SIGINT/SIGTERM; a resumable checkpoint was written.
    """
    run_dir = Path(out)
    if steps is not None:
        recipe = with_training(recipe, steps=int(steps))
    if init_from is not None:
        recipe = with_training(recipe, init_from=Path(init_from))
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(run_dir, "exists and is not a folder")
    cfg = recipe.training
    refuse_overlap(run_dir, [cfg.store, cfg.heldout_store, cfg.init_from, getattr(recipe.data, "path", None)],
                   what="run folder (--out)")
    main = int(os.environ.get("RANK", "0")) == 0
    _check_run_folder(run_dir, recipe, resume, fresh_start=False)  # before the lock file is made
    with contextlib.ExitStack() as stack:
        created = False
        if main:  # one writer per run folder: process 0 of a torchrun job holds the lock
            try:
                run_dir.mkdir(parents=True)
                created = True
            except FileExistsError:
                pass
            stack.enter_context(exclusive_lock(run_dir, what="run folder"))
            for stale in run_dir.iterdir():  # half-written run files of a killed run (we hold the lock)
                if _temporary(stale.name) and stale.is_file():
                    stale.unlink(missing_ok=True)
        try:
            resume = _check_run_folder(run_dir, recipe, resume, fresh_start=main)  # again, under the lock
            return _train_locked(recipe, run_dir, resume, log_every, callback, prepare_progress)
        except BaseException as exc:
            if created and _unusable(run_dir, exc):  # nothing to resume: leave nothing behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
    raise AssertionError("unreachable")  # pragma: no cover


#: What a run folder holds (the demo adds its plan and stage record): anything else is not a run.
RUN_FOLDER_NAMES = {
    "recipe.resolved.yaml", "metrics.jsonl", "checkpoints", "data", "tensorboard", "curves.png", LOCK_FILE,
    "demo_plan.json", "stage.json", "stage.partial.json", "done.json",  # a demo or study stage's records
}


def _check_run_folder(run_dir: Path, recipe: Recipe, resume: bool, *, fresh_start: bool) -> bool:
    """Whether to resume from ``checkpoints/last.pt``; refuse folders that are not (this) run.

    ``--resume`` of a run without a checkpoint (killed before its first one) starts it from step 0:
    it holds nothing to lose (its ``metrics.jsonl`` is cleared when ``fresh_start``).
    """
    last = run_dir / "checkpoints" / "last.pt"
    if resume and last.is_file():
        _check_resume(run_dir, recipe)
        return True
    if not resume and (last.is_file() or (run_dir / "metrics.jsonl").is_file()):
        raise InputError(run_dir, "already holds a training run; pass --resume to continue it (a run without "
                                  "a checkpoint starts again from step 0) or choose another --out")
    if run_dir.is_dir():
        foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in RUN_FOLDER_NAMES and not _temporary(p.name))
        if foreign:
            raise InputError(run_dir, f"is not empty and is not an ambientmri run folder (it holds {foreign[0]}); "
                                      "choose a new or empty --out")
    if resume and fresh_start:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # of the killed start: begins again at step 0
    return False


def _temporary(name: str) -> bool:
    """A temporary of an atomic write of a run file (``.recipe.resolved.yaml.XXXXXXXX.tmp``), left by a kill."""
    return name.endswith(".tmp") and any(name.startswith(f".{known}.") for known in RUN_FOLDER_NAMES)


def _unusable(run_dir: Path, exc: BaseException) -> bool:
    """A failed run folder that cannot be resumed: no checkpoint, not interrupted."""
    from ambientmri.training.trainer import TrainingInterrupted

    if isinstance(exc, TrainingInterrupted | KeyboardInterrupt):
        return False
    return not any((run_dir / "checkpoints").glob("*.pt"))


def _train_locked(
    recipe: Recipe,
    run_dir: Path,
    resume: bool,
    log_every: int | None,
    callback: Callback | None,
    prepare_progress: Callable[[int, int], None] | None,
) -> TrainResult:
    """:func:`train_run` once the run folder is checked (and locked by process 0)."""
    last = run_dir / "checkpoints" / "last.pt"
    info: DistInfo = init_distributed(recipe.training.device)
    try:
        if info.is_main:
            paths = prepare_run_data(recipe, run_dir, prepare_progress)
        barrier(info)
        if not info.is_main:
            paths = prepare_run_data(recipe, run_dir, prepare=False)  # prepared by process 0
        store_path, heldout_path = paths
        store = CorruptedStore(store_path)
        heldout = CorruptedStore(heldout_path) if heldout_path is not None else None
        trainer = Trainer(recipe, run_dir, store, info, heldout=heldout, callback=callback if info.is_main else None)
        if resume:
            trainer.load(last)
            trainer.truncate_metrics()
        elif recipe.training.init_from is not None:
            from ambientmri.models.exported import exported_model_dir

            source = recipe.training.init_from
            trainer.init_from(exported_model_dir(source) or find_checkpoint(source))
        if info.is_main:  # on resume too: it records the new length (--steps) of the run
            write_text_atomic(run_dir / "recipe.resolved.yaml", dump_recipe(recipe))
        barrier(info)
        result = trainer.fit(log_every=log_every)
        barrier(info)  # nobody tears the process group down while process 0 still writes
        return result
    finally:
        cleanup_distributed(info)


def checkpoint_recipe(path: str | Path) -> Recipe:
    """The resolved recipe stored in a checkpoint."""
    import yaml

    from ambientmri.recipes import validate_recipe

    state = load_checkpoint(path)
    return validate_recipe(yaml.safe_load(state["recipe"]), str(path))
