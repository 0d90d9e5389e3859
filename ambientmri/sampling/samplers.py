"""EDM samplers (Karras et al. 2022, Algorithm 2) over any denoiser ``D(x, σ) -> x̂0``.

The probability-flow ODE ``dx/dσ = (x − D(x, σ)) / σ`` is integrated from ``σ_0 = σ_max`` down to
``σ_N = 0`` over a schedule such as :func:`~ambientmri.sampling.schedules.edm_sigmas`:

- :func:`euler_sample`: first order, one denoiser evaluation per step (NFE = N).
- :func:`heun_sample`: Heun's second-order correction on every step but the last (at ``σ = 0`` it
  would divide by zero), NFE = 2N − 1.

Optional stochastic "churn" (EDM's ``S_churn``, ``S_tmin``, ``S_tmax``, ``S_noise``): before step i,
when ``s_tmin ≤ σ_i ≤ s_tmax``, the noise level is raised to ``σ̂ = σ_i (1 + γ)`` with
``γ = min(churn / N, √2 − 1)`` by adding fresh noise of standard deviation ``s_noise·√(σ̂² − σ_i²)``.

Randomness: every draw comes from the ``generator`` argument, never from torch's global RNG. It may
be one :class:`torch.Generator` for the whole batch or a sequence of generators, one per sample:
then sample ``b``'s noise comes from ``generator[b]`` alone, so a sample does not depend on which
batch it was drawn in. Noise is drawn on the generator's device and moved to ``x``'s, so a CPU
generator gives the same noise whatever device the denoiser runs on.

Complex images get complex noise (independent N(0, 1) real and imaginary parts, the convention of
the training losses) unless ``real=True`` (zero imaginary part); real tensors get real noise.

Guidance: a denoiser that also implements :class:`GuidedDenoiser` (e.g.
:class:`~ambientmri.sampling.generate.ReconstructionGuidance`) is asked for ``(x̂0, c)`` instead
of ``x̂0``, and the correction ``c`` is subtracted from every step's displacement (Heun averages
the two corrections as it averages the two slopes), as the Ambient Diffusion reference sampler does:
``x_{i+1} = x̂ + (σ_{i+1} − σ̂) (x̂ − x̂0)/σ̂ − c``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import torch

from ambientmri.sampling.denoisers import Denoiser

__all__ = [
    "Callback",
    "GeneratorLike",
    "GuidedDenoiser",
    "SampleResult",
    "euler_sample",
    "heun_sample",
    "initial_noise",
    "noise_like",
]

GeneratorLike = torch.Generator | Sequence[torch.Generator]
#: ``callback(i, total, sigma, x)`` after step ``i`` (0-based) of ``total``; ``sigma`` is the noise
#: level of ``x`` now (``σ_{i+1}``, 0 after the last step). ``x`` must not be modified.
Callback = Callable[[int, int, float, torch.Tensor], None]


class SampleResult(NamedTuple):
    """The final sample ``x`` and the number of denoiser evaluations ``nfe`` it took."""

    x: torch.Tensor
    nfe: int


@runtime_checkable
class GuidedDenoiser(Protocol):
    """A denoiser that can also return a guidance correction for the sampler's step.

    ``D(x, σ)`` alone is the unguided ``x̂0``; ``denoise_with_guidance(x, σ)`` returns
    ``(x̂0, c)`` where ``c`` (shape of ``x``) is subtracted from the step's displacement.
    """

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The plain posterior-mean estimate ``x̂0``."""
        ...

    def denoise_with_guidance(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x̂0, c)``: the estimate and the guidance correction for this evaluation."""
        ...


# ----------------------------------------------------------------------------------------------
# noise
# ----------------------------------------------------------------------------------------------
def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.empty(0, dtype=dtype).real.dtype if dtype.is_complex else dtype


def _draw(
    shape: tuple[int, ...], generator: GeneratorLike, dtype: torch.dtype, real: bool
) -> torch.Tensor:
    """Standard normal noise ``(B, *S)`` of ``dtype`` on the generator's device."""
    if not isinstance(generator, torch.Generator) and not isinstance(generator, Sequence):
        raise TypeError(f"generator must be a torch.Generator or a sequence of them, got {type(generator).__name__}")
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]} samples")
        if shape[0] == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.stack([_draw(tuple(shape[1:]), g, dtype, real) for g in generator])
    rdt = _real_dtype(dtype)
    re = torch.randn(shape, generator=generator, dtype=rdt, device=generator.device)
    if not dtype.is_complex:
        return re
    im = torch.zeros_like(re) if real else torch.randn(shape, generator=generator, dtype=rdt, device=generator.device)
    return torch.complex(re, im)


