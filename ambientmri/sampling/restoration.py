"""Posterior-sampling and one-step restoration of corrupted scans.

Every method takes a batch of slices ``y (B, *A.out_shape)`` (measurements zero-filled on the full
grid, as the corrupted store keeps them) and its operator ``A`` (a
:class:`~ambientmri.operators.linear.MaskedOperator`, batched masks and coil maps allowed) and
returns a :class:`Restoration`: complex64 images ``(B, *image_shape)``, the number of network
evaluations per slice (NFE) and, for several posterior samples, a per-pixel standard deviation.

- :func:`a_os` (NFE 1): the ambient model once, on ``Aᴴ y`` with ``A``'s own mask as condition.
- :func:`a_dps` (NFE ``steps × num_samples``): posterior sampling with the ambient model and one
  fixed training-type further corruption ``Ã`` per slice.
- :func:`dps` (NFE ``steps``): diffusion posterior sampling with any
  :data:`~ambientmri.sampling.denoisers.Denoiser` (a clean-trained model).
- :func:`ddrm` (NFE ``steps``): DDRM with any Denoiser, for ``A`` with a closed-form SVD.

The classical baselines (zero-filled, CG-SENSE, L1-wavelet) are in
:mod:`ambientmri.sampling.classical`.

Noise convention: complex images carry complex noise with independent ``N(0, σ²)`` real and
imaginary parts, as in training (``noise: complex``). All randomness comes from the ``generator``
argument, one generator or one per slice (a fresh one seeded with 0 when omitted); the global RNGs
are never touched.

Schedules: :func:`~ambientmri.sampling.schedules.edm_sigmas`, the EDM discretisation
``σ_i = (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`` for ``i < N`` and ``σ_N = 0``
(Karras et al. 2022). Callbacks follow :mod:`~ambientmri.sampling.samplers`:
``callback(i, total, sigma, x)`` after step ``i``, ``sigma`` the noise level of ``x`` now.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from ambientmri.models.boundary import denoise
from ambientmri.operators.base import Identity, LinearOperator
from ambientmri.operators.fft import fft2c, ifft2c
from ambientmri.operators.linear import FFT2, MaskedOperator
from ambientmri.sampling.denoisers import Denoiser, ambient_denoiser
from ambientmri.sampling.methods import A_OS_SIGMA, ADPSConfig, DDRMConfig, DPSConfig
from ambientmri.sampling.samplers import Callback, GeneratorLike, initial_noise, noise_like
from ambientmri.sampling.schedules import edm_sigmas

__all__ = [
    "A_OS_SIGMA",
    "Restoration",
    "a_dps",
    "a_os",
    "check_measurements",
    "ddrm",
    "dps",
    "finish_restoration",
    "further_masks_for",
    "restoration_shape",
    "svd_basis",
]

#: Default noise level told to the network in :func:`a_os`, see its docstring.


class Restoration(NamedTuple):
    """A batch of reconstructions.

    Attributes:
        x: complex64 ``(B, *image_shape)``: the reconstruction (the mean of the posterior samples
            when several were drawn).
        nfe: network evaluations per slice (0 for classical methods).
        std: float32 ``(B, *image_shape)`` per-pixel standard deviation of the complex posterior
            samples (``sqrt(Σ_k |x_k − x̄|² / (K − 1))``), or ``None`` for a single sample.
    """

    x: torch.Tensor
    nfe: int
    std: torch.Tensor | None = None


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _edm_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    """EDM noise levels ``σ_0 > … > σ_{N−1}`` followed by ``σ_N = 0`` (``N + 1`` floats)."""
    return [float(v) for v in edm_sigmas(steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)]


def _generator(generator: GeneratorLike | None, device: torch.device) -> GeneratorLike:
    """The caller's generator(s), or a fresh one seeded with 0 (never the global RNG)."""
    return generator if generator is not None else torch.Generator(device=device).manual_seed(0)


