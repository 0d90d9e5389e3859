"""Unconditional generation from a trained run, with Ambient Diffusion's fixed-Ã sampling.

**Ambient sampling (Daras et al. 2023).** An ambient model estimates ``E[x0 | Ã x_t, Ã]``, not
``E[x0 | x_t]``. To sample, draw ONE further corruption ``Ã`` per sample from the run's
further-corruption distribution (``A`` from ``corruption.sample_mask``, then ``Ã ⊆ A`` from
``corruption.further_mask``) and keep it fixed for the whole trajectory:
``D(x, σ) = h_θ(Ãᴴ Ã x, M̃, σ)``. For generation there are no measurements and no coil maps, so a
k-space corruption acts through its single-coil transform (``Ã = M̃ F``: the network sees only the
k-space lines ``M̃`` keeps of the coil-combined image); image-domain corruptions are ``Ã = M̃``.

**Reconstruction guidance (optional, default off).** With ``K`` extra masks ``Ã_1 … Ã_K`` drawn
the same way, each step also moves against ``∇_x ½ Σ_j ‖D_0(x) − D_j(x)‖²`` (autograd through the
network), weighted by ``w``: :class:`ReconstructionGuidance`. This pulls the trajectory towards
images on which the estimates from different subsets of measurements agree.

**Seeds.** Everything random about sample ``i`` of a call with ``seed`` derives from
``(seed, i)`` through :func:`~ambientmri.utils.stable_seed`: its initial and churn noise come from
its own :class:`torch.Generator` and its masks from seeded numpy generators. The same seed therefore
gives the same samples whatever the batch size, and torch's and numpy's global RNGs are untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ambientmri.models.objectives import get_objective
from ambientmri.operators.corruptions import Corruption
from ambientmri.operators.linear import MaskedOperator
from ambientmri.sampling.denoisers import Denoiser, ambient_denoiser, clean_denoiser
from ambientmri.sampling.runs import LoadedRun
from ambientmri.sampling.samplers import SampleResult, euler_sample, heun_sample, initial_noise
from ambientmri.sampling.schedules import edm_sigmas
from ambientmri.utils import further_key_seed, stable_seed

__all__ = [
    "SAMPLERS",
    "ReconstructionGuidance",
    "SampleResult",
    "ambient_generation_denoiser",
    "generate",
    "generate_result",
    "generation_masks",
    "generation_operator",
    "guided_generation_denoiser",
    "noise_generator",
]

SAMPLERS: dict[str, Callable[..., SampleResult]] = {"heun": heun_sample, "euler": euler_sample}


def _indices(batch: int | Sequence[int]) -> list[int]:
    if isinstance(batch, int) and not isinstance(batch, bool):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        return list(range(batch))
    idx = [int(i) for i in batch]
    if not idx:
        raise ValueError("batch must hold at least one sample index")
    return idx


def noise_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of sample ``index``'s noise in a :func:`generate` call with ``seed``."""
    return torch.Generator().manual_seed(stable_seed("generate", "noise", int(seed), int(index)))


def _grid(corruption: Corruption, image_shape: Sequence[int]) -> tuple[int, ...]:
    if corruption.domain == "vector":
        return (int(corruption.m),)  # type: ignore[attr-defined]
    return tuple(int(s) for s in image_shape)


def generation_masks(
    corruption: Corruption,
    image_shape: Sequence[int],
    *,
    seed: int,
    batch: int | Sequence[int],
    mask_index: int = 0,
) -> np.ndarray:
    """The further masks ``M̃`` of a batch, one per sample, stacked: ``(B, *mask_shape)`` uint8.

    For sample ``i``: ``A``'s mask from ``stable_seed("generate", seed, i, mask_index, "A")``, then
    ``Ã``'s from ``stable_seed(..., "further")``. ``mask_index`` 0 is the sampling mask, 1… are the
    guidance masks.

    Args:
        batch: the number of samples (indices ``0 … batch−1``) or their indices.
    """
    grid = _grid(corruption, image_shape)
    out = []
    for i in _indices(batch):
        a = corruption.sample_mask(grid, stable_seed("generate", int(seed), i, int(mask_index), "A") % 2**32)
        f = corruption.further_mask(a, further_key_seed("generate", int(seed), i, int(mask_index))[0])
        out.append(np.asarray(f, dtype=np.uint8))
    return np.stack(out)


def generation_operator(
    corruption: Corruption,
    image_shape: Sequence[int],
    *,
    seed: int,
    batch: int | Sequence[int],
    mask_index: int = 0,
    device: torch.device | str = "cpu",
) -> MaskedOperator:
    """``Ã`` of a batch (batched masks) for generation: ``M̃`` (image domain), ``M̃ F`` (k-space,
    single-coil transform, no coil maps) or ``diag(M̃) G`` (Gaussian, ``G`` drawn per sample).

    Arguments as :func:`generation_masks`.
    """
    idx = _indices(batch)
    masks = torch.from_numpy(generation_masks(corruption, image_shape, seed=seed, batch=idx, mask_index=mask_index))
    masks = masks.to(device=device, dtype=torch.float32)
    grid = _grid(corruption, image_shape)
    if corruption.domain == "vector":
        n = math.prod(int(s) for s in image_shape)
        mats = [
            corruption.matrix(n, stable_seed("generate", int(seed), i, int(mask_index), "matrix") % 2**32)  # type: ignore[attr-defined]
            for i in idx
        ]
        matrix = torch.from_numpy(np.stack(mats)).to(device)
        return corruption.operator(masks, grid, matrix=matrix)
    return corruption.operator(masks, grid)


