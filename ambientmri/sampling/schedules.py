"""Noise-level schedules for the samplers.

:func:`edm_sigmas` is the discretisation of Karras et al. 2022 (EDM, eq. 5):

``σ_i = (σ_max^{1/ρ} + i/(N−1) · (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`` for ``i = 0 … N−1``, and ``σ_N = 0``.

With the defaults (σ_min 0.002, σ_max 80, ρ 7) and ``N = 18`` steps, Heun's method costs 35 network
evaluations.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = ["edm_sigmas"]


def edm_sigmas(
    steps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
) -> torch.Tensor:
    """EDM's noise levels ``σ_0 = σ_max > … > σ_{N−1} = σ_min > σ_N = 0``.

    Args:
        steps: the number of sampler steps ``N`` (at least 1; with one step the schedule is
            ``[σ_max, 0]``).
        sigma_min: the last non-zero noise level, ``0 < sigma_min < sigma_max`` (unused for one step).
        sigma_max: the first noise level (the initial noise's standard deviation).
        rho: the schedule's exponent (> 0); larger spends more steps at small σ.

    Returns:
        float64 tensor of length ``steps + 1``, strictly decreasing, ending in exactly 0.

    Raises:
        ValueError: an argument out of range (one line naming it).
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    steps = int(steps)
    values = {}
    for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max), ("rho", rho)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        values[name] = float(value)
    sigma_min, sigma_max, rho = values["sigma_min"], values["sigma_max"], values["rho"]
    if sigma_min > sigma_max or (steps > 1 and sigma_min == sigma_max):
        raise ValueError(f"sigma_min ({sigma_min}) must be below sigma_max ({sigma_max})")
    if steps == 1:
        levels = torch.tensor([sigma_max], dtype=torch.float64)
    else:
        i = torch.arange(steps, dtype=torch.float64)
        lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
        levels = (hi + i / (steps - 1) * (lo - hi)) ** rho
        levels[0], levels[-1] = sigma_max, sigma_min  # exact endpoints despite rounding
    return torch.cat([levels, torch.zeros(1, dtype=torch.float64)])
