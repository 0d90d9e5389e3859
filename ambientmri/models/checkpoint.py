"""Checkpoints: plain state_dicts plus the resolved recipe, written atomically.

A checkpoint is a dict of tensors, numbers and strings only, so ``torch.load(path,
weights_only=True)`` reads it::

    {"format": "ambientmri-checkpoint", "version": 1, "step": int, "images_seen": int,
     "model": state_dict, "ema": state_dict, "optimizer": state_dict,
     "rng": {"scheme": str, "seed": int, "torch_cpu": ByteTensor, "cuda": [ByteTensor, ...]},
     "loss_window": [sum, count], "recipe": YAML str, "image_shape": [H, W],
     "ambientmri_version": str, "objective": str, "device": str, "world_size": int}

Every random draw of training (σ, noise, the data order) comes from generators seeded by
``(seed, step)``, so ``seed`` and ``step`` restore them exactly; the global torch RNG states
are stored too for completeness.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ambientmri.errors import InputError
from ambientmri.utils import atomic_path

__all__ = [
    "CHECKPOINT_FORMAT", "find_checkpoint", "load_checkpoint", "load_weights", "save_checkpoint",
    "step_checkpoints", "weights_fingerprint",
]

CHECKPOINT_FORMAT = "ambientmri-checkpoint"
_STEP = re.compile(r"^step-(\d+)\.pt$")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    Raises:
        InputError: the file is missing, not a checkpoint, or corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle error, ...
        raise InputError(path, f"not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, "not an ambientmri checkpoint")
    return state


def step_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """The ``step-NNNNNNN.pt`` files of a checkpoint folder, sorted by step."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP.match(p.name))]
    return sorted(found)


def find_checkpoint(run_or_file: str | Path) -> Path:
    """A checkpoint file from a run folder (its ``checkpoints/last.pt``) or a file path.

    Raises:
        InputError: nothing usable there.
    """
    p = Path(run_or_file)
    if p.is_file():
        return p
    for candidate in (p / "checkpoints" / "last.pt", p / "last.pt"):
        if candidate.is_file():
            return candidate
    if p.is_dir():
        steps = step_checkpoints(p / "checkpoints") or step_checkpoints(p)
        if steps:
            return steps[-1][1]
        raise InputError(p, "no checkpoint in this folder (expected checkpoints/last.pt)")
    raise InputError(p, "no such run folder or checkpoint file")


def weights_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """The SHA-256 of a state_dict's contents: names, dtypes, shapes and bytes, in name order.

    It identifies the weights themselves, not a file: ``last.pt``, ``step-N.pt`` and an exported
    ``weights.pt`` holding the same EMA weights have the same fingerprint (``torch.save`` files of
    equal tensors need not be byte-identical).
    """
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{key}\x1f{tensor.dtype}\x1f{tuple(state[key].shape)}\x1f".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state_dict, turning shape/key mismatches into one line naming ``source``.

    Raises:
        ValueError: the weights do not fit ``model``.
    """
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ValueError(f"{source}: weights do not fit this recipe's model ({detail})") from None