def ambient_generation_denoiser(
    model: nn.Module,
    corruption: Corruption,
    image_shape: Sequence[int],
    *,
    seed: int,
    batch: int | Sequence[int],
    device: torch.device | str = "cpu",
    mask_index: int = 0,
) -> Denoiser:
    """The ambient denoiser of a batch with ONE ``Ã`` per sample, fixed for the whole trajectory.

    Args:
        model: the run's preconditioned network (``LoadedRun.model``).
        corruption: the run's corruption family (``LoadedRun.corruption``).
        image_shape: the network's image shape.
        seed: the generation seed.
        batch: the number of samples (indices ``0 … batch−1``) or their sample indices.
        device: where the masks live (the model's device).
        mask_index: which of the sample's masks (0: the sampling mask; 1…: guidance masks).

    Returns:
        ``D(x, σ) = h_θ(Ãᴴ Ã x, M̃, σ)`` for ``x`` ``(B, *image_shape)`` with ``B = len(batch)``.
    """
    op = generation_operator(corruption, image_shape, seed=seed, batch=batch, mask_index=mask_index, device=device)
    return ambient_denoiser(model, op, image_shape)


class ReconstructionGuidance:
    """Reconstruction guidance over denoisers ``D_0, D_1 … D_K`` (Daras et al. 2023).

    As a plain denoiser it returns ``D_0(x, σ)``. The samplers call
    :meth:`denoise_with_guidance`, which also returns the correction
    ``c = w ∇_x ½ Σ_{j≥1} ‖D_0(x, σ) − D_j(x, σ)‖²`` (summed over pixels, per sample; autograd
    through every ``D_j``); each sampler step subtracts it from its displacement, as the reference
    sampler does (so its effect per step does not scale with the step size). Costs ``K + 1``
    forward passes and one backward pass per evaluation.

    Args:
        denoisers: ``[D_0, D_1, …, D_K]``; ``D_0`` is the one the trajectory follows.
        weight: ``w >= 0``.
    """

    def __init__(self, denoisers: Sequence[Denoiser], weight: float) -> None:
        if len(denoisers) < 1:
            raise ValueError("ReconstructionGuidance needs at least one denoiser")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"guidance weight must be a finite number >= 0, got {weight!r}")
        self.denoisers = list(denoisers)
        self.weight = float(weight)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``D_0(x, σ)``, unguided."""
        return self.denoisers[0](x, sigma)

    def loss(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D_0(x, σ), ½ Σ_j ‖D_0 − D_j‖²)``: the estimate and the per-sample disagreement ``(B,)``."""
        outs = [D(x, sigma) for D in self.denoisers]
        d0 = outs[0]
        b = x.shape[0]
        total = torch.zeros(b, dtype=torch.float64, device=x.device)
        for dj in outs[1:]:
            total = total + 0.5 * (d0 - dj).abs().square().reshape(b, -1).sum(1).to(torch.float64)
        return d0, total

    def denoise_with_guidance(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D_0(x, σ), w ∇_x ½ Σ_j ‖D_0 − D_j‖²)``."""
        if self.weight == 0 or len(self.denoisers) == 1:
            with torch.no_grad():
                d0 = self.denoisers[0](x, sigma)
            return d0, torch.zeros_like(x)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            d0, per_sample = self.loss(xg, sigma)
            (grad,) = torch.autograd.grad(per_sample.sum(), xg)
        return d0.detach(), self.weight * grad.to(x.dtype)


def guided_generation_denoiser(
    model: nn.Module,
    corruption: Corruption,
    image_shape: Sequence[int],
    *,
    seed: int,
    batch: int | Sequence[int],
    guidance_masks: int,
    weight: float,
    device: torch.device | str = "cpu",
) -> ReconstructionGuidance:
    """:class:`ReconstructionGuidance` over the sampling mask (``mask_index`` 0, the same ``Ã`` as
    :func:`ambient_generation_denoiser`) and ``guidance_masks`` extra masks (indices 1…K)."""
    if guidance_masks < 0:
        raise ValueError(f"guidance_masks must be >= 0, got {guidance_masks}")
    denoisers = [
        ambient_generation_denoiser(
            model, corruption, image_shape, seed=seed, batch=batch, device=device, mask_index=j
        )
        for j in range(int(guidance_masks) + 1)
    ]
    return ReconstructionGuidance(denoisers, weight)


def _model_device(model: nn.Module) -> torch.device | None:
    p = next(iter(model.parameters()), None)
    return None if p is None else p.device


def _check_generate_args(run: LoadedRun, num: Any, batch_size: Any, sampler: str, guidance_weight: float,
                         guidance_masks: Any) -> None:
    """One line for each bad argument of :func:`generate_result`."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be an integer >= 1, got {num!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    if not math.isfinite(guidance_weight) or guidance_weight < 0:
        raise ValueError(f"guidance_weight must be a finite number >= 0, got {guidance_weight!r}")
    if isinstance(guidance_masks, bool) or not isinstance(guidance_masks, int) or guidance_masks < 0:
        raise ValueError(f"guidance_masks must be an integer >= 0, got {guidance_masks!r}")
    ambient = get_objective(run.objective).sees_further
    guided = guidance_weight > 0
    if guided and not ambient:
        raise ValueError(f"reconstruction guidance needs an ambient run; this run's objective is {run.objective}")
    if guided and guidance_masks == 0:
        raise ValueError("guidance_weight > 0 needs guidance_masks >= 1 (the extra masks to compare with)")


