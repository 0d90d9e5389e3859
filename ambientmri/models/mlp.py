"""A small MLP score network for low-dimensional experiments (the Gaussian theory test, vectors).

Same call signature as MONAI's UNet, ``net(x, c_noise)`` with ``x`` ``(B, C_in, *S)``, so it plugs
into :class:`~ambientmri.models.EDMPrecond` unchanged.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLPNet"]


class MLPNet(nn.Module):
    """Flatten the channels, append a sinusoidal embedding of ``c_noise``, and run an MLP.

    Args:
        in_channels: input channels per coordinate.
        out_channels: output channels per coordinate.
        image_shape: the spatial shape ``S`` (any number of axes; small).
        hidden: widths of the hidden layers.
        embedding_dim: size of the noise embedding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        image_shape: Sequence[int],
        hidden: Sequence[int] = (256, 256, 256),
        embedding_dim: int = 64,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.out_channels = int(out_channels)
        self.embedding_dim = int(embedding_dim)
        n = math.prod(self.image_shape)
        widths = [in_channels * n + self.embedding_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.SiLU()]
        last = nn.Linear(widths[-1], out_channels * n)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)

    def _embed(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.embedding_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=c_noise.device, dtype=torch.float32) / half)
        args = c_noise.float()[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        h = torch.cat([x.reshape(b, -1), self._embed(c_noise.reshape(-1).expand(b))], dim=1)
        return self.body(h).reshape(b, self.out_channels, *self.image_shape)
