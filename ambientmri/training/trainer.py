"""The trainer: AdamW with warm-up, gradient clipping, EMA, bf16 autocast on CUDA, optional
``torch.compile``, DistributedDataParallel, atomic checkpoints, exact resume and SIGINT/SIGTERM
checkpoints.

Determinism: the data order, σ and the noise of step ``s`` come from generators seeded by
``(seed, s)``, each process keeping its share of the global batch's draws
(:class:`~ambientmri.training.data.StepBatchSampler` and :meth:`Trainer.step_generator`), and the
model is initialised under a forked RNG seeded by ``seed``. A run stopped at step ``k`` and resumed
therefore reaches the weights of an uninterrupted run (bit-identical on one CPU process) and logs the
same losses, and a K-process run sees the samples, σ and noise of a one-process run. The global RNGs
are never used.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ambientmri import __version__
from ambientmri.data.batch import collate, to_device
from ambientmri.data.store import CorruptedStore
from ambientmri.models.checkpoint import (  # load_weights: re-exported from its old home here
    CHECKPOINT_FORMAT,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    step_checkpoints,
)
from ambientmri.models.factory import build_model
from ambientmri.models.objectives import get_objective
from ambientmri.models.precond import EDMPrecond
from ambientmri.operators.weighting import (
    balanced_weights,
    draw_further_masks,
    further_draw_seed,
    further_slice_seed,
)
from ambientmri.recipes import Recipe, dump_recipe
from ambientmri.training.data import CleanReferences, StepBatchSampler
from ambientmri.training.distributed import DistInfo
from ambientmri.training.ema import EMA
from ambientmri.training.evaluation import HeldoutEvaluator
from ambientmri.training.losses import LossInputs, LossOutput, make_loss
from ambientmri.utils import stable_seed, write_text_atomic

__all__ = ["CURVES_FILE", "TrainResult", "Trainer", "TrainingInterrupted", "read_metrics", "write_training_curves"]

Callback = Callable[[str, dict[str, Any]], None]


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM stopped training; a resumable checkpoint was written."""

    def __init__(self, step: int, checkpoint: Path | None, signum: int) -> None:
        self.step, self.checkpoint, self.signum = step, checkpoint, signum
        where = f"; checkpoint {checkpoint}" if checkpoint else ""
        super().__init__(f"training interrupted by signal {signum} at step {step}{where} (resume with --resume)")


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did."""

    run_dir: Path
    start_step: int
    step: int
    seconds: float
    images_per_second: float
    last_loss: float | None
    checkpoint: Path | None


def _model_seed_init(recipe: Recipe, image_shape: tuple[int, ...]) -> EDMPrecond:
    """Build the model with parameters drawn from a forked RNG seeded by ``training.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stable_seed("init", recipe.training.seed) % 2**63)
        return build_model(recipe.model, image_shape)


def _device_name(device: torch.device) -> str:
    """``cpu`` or ``cuda (NVIDIA H100 ...)``: what a model card reports as the training device."""
    if device.type == "cuda":
        try:
            return f"cuda ({torch.cuda.get_device_name(device)})"
        except (RuntimeError, AssertionError):
            return "cuda"
    return device.type


#: the training-curve figure of a run folder, rewritten at every checkpoint.
CURVES_FILE = "curves.png"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``RUN/metrics.jsonl`` (lines cut by a crash are skipped); [] when there is none."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def write_training_curves(run_dir: str | Path, *, title: str = "") -> Path:
    """Draw ``RUN/curves.png`` (loss, held-out NMSE against its input's per σ, learning rate, throughput)."""
    from ambientmri.plotting import training_curves

    path = Path(run_dir) / CURVES_FILE
    training_curves(read_metrics(run_dir), path, title=title)
    return path


