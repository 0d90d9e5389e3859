"""Checkpoints (moved to :mod:`ambientmri.models.checkpoint`; this path keeps working)."""

from ambientmri.models.checkpoint import (
    CHECKPOINT_FORMAT,
    find_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    step_checkpoints,
    weights_fingerprint,
)

__all__ = [
    "CHECKPOINT_FORMAT", "find_checkpoint", "load_checkpoint", "load_weights", "save_checkpoint",
    "step_checkpoints", "weights_fingerprint",
]