def _view(b: int, ndim: int) -> tuple[int, ...]:
    return (b,) + (1,) * (ndim - 1)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode (no dropout: no hidden randomness) and restore its mode after."""
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        yield
    finally:
        if isinstance(model, nn.Module) and was_training:
            model.train()


def check_measurements(y: torch.Tensor, A: MaskedOperator) -> int:
    """The batch size of ``y`` ``(B, *A.out_shape)``, complex; raises if ``y`` does not fit ``A``."""
    if not isinstance(A, MaskedOperator):
        raise TypeError(f"A must be a MaskedOperator, got {type(A).__name__}")
    n = len(A.out_shape)
    if y.ndim != n + 1 or tuple(y.shape[1:]) != A.out_shape:
        raise ValueError(f"y must be (B, {', '.join(map(str, A.out_shape))}), got {tuple(y.shape)}")
    return int(y.shape[0])


def restoration_shape(A: MaskedOperator, image_shape: Sequence[int] | None) -> tuple[int, ...]:
    """The image shape a restoration returns: ``image_shape`` (default ``A.in_shape``), checked to hold A's input."""
    shape = tuple(int(s) for s in (image_shape or A.in_shape))
    if math.prod(shape) != math.prod(A.in_shape):
        raise ValueError(f"image_shape {shape} does not hold A's input {A.in_shape}")
    return shape


def finish_restoration(x: torch.Tensor, b: int, shape: tuple[int, ...]) -> torch.Tensor:
    """``x`` detached as a complex64 ``(b, *shape)`` batch of images."""
    return x.detach().reshape(b, *shape).to(torch.complex64)


