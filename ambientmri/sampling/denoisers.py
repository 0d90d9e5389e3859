"""Denoiser closures ``D(x, σ) -> x̂0`` over complex images, the common currency of every sampler.

A sampler never needs to know how a denoiser was trained: it calls ``D(x, sigma)`` with ``x``
complex ``(B, *S)`` and ``sigma`` a ``(B,)`` float tensor and gets ``x̂0`` of the same shape.

- :func:`clean_denoiser`: a model trained on full images (``clean`` or ``naive`` objective), mask of
  ones: ``E[x0 | x_t]``.
- :func:`ambient_denoiser`: an ambient model with ONE further corruption ``Ã`` kept for the whole
  trajectory (Daras et al. 2023): ``D(x, σ) = h_θ(Ãᴴ Ã x, M̃, σ) ≈ E[x0 | Ã x_t, Ã]``.
- :func:`gaussian_denoiser`: the exact posterior mean under a Gaussian prior ``N(μ, Σ)`` (tests),
  optionally seeing only ``Ã x_t``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ambientmri.models.boundary import denoise, full_operator, network_input
from ambientmri.operators.linear import MaskedOperator

__all__ = ["Denoiser", "ambient_denoiser", "clean_denoiser", "full_operator", "gaussian_denoiser"]

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _sigma(sigma: torch.Tensor | float, b: int, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(sigma, dtype=torch.float32, device=device).reshape(-1).expand(b)


def clean_denoiser(model: nn.Module, image_shape: Sequence[int]) -> Denoiser:
    """``D(x, σ) = h_θ(x, 1, σ)`` for a model trained on (what it took for) clean images."""
    shape = tuple(image_shape)

    def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        op = full_operator(shape, x.device)
        return denoise(model, x, op, _sigma(sigma, x.shape[0], x.device), shape)

    return D


def ambient_denoiser(model: nn.Module, further: MaskedOperator, image_shape: Sequence[int]) -> Denoiser:
    """``D(x, σ) = h_θ(Ãᴴ Ã x, M̃, σ)`` with ``Ã = further`` fixed (batched masks allowed)."""
    shape = tuple(image_shape)

    def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        u = network_input(further, x)
        return denoise(model, u, further, _sigma(sigma, b, x.device), shape).reshape(x.shape)

    return D


def gaussian_denoiser(
    mean: torch.Tensor, cov: torch.Tensor, keep: torch.Tensor | None = None
) -> Denoiser:
    """Exact ``E[x0 | P(x0 + σ n)]`` for ``x0 ~ N(mean, cov)`` over real vectors of length d.

    Args:
        mean: ``(d,)``.
        cov: ``(d, d)`` symmetric positive definite.
        keep: optional 0/1 ``(d,)`` or ``(B, d)`` mask ``P`` of observed coordinates (all if None).

    The denoiser takes ``x`` complex or real ``(B, d)`` (the real part is used) and returns complex.
    """
    mean = mean.to(torch.float64)
    cov = cov.to(torch.float64)
    d = mean.shape[0]

    def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        xr = (x.real if x.is_complex() else x).to(torch.float64).reshape(-1, d)
        b = xr.shape[0]
        s = _sigma(sigma, b, x.device).to(torch.float64)
        m = torch.ones(b, d, dtype=torch.float64) if keep is None else keep.to(torch.float64).expand(b, d)
        out = torch.empty_like(xr)
        for i in range(b):
            idx = m[i].bool()
            c_oo = cov[idx][:, idx] + s[i] ** 2 * torch.eye(int(idx.sum()), dtype=torch.float64)
            gain = cov[:, idx] @ torch.linalg.inv(c_oo)
            out[i] = mean + gain @ (xr[i, idx] - mean[idx])
        return out.to(torch.float32).to(torch.complex64).reshape(x.shape)

    return D
