"""EDM preconditioning (Karras et al. 2022) around a network that sees complex images as channels.

``D(u, m, σ) = c_skip(σ) u + c_out(σ) F([c_in(σ) Re u, c_in(σ) Im u, m, 1]; c_noise(σ))``

``u`` is the complex image the denoiser gets (for ambient training ``Ãᴴ Ã x_t``, for clean
training ``x_t``), ``m`` the image-shaped channel(s) describing which measurements ``u`` holds
(the mask of ``Ã``; ones for clean data), and the constant channel lets a zero-padded convolution
find the image border (Aali et al. 2025 feed ``[Re u, Im u, M̃, 1]``). The output is the complex
image, two channels, returned as complex64.

``c_noise``: MONAI's sinusoidal time embedding (max period 10000) barely separates EDM's
``ln(σ)/4`` (cosine similarity 0.84 between σ = 0.002 and σ = 80); ``noise_scale · ln σ`` with
``noise_scale = 250`` spreads it over the embedding's range (cosine 0.01), see docs/theory.md §3.

Two skip modes:

- ``edm``: ``c_skip = σ_d²/(σ²+σ_d²)``, ``c_out = σ σ_d/√(σ²+σ_d²)``, the EDM choice. At small σ
  the output is ``≈ u + σ F``: whatever ``u`` lacks (the unmeasured part) must come from an
  output scaled by σ, which is hard to learn at small σ for corrupted inputs.
- ``ambient``: the same ``c_skip`` but ``c_out = σ_d`` at every σ, so the network can fill in
  unmeasured content at small σ with unit-scale outputs.

``ambient`` is the default: in the Gaussian theory test (``tests/training/test_theory.py``) it
comes within 1–3% of the Bayes-optimal MSE where ``edm`` stays 18–25% above it at equal steps.

The EDM loss weight is ``λ(σ) = 1 / c_out(σ)²`` in both modes (for ``edm`` it is EDM's
``(σ²+σ_d²)/(σ σ_d)²``), so the network's effective regression target has unit scale.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

__all__ = ["EDMPrecond", "SkipMode"]

SkipMode = Literal["edm", "ambient"]


class EDMPrecond(nn.Module):
    """EDM-preconditioned complex-image denoiser.

    Args:
        net: ``net(x, c_noise)`` with ``x`` real ``(B, 2 + cond_channels + 1, *S)`` and ``c_noise``
            1-D ``(B,)``, returning ``(B, 2, *S)``. MONAI's ``DiffusionModelUNet`` has exactly this
            call signature.
        sigma_data: the data standard deviation σ_d of the (normalised) images.
        noise_scale: ``c_noise = noise_scale · ln σ``.
        skip: ``"edm"`` or ``"ambient"`` (see the module docstring).
        cond_channels: number of mask channels the caller passes.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        sigma_data: float = 0.5,
        noise_scale: float = 250.0,
        skip: SkipMode = "ambient",
        cond_channels: int = 1,
    ) -> None:
        super().__init__()
        if skip not in ("edm", "ambient"):
            raise ValueError(f"skip must be 'edm' or 'ambient', got {skip!r}")
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.net = net
        self.sigma_data = float(sigma_data)
        self.noise_scale = float(noise_scale)
        self.skip = skip
        self.cond_channels = int(cond_channels)

    @property
    def in_channels(self) -> int:
        """Channels the inner network receives: Re, Im, the mask channels and a constant one."""
        return 2 + self.cond_channels + 1

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c_skip, c_out, c_in, c_noise)`` for a tensor of σ."""
        sd = self.sigma_data
        sigma = sigma.to(torch.float32)
        var = sigma**2 + sd**2
        c_skip = sd**2 / var
        c_out = sigma * sd / var.sqrt() if self.skip == "edm" else torch.full_like(sigma, sd)
        c_in = 1.0 / var.sqrt()
        c_noise = self.noise_scale * sigma.log()
        return c_skip, c_out, c_in, c_noise

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """``λ(σ) = 1 / c_out(σ)²``."""
        return 1.0 / self.coefficients(sigma)[1] ** 2

    def forward(self, u: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Denoise.

        Args:
            u: complex ``(B, *S)`` input image.
            cond: real ``(B, cond_channels, *S)`` (or ``(B, *S)`` for one channel) mask channel(s).
            sigma: ``(B,)`` noise levels (or a scalar).

        Returns:
            complex64 ``(B, *S)``: the denoised image ``D``.
        """
        if not u.is_complex():
            u = u.to(torch.complex64)
        b, spatial = u.shape[0], u.shape[1:]
        if cond.ndim == u.ndim:
            cond = cond.unsqueeze(1)
        if cond.shape[0] != b or cond.shape[2:] != spatial or cond.shape[1] != self.cond_channels:
            raise ValueError(
                f"EDMPrecond: cond must be ({b}, {self.cond_channels}, {', '.join(map(str, spatial))}), "
                f"got {tuple(cond.shape)}"
            )
        sigma = torch.as_tensor(sigma, device=u.device, dtype=torch.float32).reshape(-1).expand(b)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        view = (b,) + (1,) * len(spatial)
        x = torch.view_as_real(u.to(torch.complex64)).movedim(-1, 1) * c_in.reshape((b, 1, *view[1:]))
        ones = torch.ones((b, 1, *spatial), device=u.device, dtype=torch.float32)
        out = self.net(torch.cat([x, cond.to(torch.float32), ones], dim=1), c_noise).float()
        f = torch.view_as_complex(out.movedim(1, -1).contiguous())
        return c_skip.reshape(view) * u.to(torch.complex64) + c_out.reshape(view) * f

    def extra_repr(self) -> str:
        return f"sigma_data={self.sigma_data}, noise_scale={self.noise_scale}, skip={self.skip!r}"


def embedding_separation(noise_scale: float, sigma_a: float = 0.002, sigma_b: float = 80.0, dim: int = 128) -> float:
    """Cosine similarity of MONAI-style sinusoidal embeddings of ``noise_scale·ln σ`` at two σ."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)

    def emb(s: float) -> torch.Tensor:
        t = noise_scale * math.log(s) * freqs
        return torch.cat([torch.cos(t), torch.sin(t)])

    a, b = emb(sigma_a), emb(sigma_b)
    return float(a @ b / (a.norm() * b.norm()))