def generate(run: LoadedRun, num: int, **kwargs: Any) -> torch.Tensor:
    """Draw ``num`` unconditional samples from a trained run: :func:`generate_result`'s samples alone
    (same keyword arguments)."""
    return generate_result(run, num, **kwargs).x


def generate_result(
    run: LoadedRun,
    num: int,
    *,
    steps: int = 18,
    sampler: str = "heun",
    seed: int = 0,
    batch_size: int = 8,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    guidance_weight: float = 0.0,
    guidance_masks: int = 0,
    device: torch.device | str = "cpu",
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Draw ``num`` unconditional samples from a trained run, with the network evaluations they took.

    Ambient runs sample with one fixed ``Ã`` per sample (:func:`ambient_generation_denoiser`),
    optionally with reconstruction guidance; clean and naive runs with the plain denoiser (mask of
    ones). Sample ``i`` depends only on ``(seed, i)`` and the settings, not on ``batch_size``.

    Args:
        run: from :func:`~ambientmri.sampling.runs.load_run`. Its model is moved to ``device``.
        num: number of samples (>= 1).
        steps: sampler steps ``N`` (Heun: ``2N − 1`` network evaluations).
        sampler: ``"heun"`` or ``"euler"``.
        seed: the generation seed.
        batch_size: samples per network batch (memory only; the samples do not depend on it).
        sigma_min, sigma_max, rho: the EDM schedule (:func:`~ambientmri.sampling.schedules.edm_sigmas`).
        churn, s_tmin, s_tmax, s_noise: EDM's stochastic churn (0: deterministic ODE sampler).
        guidance_weight: reconstruction-guidance weight ``w`` (0: off). Ambient runs only.
        guidance_masks: number ``K`` of extra masks for guidance (needed when ``w > 0``).
        device: where the network runs.
        callback: ``callback(done, total)`` after every sampler step, counted over all batches
            (``total = number of batches × steps``).

    Returns:
        :class:`~ambientmri.sampling.samplers.SampleResult`: ``x``, complex64 ``(num, *image_shape)``
        on the CPU in the units of the training data (the per-slice normalisation of the store), and
        ``nfe``, the network evaluations per sample (Heun: ``2·steps − 1``).

    Raises:
        ValueError: a bad argument (one line).
    """
    _check_generate_args(run, num, batch_size, sampler, guidance_weight, guidance_masks)
    ambient = get_objective(run.objective).sees_further
    guided = guidance_weight > 0
    sigmas = edm_sigmas(steps, sigma_min, sigma_max, rho)
    sample_fn = SAMPLERS[sampler]
    real = getattr(run.recipe.training, "noise", "complex") == "real"
    device = torch.device(device)
    model = run.model
    if _model_device(model) not in (None, device):
        model = model.to(device)
    image_shape = tuple(run.image_shape)
    corruption = run.corruption if ambient else None
    starts = list(range(0, num, batch_size))
    total = len(starts) * steps
    out = torch.empty((num, *image_shape), dtype=torch.complex64)
    nfe = 0
    for k, start in enumerate(starts):
        idx = list(range(start, min(start + batch_size, num)))
        gens = [noise_generator(seed, i) for i in idx]
        x_init = initial_noise((len(idx), *image_shape), sigma_max, gens, real, device=device)
        if corruption is None:
            D: Denoiser = clean_denoiser(model, image_shape)
        elif guided:
            D = guided_generation_denoiser(
                model, corruption, image_shape, seed=seed, batch=idx, guidance_masks=guidance_masks,
                weight=guidance_weight, device=device,
            )
        else:
            D = ambient_generation_denoiser(model, corruption, image_shape, seed=seed, batch=idx, device=device)

        def step_cb(i: int, n: int, sigma: float, x: torch.Tensor, _k: int = k) -> None:
            if callback is not None:
                callback(_k * steps + i + 1, total)

        result = sample_fn(
            D, x_init, sigmas, churn=churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise,
            generator=gens, callback=step_cb, real=real,
        )
        out[start : start + len(idx)] = result.x.detach().to("cpu", torch.complex64)
        nfe = result.nfe
    return SampleResult(out, nfe)