def _tensorboard_writer(setting: bool | None, folder: Path) -> Any:
    """A ``SummaryWriter`` on ``folder``: with ``True`` (required), ``None`` (when importable), never with ``False``."""
    if setting is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if setting:
            raise ValueError(
                'training.tensorboard: needs the tensorboard package (pip install "ambientmri[tensorboard]")'
            ) from None
        return None
    return SummaryWriter(str(folder))


class Trainer:
    """Train the recipe's model on a corrupted store (or, for the oracle, on clean references).

    Args:
        recipe: the resolved recipe.
        run_dir: the run folder (``recipe.resolved.yaml``, ``metrics.jsonl``, ``checkpoints/``).
        store: the training store.
        info: this process's place in the process group.
        heldout: a store of held-out subjects with clean sources (evaluation only), or None.
        callback: ``callback(event, data)`` for ``log``, ``eval``, ``checkpoint`` and ``end`` events
            (main process only).
    """

    def __init__(
        self,
        recipe: Recipe,
        run_dir: str | Path,
        store: CorruptedStore,
        info: DistInfo,
        *,
        heldout: CorruptedStore | None = None,
        callback: Callback | None = None,
    ) -> None:
        self.recipe = recipe
        self.cfg = recipe.training
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.store = store
        self.info = info
        self.device = info.device
        self.callback = callback or (lambda event, data: None)
        self.image_shape = tuple(store.grid)
        self.objective = self.cfg.objective

        self.model = _model_seed_init(recipe, self.image_shape).to(self.device)
        self.ema = EMA(self.model, self.cfg.ema_halflife_images, self.cfg.ema_warmup_ratio)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.cfg.lr, betas=tuple(self.cfg.betas), weight_decay=self.cfg.weight_decay,
            fused=self.device.type == "cuda" or None,
        )
        self.step = 0
        self.images_seen = 0
        self._window = [0.0, 0]
        self._stop_signal: int | None = None
        self._window_sum = torch.zeros((), device=self.device)

        net: nn.Module = self.model
        if info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
        if self.cfg.compile:
            net = torch.compile(net)  # type: ignore[assignment]
        self.net = net

        self.objective_spec = get_objective(self.objective)
        self.loss_fn = make_loss(self.objective, p_mean=self.cfg.p_mean, p_std=self.cfg.p_std, noise=self.cfg.noise,
                                 residual=self.cfg.residual)
        self.dataset: torch.utils.data.Dataset = (CleanReferences(store) if self.objective_spec.clean_images
                                                  else store)
        self._eval_enabled = heldout is not None and self.cfg.eval_every > 0
        self.evaluator = (
            HeldoutEvaluator(heldout, self.cfg.eval_sigmas, self.cfg.eval_slices, self.objective, self.device)
            if heldout is not None and self.cfg.eval_every > 0 and info.is_main
            else None
        )
        self.loss_fn.set_shard(info.rank, info.world)
        self.corruption = store.corruption
        self.further_cfg = recipe.corruption.further
        self._tb: Any = None

    # -- precision ---------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        p = self.cfg.precision
        if self.device.type == "cuda" and p in ("auto", "bf16"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if p == "bf16":  # asked for explicitly on a CPU
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- randomness --------------------------------------------------------------------------
    def step_generator(self, step: int) -> torch.Generator:
        """The generator of σ and noise at ``step``: the same on every process, which keeps its share
        of the global batch's draws (:meth:`~ambientmri.training.losses.AmbientLoss.set_shard`)."""
        g = torch.Generator(device=self.device)
        g.manual_seed(stable_seed("train", self.cfg.seed, step) % 2**63)
        return g

    # -- one step ----------------------------------------------------------------------------
    def compute_loss(self, batch: Any, generator: torch.Generator) -> LossOutput:
        """The per-sample loss of a batch already on the device."""
        with self._autocast():
            if self.objective_spec.clean_images:
                return self.loss_fn.compute(self.net, LossInputs(self.image_shape, x0=batch.x0), generator)
            if not self.objective_spec.sees_further:
                inputs = LossInputs(self.image_shape, y=batch.y, A=self.store.operator(batch))
                return self.loss_fn.compute(self.net, inputs, generator)
            return self._ambient_loss(batch, generator)

    def further_masks(self, batch: Any, step: int) -> torch.Tensor:
        """``Ã``'s masks for a batch at ``step``, ``(draws · B, *mask_shape)``, draw-major.

        ``redraw: slice`` with one draw is the store's fixed ``Ã``; extra draws of a fixed ``Ã`` are
        seeded by the slice; ``redraw: step`` draws every ``Ã`` anew from ``p(Ã | A)``, seeded by
        (training seed, step, global batch position, draw). Local sample ``j`` of process ``rank``
        is global position ``rank + j · world`` (:class:`StepBatchSampler`), so every process draws
        what a one-process run draws.
        """
        further_cfg = self.further_cfg
        draws = further_cfg.draws
        rank, world = self.info.rank, self.info.world
        b = batch.mask.shape[0]
        out = []
        for d in range(draws):
            if further_cfg.redraw == "slice" and d == 0:
                out.append(batch.further_mask.to(torch.float32))
                continue
            if further_cfg.redraw == "slice":
                seeds = [further_slice_seed(self.cfg.seed, int(i), d) for i in batch.index]
            else:
                seeds = [further_draw_seed(self.cfg.seed, step, rank + j * world, d) for j in range(b)]
            out.append(draw_further_masks(self.corruption, batch.mask, seeds))
        return torch.cat(out, 0)

    def _ambient_loss(self, batch: Any, generator: torch.Generator) -> LossOutput:
        """The ambient loss with the recipe's redraw, draws and weighting (mean over the draws)."""
        draws = self.further_cfg.draws
        further_masks = self.further_masks(batch, self.step)
        if draws > 1:  # draw-major tiling keeps the σ/noise draws of a sharded run equal to one process's
            def tile(t: torch.Tensor) -> torch.Tensor:
                return t.repeat(draws, *([1] * (t.ndim - 1))) if t.numel() else t

            batch = batch._replace(y=tile(batch.y), mask=tile(batch.mask), maps=tile(batch.maps),
                                   matrix_seed=tile(batch.matrix_seed) if isinstance(batch.matrix_seed, torch.Tensor)
                                   else batch.matrix_seed)
        A = self.store.operator(batch)
        further = A.restrict(further_masks)
        weights = None
        if self.cfg.weighting == "balanced":  # a Monte Carlo map, where needed, is computed once and cached
            weights = balanced_weights(self.corruption, batch.mask, further_masks, self.image_shape)
        inputs = LossInputs(self.image_shape, y=batch.y, A=A, further=further, weights=weights)
        out = self.loss_fn.compute(self.net, inputs, generator)
        if draws > 1:
            b = out.loss.shape[0] // draws
            return LossOutput(out.loss.reshape(draws, b).mean(0), out.sigma.reshape(draws, b)[0])
        return out

    def train_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimiser step on a device batch: loss, backward, clip, AdamW, EMA.

        Returns:
            the mean loss (a 0-d tensor, not synchronised) and the gradient norm (or None).
        """
        lr = self.cfg.lr * min(1.0, (self.step + 1) / self.cfg.warmup_steps) if self.cfg.warmup_steps else self.cfg.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        out = self.compute_loss(batch, self.step_generator(self.step))
        loss = out.loss.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = None
        if self.cfg.grad_clip is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.images_seen += self.cfg.batch_size
        self.ema.update(self.model, self.images_seen, self.cfg.batch_size)
        self.step += 1
        return loss.detach(), grad_norm

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"scheme": "stable_seed(train, seed, step)", "seed": self.cfg.seed,
                               "torch_cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "ambientmri_version": __version__,
            "step": self.step,
            "images_seen": self.images_seen,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,
            "loss_window": [float(self._window[0]), int(self._window[1])],
            "recipe": dump_recipe(self.recipe),
            "image_shape": list(self.image_shape),
            "objective": self.objective,
            "device": _device_name(self.device),
            "world_size": int(self.info.world),
        }

    def save(self) -> Path | None:
        """Write ``step-NNNNNNN.pt`` and ``last.pt`` (main process), prune old step files."""
        if not self.info.is_main:
            return None
        state = self.state_dict()
        path = save_checkpoint(self.ckpt_dir / f"step-{self.step:07d}.pt", state)
        save_checkpoint(self.ckpt_dir / "last.pt", state)
        for _, old in step_checkpoints(self.ckpt_dir)[: -self.cfg.keep_checkpoints]:
            old.unlink(missing_ok=True)
        self.write_curves()
        self.callback("checkpoint", {"step": self.step, "path": str(path)})
        return path

    def write_curves(self) -> Path | None:
        """``RUN/curves.png`` from ``metrics.jsonl`` (main process; a figure failure only warns)."""
        path = self.run_dir / CURVES_FILE
        if not self.info.is_main:
            return None
        try:
            write_training_curves(self.run_dir, title=f"{self.recipe.name}: {self.objective} run, step {self.step}")
        except (OSError, ValueError, RuntimeError) as exc:  # a figure must never stop training
            warnings.warn(f"{path}: not written ({type(exc).__name__}: {exc})", stacklevel=2)
            return None
        return path

    def load(self, path: str | Path) -> None:
        """Restore model, EMA, optimizer, step and the loss window from a checkpoint."""
        state = load_checkpoint(path, map_location=self.device)
        if tuple(state.get("image_shape", self.image_shape)) != self.image_shape:
            raise ValueError(
                f"{path}: checkpoint was trained on images {state['image_shape']}, "
                f"this store has {list(self.image_shape)}"
            )
        load_weights(self.model, state["model"], str(path))
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.images_seen = int(state["images_seen"])
        self._window = [float(state["loss_window"][0]), int(state["loss_window"][1])]

    def init_from(self, path: str | Path) -> None:
        """Start from another run's (or an exported model's) EMA weights; the optimizer and step start fresh."""
        from ambientmri.models.exported import exported_model_dir, exported_weights

        model_dir = exported_model_dir(path)
        if model_dir is not None:
            meta, ema = exported_weights(model_dir)
            state: dict[str, Any] = {"ema": ema, "image_shape": meta.get("image_shape", list(self.image_shape))}
        else:
            state = load_checkpoint(path, map_location=self.device)
        shape = tuple(state.get("image_shape", self.image_shape))
        if shape != self.image_shape and getattr(self.recipe.model, "kind", "") == "mlp":
            raise ValueError(f"{path}: the MLP was trained on images {list(shape)}, this store has "
                             f"{list(self.image_shape)}")
        weights = state.get("ema") or state["model"]
        load_weights(self.model, weights, str(path))
        self.ema.load_state_dict(weights)

    # -- logging -----------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if not self.info.is_main:
            return
        with (self.run_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and v is not None:
                    self._tb.add_scalar(k, v, record["step"])
        self.callback("log", record)

    def truncate_metrics(self) -> None:
        """Drop metric lines after the current step (a run killed after its last checkpoint)."""
        path = self.run_dir / "metrics.jsonl"
        if not self.info.is_main or not path.is_file():
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= self.step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
        write_text_atomic(path, "".join(k + "\n" for k in keep))

    # -- signals -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: Any) -> None:
            self._stop_signal = signum

        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: no handlers
            pass
        try:
            yield
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)

    def _should_stop(self) -> int | None:
        flag = self._stop_signal or 0
        if self.info.distributed:
            t = torch.tensor([flag], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = int(t.item())
        return flag or None

    # -- the loop ----------------------------------------------------------------------------
    def _loader(self, start: int, stop: int) -> torch.utils.data.DataLoader:
        per_rank = self.cfg.batch_size // self.info.world
        if per_rank < 1:
            raise ValueError(
                f"training.batch_size={self.cfg.batch_size} is smaller than the {self.info.world} processes"
            )
        sampler = StepBatchSampler(
            len(self.dataset), self.cfg.batch_size, world=self.info.world, rank=self.info.rank,
            seed=self.cfg.seed, start=start, stop=stop,
        )
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=self.cfg.num_workers, collate_fn=collate,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
        )

    def fit(self, steps: int | None = None, log_every: int | None = None) -> TrainResult:
        """Train until ``steps`` (default ``training.steps``), logging every ``log_every`` steps."""
        total = int(steps or self.cfg.steps)
        log_every = int(log_every or self.cfg.log_every)
        start = self.step
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.info.is_main:
            self._tb = _tensorboard_writer(self.cfg.tensorboard, self.run_dir / "tensorboard")
        self.model.train()
        t0 = time.perf_counter()
        t_log, images_log = t0, 0
        last_loss: float | None = None
        checkpoint: Path | None = None
        self._window_sum = torch.zeros((), device=self.device)
        self.callback("start", {"step": start, "steps": total})
        try:
            with self._signals():
                for batch in self._loader(start, total):
                    loss, grad_norm = self.train_step(to_device(batch, self.device))
                    self._window_sum += loss
                    self._window[1] += 1
                    images_log += self.cfg.batch_size
                    is_eval = self._eval_enabled and self.step % self.cfg.eval_every == 0
                    on_grid = self.step % log_every == 0 or is_eval
                    if on_grid or self.step == total:
                        self._flush_window()
                        now = time.perf_counter()
                        last_loss = self._window[0] / max(self._window[1], 1)
                        if not math.isfinite(last_loss):
                            raise FloatingPointError(
                                f"training diverged at step {self.step}: loss is {last_loss} "
                                "(lower training.lr or set training.grad_clip)"
                            )
                        record: dict[str, Any] = {
                            "step": self.step,
                            "loss": last_loss,
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "grad_norm": None if grad_norm is None else float(grad_norm),
                            "images_per_second": images_log / max(now - t_log, 1e-9),
                            "images_seen": self.images_seen,
                            "seconds": now - t0,
                        }
                        if is_eval and self.evaluator is not None:
                            record.update(self._evaluate())
                        if on_grid:  # an off-grid final log keeps its window: a resumed run logs alike
                            self._window = [0.0, 0]
                        t_log, images_log = time.perf_counter(), 0
                        self._log(record)
                    if self.step % self.cfg.checkpoint_every == 0 and self.step != total:
                        self._flush_window()
                        checkpoint = self.save() or checkpoint
                    signum = self._should_stop()
                    if signum is not None:
                        self._flush_window()
                        checkpoint = self.save()
                        raise TrainingInterrupted(self.step, checkpoint, signum)
            if self.step > start or not (self.ckpt_dir / "last.pt").is_file():
                self._flush_window()
                checkpoint = self.save()
        finally:
            if self._tb is not None:
                self._tb.close()
        seconds = time.perf_counter() - t0
        done = (self.step - start) * self.cfg.batch_size
        self.callback("end", {"step": self.step, "seconds": seconds})
        return TrainResult(self.run_dir, start, self.step, seconds, done / max(seconds, 1e-9), last_loss, checkpoint)

    def _flush_window(self) -> None:
        """Add the unsynchronised loss sum to the window (averaged over processes)."""
        s = self._window_sum.clone()
        if self.info.distributed:
            dist.all_reduce(s)
            s /= self.info.world
        self._window[0] += float(s)
        self._window_sum.zero_()

    def _evaluate(self) -> dict[str, float]:
        assert self.evaluator is not None
        metrics = self.evaluator(self.ema.model, self.image_shape)
        self.callback("eval", {"step": self.step, **metrics})
        return metrics
