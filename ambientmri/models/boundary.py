"""The network boundary: complex images and masked operators in, the preconditioned denoiser's call.

The denoiser (:class:`~ambientmri.models.precond.EDMPrecond`) sees a complex image ``u`` and an
image-shaped mask channel describing which measurements ``u`` holds; these helpers build that
channel from a :class:`~ambientmri.operators.linear.MaskedOperator` and call the network. Training
(:mod:`ambientmri.training.losses`) and sampling (:mod:`ambientmri.sampling.denoisers`) both use them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ambientmri.operators.base import Identity
from ambientmri.operators.linear import MaskedOperator

__all__ = ["denoise", "full_operator", "mask_channel", "network_input"]


def full_operator(image_shape: Sequence[int], device: torch.device | str = "cpu") -> MaskedOperator:
    """The identity as a masked operator with a mask of ones (what a clean model is told it sees)."""
    shape = tuple(image_shape)
    return MaskedOperator(torch.ones((1, *shape), device=device), Identity(shape))


def mask_channel(op: MaskedOperator, image_shape: Sequence[int], batch: int) -> torch.Tensor:
    """The image-shaped mask channel ``(B, 1, *image_shape)`` describing ``op``'s measurements.

    Pixel masks and k-space masks live on a grid of the image's shape (a Cartesian ``(1, W)``
    line mask broadcasts over the rows); a mask on another grid (the Gaussian operator's rows)
    becomes a constant channel holding the fraction of measurements kept.
    """
    image_shape = tuple(image_shape)
    grid = tuple(op.grid_shape)
    m = op.mask.to(torch.float32)
    if m.ndim <= len(grid):
        m = m.reshape((1,) * (len(grid) + 1 - m.ndim) + tuple(m.shape))
    if grid == image_shape:
        return torch.broadcast_to(m, (m.shape[0], *grid)).expand(batch, *grid).unsqueeze(1)
    frac = torch.broadcast_to(m, (m.shape[0], *grid)).reshape(m.shape[0], -1).mean(1).expand(batch)
    return frac.reshape(batch, 1, *([1] * len(image_shape))).expand(batch, 1, *image_shape)


def denoise(
    model: nn.Module, u: torch.Tensor, op: MaskedOperator, sigma: torch.Tensor, image_shape: Sequence[int]
) -> torch.Tensor:
    """Run the preconditioned denoiser on ``u`` (in ``op``'s input shape) given ``op``'s mask.

    ``u`` is reshaped to the network's image shape and back (the Gaussian operator acts on
    flattened images).
    """
    b = u.shape[0]
    x = u.reshape(b, *image_shape)
    d = model(x, mask_channel(op, image_shape, b), sigma)
    return d.reshape(u.shape)


def network_input(op: MaskedOperator, x: torch.Tensor) -> torch.Tensor:
    """``u = Ãᴴ Ã x``: what the ambient denoiser sees of images ``x`` ``(B, ...)`` through ``op = Ã``.

    ``x`` is reshaped to ``op``'s input shape; the result has that shape, complex. (The training
    loss forms the same input from the measurements instead, ``Ãᴴ(M̃ ⊙ y + σ Ã n)``, see
    :meth:`ambientmri.training.losses.AmbientLoss.network_input`: it never holds ``x``.)
    """
    return op.adjoint(op.forward(x.reshape(x.shape[0], *op.in_shape)))