def _residual_grad(
    x: torch.Tensor, x0: torch.Tensor, y: torch.Tensor, A: MaskedOperator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∇_x ‖y − A x̂0(x)‖², ‖y − A x̂0‖)`` per slice; ``x̂0`` must depend on ``x`` through autograd.

    The slices of a batch are independent, so the gradient of the summed squared norms is the
    per-slice gradient.
    """
    b = x.shape[0]
    r = y - A.forward(x0)
    sse = r.abs().square().reshape(b, -1).sum(1)
    (grad,) = torch.autograd.grad(sse.sum(), x)
    return grad, sse.detach().sqrt()


def _safe_div(grad: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """``grad / norm`` per slice; zero where the residual vanishes (data already consistent)."""
    view = _view(grad.shape[0], grad.ndim)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    return torch.where(norm.reshape(view) > 0, grad / safe.reshape(view).to(grad.real.dtype), torch.zeros_like(grad))


def _dc_displacement(grad: torch.Tensor, norm: torch.Tensor, size: float, mode: str) -> torch.Tensor:
    """The data-consistency step subtracted from ``x``, from ``grad = ∇_x ‖r‖²`` and ``norm = ‖r‖``.

    ``relative``: ``size · ∇_x ½‖r‖²``, a fraction ``size`` of the least-squares step (with ``x̂0 ≈ x``
    and a masked orthonormal FFT, ``size = 1`` makes ``x̂0`` consistent with ``y`` in one step);
    its length scales with the residual, so it means the same at every image size, intensity scale
    and coil count. ``fixed``: ``size · ∇_x ‖r‖``, of length about ``size`` whatever the residual.
    """
    if mode == "relative":
        g = 0.5 * grad  # ∇_x ½‖r‖²
        view = _view(g.shape[0], g.ndim)
        g2 = g.abs().square().reshape(g.shape[0], -1).sum(1)
        # Polyak's step ‖r‖² / ‖g‖² where the denoiser amplifies (‖g‖ > ‖r‖): never past the point
        # where the linearised residual vanishes; 1 elsewhere (the plain least-squares step)
        factor = torch.where(g2 > norm.square(), norm.square() / g2.clamp_min(1e-30), torch.ones_like(g2))
        return (size * factor).reshape(view).to(g.real.dtype) * g
    if mode == "fixed":
        return (0.5 * size) * _safe_div(grad, norm)
    raise ValueError(f"dc_step must be 'relative' or 'fixed', got {mode!r}")


def _sigma_tensor(sigma: float, b: int, device: torch.device) -> torch.Tensor:
    return torch.full((b,), float(sigma), dtype=torch.float32, device=device)


def consistency_energies(y: torch.Tensor, A: MaskedOperator, x: torch.Tensor) -> np.ndarray:
    """``[Σ‖y − A x̂‖², Σ‖y − A Aᴴy‖², Σ‖y‖²]`` over a batch: how well a reconstruction ``x̂``
    (``B`` images holding ``A``'s input) explains its measurements, beside zero-filled's ``Aᴴy`` (exactly consistent
    for single-coil and image-domain masks; for SENSE up to the coil model's error)."""
    b = check_measurements(y, A)
    with torch.no_grad():
        x = x.reshape(b, *A.in_shape).to(y.dtype)
        r = (y - A.forward(x)).abs().square().sum()
        r_zf = (y - A.forward(A.adjoint(y))).abs().square().sum()
        energy = y.abs().square().sum()
    return np.array([float(r), float(r_zf), float(energy)])


# ------------------------------------------------------------------------------------------------
# A-OS
# ------------------------------------------------------------------------------------------------
def a_os(
    model: nn.Module,
    y: torch.Tensor,
    A: MaskedOperator,
    *,
    sigma: float = A_OS_SIGMA,
    image_shape: Sequence[int] | None = None,
    further_masks: torch.Tensor | None = None,
) -> Restoration:
    """Ambient One-Step (Aali et al. 2025): ``x̂ = h_θ(Aᴴ y, M, σ)``. NFE 1.

    One evaluation of the ambient model on the scan's own zero-filled image ``Aᴴ y`` with the scan's
    own mask ``M`` as the condition, told the noise level ``σ``; the denoiser's output is read as the
    reconstruction (an estimate of ``E[x0 | A x0 + σ A n, A]``, which tends to the posterior mean
    ``E[x0 | y]`` as ``σ → 0`` for an exact denoiser).

    Choice of ``σ`` (default :data:`A_OS_SIGMA` = 0.1, to be tuned on validation data): upstream
    uses ``σ = 0.003``, but training draws ``ln σ ~ N(−1.2, 1.2²)``, so 0.003 lies about 4 standard
    deviations below the training distribution where the network is barely trained, and with
    ``skip: edm`` preconditioning ``c_out ≈ σ`` passes the zero-filled input through almost
    unchanged (docs/training.md, measured +0.1 dB over zero-filled at 0.003 and +2.5 dB at 0.1 for the
    same small model). ``σ = 0.1`` is within one standard deviation of the training median
    (``e^{−1.2} ≈ 0.3``) and, for images normalised to magnitude ~1, small enough that the extra
    smoothing of measured content (the input carries no actual noise) stays minor.

    Args:
        model: an ambient :class:`~ambientmri.models.EDMPrecond` (switched to eval mode for the call).
        y: measurements ``(B, *A.out_shape)``.
        A: the scans' operators.
        sigma: the noise level the network is told.
        image_shape: the network's image shape (default ``A.in_shape``).
        further_masks: feed a training-type ``Ã ⊆ A`` instead (``h_θ(Ãᴴ M̃ y, M̃, σ)``): the
            input distribution the network was trained on, at the price of the measurements
            ``Ã`` drops. Default None: the measured mask, as the MRI reference code does.
    """
    b = check_measurements(y, A)
    shape = restoration_shape(A, image_shape)
    if sigma <= 0:
        raise ValueError(f"a_os: sigma must be positive, got {sigma}")
    op = A
    if further_masks is not None:
        mt = torch.as_tensor(further_masks, device=y.device).to(torch.float32)
        op = A.restrict(torch.minimum(mt, torch.broadcast_to(A.mask.to(torch.float32), mt.shape)))
    u = op.adjoint(op.apply_mask(y))
    with torch.no_grad(), _eval_mode(model):
        x = denoise(model, u, op, _sigma_tensor(sigma, b, y.device), shape)
    return Restoration(finish_restoration(x, b, shape), 1)


# ------------------------------------------------------------------------------------------------
# A-DPS
# ------------------------------------------------------------------------------------------------
def further_masks_for(
    corruption: object,
    seeds: Sequence[int | Sequence[int]],
    *,
    grid: Sequence[int] | None = None,
    base_masks: Sequence[np.ndarray] | None = None,
) -> torch.Tensor:
    """One training-type further mask ``M̃`` per slice, stacked ``(B, *mask_shape)`` float32.

    With ``base_masks`` (e.g. each scan's own mask ``M``) ``M̃ = corruption.further_mask(M_b, seed_b)``
    (so ``Ã ⊆ A``); otherwise a fresh training mask is drawn on ``grid`` from ``seed_b`` and then
    further corrupted, which is what the model saw in training whatever the test acceleration.

    Args:
        corruption: an :class:`~ambientmri.operators.corruptions.Corruption`.
        seeds: one seed per slice.
        grid: the sampling grid, needed without ``base_masks``.
        base_masks: compact masks ``M_b`` (as ``corruption.sample_mask`` returns them).
    """
    masks = []
    for i, seed in enumerate(seeds):
        if base_masks is not None:
            base = np.asarray(base_masks[i])
        else:
            if grid is None:
                raise ValueError("further_masks_for: pass grid or base_masks")
            base = corruption.sample_mask(tuple(grid), seed)  # type: ignore[attr-defined]
        further_seed = (*seed, 1) if isinstance(seed, Sequence) else (int(seed), 1)
        masks.append(np.asarray(corruption.further_mask(base, further_seed), dtype=np.float32))  # type: ignore[attr-defined]
    return torch.from_numpy(np.stack(masks))


def a_dps(
    model: nn.Module,
    y: torch.Tensor,
    A: MaskedOperator,
    further_masks: torch.Tensor,
    *,
    steps: int = ADPSConfig.steps,
    sigma_max: float = 10.0,
    sigma_min: float = 0.004,
    rho: float = 7.0,
    l_ss: float = ADPSConfig.l_ss,
    num_samples: int = ADPSConfig.num_samples,
    dc_step: Literal["relative", "fixed"] = ADPSConfig.dc_step,  # type: ignore[assignment]
    generator: GeneratorLike | None = None,
    callback: Callback | None = None,
    image_shape: Sequence[int] | None = None,
) -> Restoration:
    """Ambient diffusion posterior sampling (A-DPS, Aali et al. 2025). NFE ``steps × num_samples``.

    The denoiser is the ambient model with ONE further corruption ``Ã = M̃ · T`` per slice, fixed for
    the whole trajectory: ``D(x, t) = h_θ(Ãᴴ Ã x, M̃, t) ≈ E[x0 | Ã x_t, Ã]``. From
    ``x_0 ~ N(0, σ_max² I)`` (complex), Euler steps on the EDM schedule with a normalised
    data-consistency step (gradient through the network by autograd)::

        D = D(x, t_i)
        x ← x + (t_{i+1} − t_i)(x − D)/t_i − l_ss · ∇_x ‖y − A D‖² / ‖y − A D‖     (dc_step fixed)
        x ← x + (t_{i+1} − t_i)(x − D)/t_i − l_ss · ∇_x ½‖y − A D‖²                 (dc_step relative)

    The last step (``t_N = 0``) returns ``D`` corrected by the data-consistency step. With
    ``num_samples = K > 1`` the ``K`` posterior samples (same ``Ã``, independent noise) are averaged
    and their per-pixel standard deviation returned as ``std``.

    Args:
        model: the ambient :class:`~ambientmri.models.EDMPrecond` (switched to eval mode for the call).
        y: measurements ``(B, *A.out_shape)``.
        A: the scans' operators (data consistency uses every measurement of ``A``).
        further_masks: ``M̃`` per slice, broadcastable like ``A.mask`` (e.g. ``(B, 1, W)`` for
            Cartesian lines); a training-type mask (see :func:`further_masks_for`). It need not be
            a subset of ``A``'s mask.
        steps: Euler steps per sample (Aali et al.: 100–500).
        sigma_max, sigma_min, rho: the EDM schedule (upstream 10, 0.004, 7).
        l_ss: data-consistency step size (upstream 1; 30 with 100 steps was best in a later study:
            tune on validation data). The normalised gradient has a roughly fixed length, so every
            step moves ``x`` by about ``2 · l_ss`` in ℓ2 norm however small the residual: a good
            ``l_ss`` grows with the image norm (pixels × intensity scale). On 8×8 Gaussian test
            images 0.1–0.3 works and 1 overshoots. With ``dc_step="relative"`` it is a fraction of
            the least-squares step instead, which transfers across image sizes and coil counts
            (docs/sampling.md: the measured choice).
        num_samples: posterior samples per slice.
        dc_step: ``"fixed"`` (the papers' normalised step) or ``"relative"`` (see ``l_ss``).
        generator: source of the initial noise: one generator, or one per slice (then a slice's
            result does not depend on its batch); default a fresh generator seeded with 0.
        callback: ``callback(i, total, sigma, x)`` after every step, counted over all samples
            (``total = steps × num_samples``; ``sigma`` is the noise level of ``x`` now), as in
            :mod:`~ambientmri.sampling.samplers`.
        image_shape: the network's image shape (default ``A.in_shape``).
    """
    b = check_measurements(y, A)
    shape = restoration_shape(A, image_shape)
    if num_samples < 1:
        raise ValueError(f"a_dps: num_samples must be >= 1, got {num_samples}")
    further = A.restrict(torch.as_tensor(further_masks, device=y.device).to(torch.float32))
    D = ambient_denoiser(model, further, shape)
    size = 2.0 * l_ss if dc_step == "fixed" else l_ss  # fixed: l_ss · ∇‖r‖² / ‖r‖ = 2 l_ss · ∇‖r‖
    sigmas = _edm_sigmas(steps, sigma_min, sigma_max, rho)
    gen = _generator(generator, y.device)
    samples = []
    with _eval_mode(model):
        for k in range(num_samples):
            x = initial_noise((b, *A.in_shape), sigmas[0], gen, device=y.device)
            for i in range(steps):
                t, t_next = sigmas[i], sigmas[i + 1]
                x = x.detach().requires_grad_(True)
                with torch.enable_grad():
                    d = D(x, _sigma_tensor(t, b, y.device))
                    grad, norm = _residual_grad(x, d, y, A)
                x, d = x.detach(), d.detach()
                x = x + (t_next - t) * (x - d) / t - _dc_displacement(grad, norm, size, dc_step)
                if callback is not None:
                    callback(k * steps + i, steps * num_samples, t_next, x)
            samples.append(x.detach())
    return _combine(samples, b, shape, steps)


def _combine(samples: list[torch.Tensor], b: int, shape: tuple[int, ...], steps: int) -> Restoration:
    stack = torch.stack(samples)
    mean = stack.mean(0)
    std = None
    if len(samples) > 1:
        std = (stack - mean).abs().square().sum(0).div(len(samples) - 1).sqrt()
        std = std.reshape(b, *shape).to(torch.float32)
    return Restoration(finish_restoration(mean, b, shape), steps * len(samples), std)


# ------------------------------------------------------------------------------------------------
# DPS
# ------------------------------------------------------------------------------------------------
def dps(
    D: Denoiser,
    y: torch.Tensor,
    A: MaskedOperator,
    *,
    steps: int = DPSConfig.steps,
    zeta: float = DPSConfig.zeta,
    dc_step: Literal["relative", "fixed"] = DPSConfig.dc_step,  # type: ignore[assignment]
    sigma_max: float = 80.0,
    sigma_min: float = 0.002,
    rho: float = 7.0,
    step: Literal["ancestral", "euler"] = "ancestral",
    generator: GeneratorLike | None = None,
    callback: Callback | None = None,
    image_shape: Sequence[int] | None = None,
) -> Restoration:
    """Diffusion posterior sampling (DPS, Chung et al. 2023) for a clean-trained model. NFE ``steps``.

    On the EDM schedule (variance exploding, ``x_t = x0 + t n``), from ``x ~ N(0, σ_max² I)``::

        x̂0 = D(x, t_i)                                   (Tweedie)
        x' = x̂0 + (t_{i+1}²/t_i²)(x − x̂0) + √(t_{i+1}²(t_i² − t_{i+1}²)/t_i²) ε   (ancestral)
           or x + (t_{i+1} − t_i)(x − x̂0)/t_i                                   (euler)
        x ← x' − ζ ∇_x ‖y − A x̂0‖                        (dc_step fixed: non-squared norm)
        x ← x' − ζ ∇_x ½‖y − A x̂0‖²                      (dc_step relative)

    The ancestral step samples the exact variance-exploding posterior ``q(x_{t_{i+1}} | x_{t_i}, x̂0)``
    (DDPM's ancestral sampler in σ parameterisation); the last step (``t_N = 0``) returns ``x̂0``
    corrected by the gradient step.

    Args:
        D: a denoiser ``D(x (B, *A.in_shape), σ (B,)) -> x̂0`` differentiable in ``x`` (e.g.
            :func:`~ambientmri.sampling.denoisers.clean_denoiser`).
        y: measurements ``(B, *A.out_shape)``.
        A: the scans' operators.
        steps: sampler steps (= NFE).
        zeta: the step size ζ (Chung et al.: 0.3–1 for images in [−1, 1]). Each step moves ``x`` by
            about ζ in ℓ2 norm whatever the residual, so ζ depends on the image norm and the number
            of steps: tune on validation data (ζ = 1, 100 steps suits the 8×8 Gaussian tests).
            With ``dc_step="relative"`` ζ is a fraction of the least-squares step instead.
        dc_step: ``"fixed"`` (Chung et al.'s normalised step) or ``"relative"`` (see ``zeta``).
        sigma_max, sigma_min, rho: the EDM schedule.
        step: ``"ancestral"`` (default, as in DPS) or ``"euler"`` (deterministic probability flow).
        generator: source of all noise: one generator, or one per slice; default seeded with 0.
        callback: ``callback(i, steps, sigma, x)`` after every step (``sigma`` = ``t_{i+1}``).
        image_shape: the shape of the returned images (default ``A.in_shape``).
    """
    b = check_measurements(y, A)
    shape = restoration_shape(A, image_shape)
    if step not in ("ancestral", "euler"):
        raise ValueError(f"dps: step must be 'ancestral' or 'euler', got {step!r}")
    sigmas = _edm_sigmas(steps, sigma_min, sigma_max, rho)
    gen = _generator(generator, y.device)
    x = initial_noise((b, *A.in_shape), sigmas[0], gen, device=y.device)
    for i in range(steps):
        t, t_next = sigmas[i], sigmas[i + 1]
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            x0 = D(x, _sigma_tensor(t, b, y.device))
            grad, norm = _residual_grad(x, x0, y, A)
        x, x0 = x.detach(), x0.detach()
        if step == "ancestral":
            ratio = (t_next / t) ** 2
            x_new = x0 + ratio * (x - x0)
            if t_next > 0:
                x_new = x_new + math.sqrt(t_next**2 * (1.0 - ratio)) * noise_like(x, gen)
        else:
            x_new = x + (t_next - t) * (x - x0) / t
        x = x_new - _dc_displacement(grad, norm, zeta, dc_step)
        if callback is not None:
            callback(i, steps, t_next, x)
    return Restoration(finish_restoration(x, b, shape), steps)


# ------------------------------------------------------------------------------------------------
# DDRM
# ------------------------------------------------------------------------------------------------
def svd_basis(
    A: MaskedOperator,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """``(V, Vᴴ)`` of ``A = M Vᴴ``'s SVD when it is known exactly: singular values are the 0/1 mask.

    - pixel / block inpainting (``T = I``): ``V = I``, the singular vectors are pixels;
    - single-coil Cartesian and 2-D k-space sampling (``T = F``, no coil axis): ``V = Fᴴ``
      (centered orthonormal FFT), the singular vectors are Fourier modes.

    ``V`` maps the spectral domain (``A``'s grid) to images, ``Vᴴ`` images to it.

    Raises:
        ValueError: multi-coil SENSE (``T = F S``: coil maps mix the modes), the Gaussian sensing
            matrix, or any other transform.
    """
    T: LinearOperator = A.transform
    if A.coil_axis:
        raise ValueError(
            "ddrm: the SVD of a multi-coil SENSE operator (A = M F S) is not available in closed form; "
            "use a-dps, dps, sense or l1-wavelet for multi-coil data"
        )
    if isinstance(T, Identity) and T.in_shape == T.out_shape:
        return (lambda s: s), (lambda x: x)
    if isinstance(T, FFT2) and len(T.in_shape) == 2:
        return ifft2c, fft2c
    raise ValueError(
        f"ddrm: needs an operator with a known SVD (pixel/block inpainting or single-coil k-space), "
        f"got transform {T.name} ({A.kind}); Gaussian sensing and SENSE operators are not supported"
    )


def ddrm(
    D: Denoiser,
    y: torch.Tensor,
    A: MaskedOperator,
    *,
    steps: int = DDRMConfig.steps,
    eta: float = 0.85,
    eta_b: float = 1.0,
    sigma_y: float = 0.0,
    sigma_max: float = 80.0,
    sigma_min: float = 0.002,
    rho: float = 7.0,
    generator: GeneratorLike | None = None,
    callback: Callback | None = None,
    image_shape: Sequence[int] | None = None,
) -> Restoration:
    """Denoising diffusion restoration models (DDRM, Kawar et al. 2022). NFE ``steps``.

    Works in the spectral domain ``x̄ = Vᴴ x`` of ``A = M Vᴴ`` (see :func:`svd_basis`), where the
    singular values are the mask (1 on measured coordinates, 0 elsewhere) and ``ȳ = y``. With
    ``x̂0 = D(V x̄, t_i)``, ``x̄0 = Vᴴ x̂0`` and ``ε`` standard complex noise, each step to ``t' = t_{i+1}``
    sets, coordinate-wise:

    - unmeasured: ``x̄0 + √(1−η²) t' (x̄ − x̄0)/t_i + η t' ε``;
    - measured, ``t' ≥ σ_y``: ``(1 − η_b) x̄0 + η_b ȳ + √(t'² − η_b² σ_y²) ε``;
    - measured, ``t' < σ_y``: ``x̄0 + √(1−η²) t' (ȳ − x̄0)/σ_y + η t' ε``.

    Initialisation: ``ȳ + √(t_0² − σ_y²) ε`` on measured coordinates, ``t_0 ε`` elsewhere. The last
    step (``t' = 0``) is deterministic; for ``σ_y = 0, η_b = 1`` it returns ``x̂0`` with the measured
    coordinates replaced by ``y`` (hard data consistency).

    Args:
        D: a denoiser on ``A.in_shape`` images.
        y: measurements ``(B, *A.out_shape)``.
        A: pixel/block inpainting or single-coil k-space operators.
        steps: sampler steps (= NFE); Kawar et al. use 20.
        eta, eta_b: DDRM's η (0.85) and η_b (1).
        sigma_y: standard deviation of the measurement noise (per real/imaginary part).
        sigma_max, sigma_min, rho: the EDM schedule.
        generator: source of all noise: one generator, or one per slice; default seeded with 0.
        callback: ``callback(i, steps, sigma, x)`` after every step (``x`` in image space,
            ``sigma`` = ``t_{i+1}``).
        image_shape: the shape of the returned images (default ``A.in_shape``).

    Raises:
        ValueError: ``A`` has no closed-form SVD (SENSE, Gaussian sensing).
    """
    b = check_measurements(y, A)
    shape = restoration_shape(A, image_shape)
    V, Vh = svd_basis(A)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"ddrm: eta must be in [0, 1], got {eta}")
    if sigma_y < 0:
        raise ValueError(f"ddrm: sigma_y must be >= 0, got {sigma_y}")
    sigmas = _edm_sigmas(steps, sigma_min, sigma_max, rho)
    gen = _generator(generator, y.device)
    measured = A.apply_mask(torch.ones_like(y)).real > 0.5
    y_bar = torch.where(measured, y, torch.zeros_like(y)).to(torch.complex64)
    c = math.sqrt(1.0 - eta**2)

    t0 = sigmas[0]
    eps = noise_like(y_bar, gen)
    x_bar = torch.where(measured, y_bar + math.sqrt(max(t0**2 - sigma_y**2, 0.0)) * eps, t0 * eps)
    with torch.no_grad():
        for i in range(steps):
            t, t_next = sigmas[i], sigmas[i + 1]
            x0 = D(V(x_bar), _sigma_tensor(t, b, y.device))
            x0_bar = Vh(x0)
            eps = noise_like(y_bar, gen)
            hidden = x0_bar + c * t_next * (x_bar - x0_bar) / t + eta * t_next * eps
            if t_next >= sigma_y:
                seen = (1.0 - eta_b) * x0_bar + eta_b * y_bar
                seen = seen + math.sqrt(max(t_next**2 - (eta_b * sigma_y) ** 2, 0.0)) * eps
            else:
                seen = x0_bar + c * t_next * (y_bar - x0_bar) / sigma_y + eta * t_next * eps
            x_bar = torch.where(measured, seen, hidden)
            if callback is not None:
                callback(i, steps, t_next, V(x_bar))
    return Restoration(finish_restoration(V(x_bar), b, shape), steps)

_check_y = check_measurements  # the former private name, kept for existing callers

_image_shape = restoration_shape  # the former private name, kept for existing callers

_finish = finish_restoration  # the former private name, kept for existing callers
