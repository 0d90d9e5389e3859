"""Load a trained run: its resolved recipe and its (EMA) denoiser, ready for sampling.

:func:`load_run` reads a run folder, a checkpoint file, or a model folder that ``ambientmri export``
wrote (``model.json``, ``weights.pt``, ``recipe.yaml``; see :mod:`ambientmri.export`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import yaml

from ambientmri.errors import InputError
from ambientmri.models.checkpoint import find_checkpoint, load_checkpoint, load_weights, weights_fingerprint
from ambientmri.models.factory import build_model
from ambientmri.models.precond import EDMPrecond
from ambientmri.operators.corruptions import Corruption
from ambientmri.recipes import Recipe, validate_recipe

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun:
    """A trained model and what it was trained on.

    Attributes:
        path: the run folder (or the checkpoint's folder).
        checkpoint: the checkpoint file read.
        recipe: the resolved recipe stored in the checkpoint.
        model: the preconditioned denoiser, in eval mode, on ``device``, gradients off.
        image_shape: the image grid the model was trained on.
        objective: ``ambient``, ``clean`` or ``naive``.
        step: the training step of the checkpoint.
        checkpoint_hash: :func:`~ambientmri.models.checkpoint.weights_fingerprint` of the weights
            loaded (the same for a run and the model exported from it).
        exported: whether ``path`` is an exported model folder.
    """

    path: Path
    checkpoint: Path
    recipe: Recipe
    model: EDMPrecond
    image_shape: tuple[int, ...]
    objective: str
    step: int
    checkpoint_hash: str = ""
    exported: bool = False

    @property
    def corruption(self) -> Corruption:
        """The training corruption family (``A`` and ``Ã`` samplers)."""
        return self.recipe.corruption.build()


def load_run(
    run_or_checkpoint: str | Path,
    *,
    device: str | torch.device = "cpu",
    weights: Literal["ema", "model"] = "ema",
) -> LoadedRun:
    """Load a run folder (its ``checkpoints/last.pt``), a checkpoint file or an exported model folder.

    Raises:
        InputError: no checkpoint there, or not a readable one.
    """
    from ambientmri.export import exported_model_dir, load_exported

    model_dir = exported_model_dir(run_or_checkpoint)
    if model_dir is not None:
        if weights != "ema":
            raise InputError(model_dir, "an exported model holds only the EMA weights (weights='ema')")
        return load_exported(model_dir, device=device)
    ckpt = find_checkpoint(run_or_checkpoint)
    state = load_checkpoint(ckpt, map_location="cpu")
    recipe = validate_recipe(yaml.safe_load(state["recipe"]), str(ckpt))
    image_shape = tuple(int(s) for s in state["image_shape"])
    with torch.random.fork_rng(devices=[]):
        model = build_model(recipe.model, image_shape)
    load_weights(model, state[weights], str(ckpt))
    model = model.to(device).eval().requires_grad_(False)
    path = Path(run_or_checkpoint)
    run_dir = path if path.is_dir() else ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return LoadedRun(
        path=run_dir, checkpoint=ckpt, recipe=recipe, model=model, image_shape=image_shape,
        objective=str(state.get("objective", recipe.training.objective)), step=int(state["step"]),
        checkpoint_hash=weights_fingerprint(state[weights]),
    )
