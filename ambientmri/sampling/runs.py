"""Load a trained run: its resolved recipe and its (EMA) denoiser, ready for sampling.

:func:`load_run` reads a run folder, a checkpoint file, or a model folder that ``ambientmri export``
wrote (``model.json``, ``weights.pt``, ``recipe.yaml``; see :mod:`ambientmri.export`), the latter with
:func:`load_exported`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import yaml

from ambientmri.errors import InputError
from ambientmri.models.checkpoint import find_checkpoint, load_checkpoint, load_weights, weights_fingerprint
from ambientmri.models.exported import RECIPE_FILE, WEIGHTS_FILE, exported_model_dir, exported_weights
from ambientmri.models.factory import build_model
from ambientmri.models.precond import EDMPrecond
from ambientmri.operators.corruptions import Corruption
from ambientmri.recipes import Recipe, validate_recipe

__all__ = ["LoadedRun", "load_exported", "load_run"]


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


def load_exported(folder: str | Path, *, device: str | torch.device = "cpu") -> LoadedRun:
    """Load an exported model folder as a :class:`~ambientmri.sampling.runs.LoadedRun`.

    Raises:
        InputError: a file is missing or unreadable, or ``weights.pt`` does not match its SHA-256.
    """
    folder = Path(folder)
    meta, state = exported_weights(folder)
    weights_path = folder / WEIGHTS_FILE
    recipe_path = folder / RECIPE_FILE
    if not recipe_path.is_file():
        raise InputError(recipe_path, "the model folder has no recipe.yaml")
    try:
        tree = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise InputError(recipe_path, "not valid YAML") from None
    recipe = validate_recipe(tree, str(recipe_path))
    image_shape = tuple(int(s) for s in meta["image_shape"])
    with torch.random.fork_rng(devices=[]):
        model = build_model(recipe.model, image_shape)
    load_weights(model, state, str(weights_path))
    model = model.to(device).eval().requires_grad_(False)
    return LoadedRun(
        path=folder, checkpoint=weights_path, recipe=recipe, model=model, image_shape=image_shape,
        objective=str(meta.get("objective", recipe.training.objective)), step=int(meta.get("step", 0)),
        checkpoint_hash=weights_fingerprint(state), exported=True,
    )