def initial_noise(
    shape: Sequence[int],
    sigma_max: float,
    generator: GeneratorLike,
    real: bool = False,
    *,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The sampler's starting point ``x_0 = σ_max · n``.

    Args:
        shape: ``(B, *S)``.
        sigma_max: the first noise level of the schedule.
        generator: one generator for the batch, or one per sample (``len == B``).
        real: complex ``dtype`` only: zero imaginary part instead of complex noise.
        dtype: ``complex64`` (default) or a real dtype (then the noise is real).
        device: where to put the result (default: the generator's device).
    """
    shape = tuple(int(s) for s in shape)
    if not shape:
        raise ValueError("shape must have a batch axis")
    if not math.isfinite(sigma_max) or sigma_max <= 0:
        raise ValueError(f"sigma_max must be a finite number > 0, got {sigma_max!r}")
    n = _draw(shape, generator, dtype, real)
    if device is not None:
        n = n.to(device)
    return n * sigma_max


def noise_like(x: torch.Tensor, generator: GeneratorLike, real: bool = False) -> torch.Tensor:
    """Standard normal noise shaped and typed like ``x`` (complex for complex ``x`` unless ``real``)."""
    return _draw(tuple(x.shape), generator, x.dtype, real).to(x.device)


# ----------------------------------------------------------------------------------------------
# samplers
# ----------------------------------------------------------------------------------------------
def _schedule(sigmas: torch.Tensor | Sequence[float]) -> list[float]:
    s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    if s.ndim != 1 or s.numel() < 2:
        raise ValueError(f"sigmas must be a 1-D schedule of at least 2 levels, got shape {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()):
        raise ValueError("sigmas must be finite")
    if bool((s[:-1] <= 0).any()) or float(s[-1]) < 0:
        raise ValueError("sigmas must be > 0 except the last, which may be 0")
    if bool((s[1:] >= s[:-1]).any()):
        raise ValueError("sigmas must be strictly decreasing")
    return [float(v) for v in s]


def _check_churn(churn: float, s_noise: float) -> None:
    if not math.isfinite(churn) or churn < 0:
        raise ValueError(f"churn must be a finite number >= 0, got {churn!r}")
    if not math.isfinite(s_noise) or s_noise < 0:
        raise ValueError(f"s_noise must be a finite number >= 0, got {s_noise!r}")


def _like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` in ``x``'s dtype (the real part for a real ``x``)."""
    if t.is_complex() and not x.is_complex():
        t = t.real
    return t.to(x.dtype)


def _sample(
    D: Denoiser,
    x_init: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    heun: bool,
    churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
    generator: GeneratorLike | None,
    callback: Callback | None,
    real: bool,
) -> SampleResult:
    levels = _schedule(sigmas)
    _check_churn(churn, s_noise)
    steps = len(levels) - 1
    gamma_max = min(churn / steps, math.sqrt(2.0) - 1.0)
    guided = isinstance(D, GuidedDenoiser)
    b = x_init.shape[0]
    nfe = 0

    def evaluate(x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        nonlocal nfe
        nfe += 1
        sigma = torch.full((b,), t, dtype=torch.float32, device=x.device)
        if guided:
            d, c = D.denoise_with_guidance(x, sigma)  # type: ignore[union-attr]
            return _like(d, x), _like(c, x)
        return _like(D(x, sigma), x), None

    x = x_init
    with torch.no_grad():
        for i in range(steps):
            t_cur, t_next = levels[i], levels[i + 1]
            gamma = gamma_max if (gamma_max > 0 and s_tmin <= t_cur <= s_tmax) else 0.0
            t_hat = t_cur * (1.0 + gamma)
            if gamma > 0:
                if generator is None:
                    raise ValueError("churn > 0 draws fresh noise: pass a generator")
                x_hat = x + math.sqrt(t_hat**2 - t_cur**2) * s_noise * noise_like(x, generator, real)
            else:
                x_hat = x
            denoised, corr = evaluate(x_hat, t_hat)
            slope = (x_hat - denoised) / t_hat
            step = (t_next - t_hat) * slope
            if corr is not None:
                step = step - corr
            if heun and t_next > 0:
                x_euler = x_hat + step
                denoised2, corr2 = evaluate(x_euler, t_next)
                slope2 = (x_euler - denoised2) / t_next
                step2 = (t_next - t_hat) * slope2
                if corr2 is not None:
                    step2 = step2 - corr2
                x = x_hat + 0.5 * (step + step2)
            else:
                x = x_hat + step
            if callback is not None:
                callback(i, steps, t_next, x)
    return SampleResult(x, nfe)


def euler_sample(
    D: Denoiser,
    x_init: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: GeneratorLike | None = None,
    callback: Callback | None = None,
    real: bool = False,
) -> SampleResult:
    """Euler's method on the probability-flow ODE (with optional churn); NFE = number of steps.

    Args:
        D: the denoiser ``D(x, σ) -> x̂0`` (``σ`` a ``(B,)`` float32 tensor).
        x_init: ``(B, *S)`` starting point at noise level ``sigmas[0]`` (see :func:`initial_noise`).
        sigmas: the decreasing schedule ``σ_0 > … > σ_N`` (``σ_N`` usually 0).
        churn, s_tmin, s_tmax, s_noise: EDM's stochasticity (``churn = 0``: deterministic ODE).
        generator: source of the churn noise: one generator or one per sample. Needed iff churn
            adds noise.
        callback: ``callback(i, total, sigma, x)`` after every step (a progress bar).
        real: add real-valued churn noise to complex ``x``.

    Returns:
        :class:`SampleResult` ``(x, nfe)``.
    """
    return _sample(
        D, x_init, sigmas, heun=False, churn=churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise,
        generator=generator, callback=callback, real=real,
    )


def heun_sample(
    D: Denoiser,
    x_init: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: GeneratorLike | None = None,
    callback: Callback | None = None,
    real: bool = False,
) -> SampleResult:
    """EDM's stochastic Heun sampler (Karras et al. 2022, Algorithm 2).

    The second-order correction is skipped on a step that ends at ``σ = 0``, so an EDM schedule of
    ``N`` steps costs ``2N − 1`` evaluations (35 for 18 steps). Arguments as :func:`euler_sample`.

    Returns:
        :class:`SampleResult` ``(x, nfe)``.
    """
    return _sample(
        D, x_init, sigmas, heun=True, churn=churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise,
        generator=generator, callback=callback, real=real,
    )
