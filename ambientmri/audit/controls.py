"""Positive controls for the memorization audit (no trained weights needed).

- :func:`empirical_optimal_denoiser`: the closed-form minimiser of the denoising loss on a finite
  training set, ``D(x, σ) = Σ_i softmax_i(−‖x − t_i‖² / 2σ²) t_i``. Sampled with any EDM sampler it
  converges onto training images: the textbook perfectly memorizing model.
- :func:`positive_control_samples`: its samples (Heun, EDM schedule).
- :func:`perturbed_copies`: training scans circularly shifted, flipped and slightly noisy.

An audit must flag nearly all of both; held-out real scans (the negative control) should be flagged
at about ``1 − q``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ambientmri.audit.similarity import as_images
from ambientmri.sampling.denoisers import Denoiser

__all__ = ["empirical_optimal_denoiser", "perturbed_copies", "positive_control_samples"]


def empirical_optimal_denoiser(train_images: Any, *, chunk: int = 4096) -> Denoiser:
    """The exact posterior mean ``E[x0 | x0 + σ n]`` when ``x0`` is uniform over the training images.

    ``D(x, σ) = Σ_i w_i t_i`` with ``w = softmax(−‖x − t_i‖² / 2σ²)``, computed in float64 with a
    log-sum-exp (stable at any ``σ``). ``‖·‖²`` sums squared real and imaginary parts, matching the
    samplers' complex noise (independent ``N(0, σ²)`` real and imaginary parts).

    Args:
        train_images: ``(N, H, W)`` real or complex training images.
        chunk: training images per block of the distance computation (memory ``B · chunk``).

    Returns:
        ``D(x, sigma)``: ``x`` ``(B, H, W)`` (or any ``(B, *S)`` with ``H·W`` entries), ``sigma`` a
        scalar or ``(B,)`` tensor; returns ``x̂0`` shaped and typed like ``x``.
    """
    t = as_images(train_images)
    n = t.shape[0]
    if n == 0:
        raise ValueError("the empirical optimal denoiser needs at least one training image")
    flat = t.reshape(n, -1).to(torch.complex128)
    sq = (flat.abs() ** 2).sum(dim=1)  # (N,)

    def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        xf = x.reshape(b, -1).to(torch.complex128)
        tf = flat.to(x.device)
        s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1).expand(b)
        xsq = (xf.abs() ** 2).sum(dim=1)
        logits = []
        for c in range(0, n, chunk):
            cross = (xf @ tf[c : c + chunk].conj().T).real  # Re⟨t_i, x⟩
            d2 = (xsq[:, None] - 2.0 * cross + sq[c : c + chunk].to(x.device)[None, :]).clamp_min(0.0)
            logits.append(-d2 / (2.0 * s[:, None] ** 2))
        lg = torch.cat(logits, dim=1)
        w = torch.exp(lg - torch.logsumexp(lg, dim=1, keepdim=True))  # (B, N)
        out = w.to(torch.complex128) @ tf
        out = out.reshape(x.shape)
        return out.to(x.dtype) if x.is_complex() else out.real.to(x.dtype)

    return D


def positive_control_samples(
    train_images: Any,
    num: int,
    *,
    steps: int = 18,
    seed: int = 0,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Samples of the empirical optimal denoiser (Heun, EDM schedule): near-copies of training images.

    Noise comes from a ``torch.Generator`` seeded with ``seed`` (never the global RNG); complex
    training images get complex noise, real ones real noise.

    Args:
        train_images: ``(N, H, W)`` training images.
        num: number of samples.
        steps: sampler steps (Heun: ``2·steps − 1`` denoiser evaluations).
        seed: the sampler's seed.
        sigma_min, sigma_max, rho: :func:`~ambientmri.sampling.schedules.edm_sigmas`.
        device: where to sample.

    Returns:
        ``(num, H, W)`` numpy array (complex64 for complex training images, like ``samples.npy``).
    """
    from ambientmri.sampling.samplers import heun_sample, initial_noise
    from ambientmri.sampling.schedules import edm_sigmas

    t = as_images(train_images, device=device)
    dtype = torch.complex64 if t.is_complex() else torch.float32
    D = empirical_optimal_denoiser(t)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    x0 = initial_noise((int(num), *t.shape[-2:]), sigma_max, gen, dtype=dtype, device=device)
    sigmas = edm_sigmas(steps, sigma_min, sigma_max, rho)
    return heun_sample(D, x0, sigmas).x.cpu().numpy()


def perturbed_copies(
    train_images: Any,
    num: int,
    *,
    seed: int = 0,
    max_shift: int = 4,
    flip_prob: float = 0.5,
    noise: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """Training scans circularly shifted, flipped left-right and slightly noisy (a positive control).

    Each copy picks a training scan uniformly, a circular shift in ``[−max_shift, max_shift]`` per
    axis, a flip with probability ``flip_prob``, and adds Gaussian noise (complex for complex images)
    with standard deviation ``noise`` times the scan's RMS magnitude. All draws come from
    ``numpy.random.default_rng(seed)``.

    Returns:
        ``(copies, sources)``: ``(num, H, W)`` images (the input's dtype, numpy) and ``(num,)`` the
        index of the training scan each was made from.
    """
    t = as_images(train_images).detach().cpu().numpy()
    rng = np.random.default_rng(seed)
    n = t.shape[0]
    sources = rng.integers(0, n, size=int(num))
    out = np.empty((int(num), *t.shape[1:]), dtype=t.dtype)
    for j, i in enumerate(sources):
        img = np.roll(t[i], tuple(int(v) for v in rng.integers(-max_shift, max_shift + 1, size=2)), axis=(0, 1))
        if rng.random() < flip_prob:
            img = img[:, ::-1]
        rms = float(np.sqrt(np.mean(np.abs(img) ** 2)))
        eps = rng.normal(size=img.shape)
        if np.iscomplexobj(img):
            eps = (eps + 1j * rng.normal(size=img.shape)) / np.sqrt(2.0)
        out[j] = img + noise * rms * eps
    return out, sources.astype(np.int64)
