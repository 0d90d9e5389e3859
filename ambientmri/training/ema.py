"""Exponential moving average of the weights, with EDM's half-life in training images."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """An EMA copy of a model.

    The decay per step is ``0.5 ** (batch / half_life)`` with ``half_life`` in images; with
    ``warmup_ratio`` the half-life is at most that fraction of the images seen so far (EDM's
    ramp-up), so early weights are forgotten quickly.

    Args:
        model: the trained model (not modified).
        half_life_images: EMA half-life in training images.
        warmup_ratio: ramp-up ratio, or None.
    """

    def __init__(self, model: nn.Module, half_life_images: float, warmup_ratio: float | None = 0.05) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.half_life = float(half_life_images)
        self.warmup_ratio = warmup_ratio

    def decay(self, images_seen: int, batch: int) -> float:
        """The decay for a step of ``batch`` images after ``images_seen`` images."""
        half = self.half_life
        if self.warmup_ratio is not None:
            half = min(half, images_seen * self.warmup_ratio)
        return 0.5 ** (batch / max(half, 1e-8))

    @torch.no_grad()
    def update(self, model: nn.Module, images_seen: int, batch: int) -> None:
        """``ema ← β ema + (1 − β) model`` (buffers copied)."""
        beta = self.decay(images_seen, batch)
        mine = [p for p in self.model.parameters()]
        theirs = [p.detach() for p in model.parameters()]
        if len(mine) != len(theirs):
            raise ValueError("EMA.update: the model's parameters do not match the EMA copy")
        torch._foreach_lerp_(mine, theirs, 1.0 - beta)  # one fused kernel per device and dtype
        for b, src in zip(self.model.buffers(), model.buffers(), strict=True):
            b.copy_(src)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
