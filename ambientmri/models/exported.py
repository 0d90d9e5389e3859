"""Reading an exported model folder (``ambientmri export``): ``model.json``, ``weights.pt``, ``recipe.yaml``.

The writing side and the model card are :mod:`ambientmri.export`; loading the folder as a
:class:`~ambientmri.sampling.runs.LoadedRun` is :func:`ambientmri.sampling.runs.load_exported`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ambientmri.errors import InputError

__all__ = [
    "MODEL_FORMAT", "RECIPE_FILE", "WEIGHTS_FILE", "exported_model_dir", "exported_weights", "read_json_object",
    "sha256_file",
]

MODEL_FORMAT = "ambientmri-model"
WEIGHTS_FILE = "weights.pt"
RECIPE_FILE = "recipe.yaml"


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def exported_model_dir(path: str | Path) -> Path | None:
    """The model folder ``path`` names (the folder, or its ``weights.pt``/``model.json``), else None."""
    p = Path(path)
    folder = p.parent if p.is_file() and p.name in (WEIGHTS_FILE, "model.json") else p
    meta = folder / "model.json"
    if not meta.is_file():
        return None
    try:
        fmt = json.loads(meta.read_text(encoding="utf-8")).get("format")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    return folder if fmt == MODEL_FORMAT else None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object, read; one-line :class:`InputError` otherwise."""
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(path, "not valid JSON (not an object)")
    return data


def exported_weights(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``model.json`` and the EMA state_dict of an exported model, after checking the weights' sha256.

    Raises:
        InputError: a file is missing or unreadable, or ``weights.pt`` does not match its SHA-256.
    """
    folder = Path(folder)
    meta = read_json_object(folder / "model.json")
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise InputError(weights_path, "the model folder has no weights.pt")
    expected = (meta.get("weights") or {}).get("sha256")
    if expected and sha256_file(weights_path) != expected:
        raise InputError(weights_path, "does not match the sha256 in model.json (a changed or damaged file)")
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle error, ...
        raise InputError(weights_path, f"not a readable weights file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(weights_path, "not a state_dict of tensors")
    return meta, state
