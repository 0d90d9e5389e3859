"""EDM schedule and samplers, checked against the exact Gaussian denoiser.

For ``x0 ~ N(μ, Σ)`` the posterior mean is ``E[x0 | x_t] = μ + Σ(Σ + σ²I)⁻¹(x_t − μ)`` and the
probability-flow ODE has a closed-form solution: in Σ's eigenbasis each coordinate scales as
``√(λ + σ²)``. So a sampler can be checked per sample against the exact ODE map as well as in
distribution.
"""

from __future__ import annotations

import math

import pytest
import torch

from ambientmri.sampling.denoisers import gaussian_denoiser
from ambientmri.sampling.samplers import (
    SampleResult,
    euler_sample,
    heun_sample,
    initial_noise,
    noise_like,
)
from ambientmri.sampling.schedules import edm_sigmas

D_DIM = 8
N = 4000
SIGMA_MAX = 80.0


class ExactGaussian:
    """Vectorised exact denoiser for ``N(μ, Σ)`` over real (or complex: both parts) vectors."""

    def __init__(self, d: int = D_DIM, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        self.q = q
        self.lam = torch.linspace(0.2, 2.0, d, dtype=torch.float64)
        self.cov = q @ torch.diag(self.lam) @ q.T
        self.mean = 0.5 * torch.randn(d, generator=g, dtype=torch.float64)
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        s = sigma.to(torch.float64).reshape(-1, 1)
        gain = self.lam / (self.lam + s**2)
        if x.is_complex():
            re = self.mean + ((x.real - self.mean) @ self.q * gain) @ self.q.T
            im = ((x.imag @ self.q) * gain) @ self.q.T
            return torch.complex(re, im)
        return self.mean + ((x - self.mean) @ self.q * gain) @ self.q.T

    def ode_solution(self, x_init: torch.Tensor, sigma_max: float) -> torch.Tensor:
        """The exact probability-flow ODE map from ``σ_max`` to 0 (real vectors)."""
        scale = self.lam.sqrt() / (self.lam + sigma_max**2).sqrt()
        return self.mean + ((x_init - self.mean) @ self.q * scale) @ self.q.T


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: on a loaded machine OpenMP's thread hand-offs cost more than the maths."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gauss() -> ExactGaussian:
    return ExactGaussian()


def _x_init(seed: int = 1, n: int = N, d: int = D_DIM) -> torch.Tensor:
    return initial_noise((n, d), SIGMA_MAX, torch.Generator().manual_seed(seed), dtype=torch.float64)


def _assert_distribution(x: torch.Tensor, gauss: ExactGaussian, cov_rel: float) -> None:
    n = x.shape[0]
    std_err = (torch.diagonal(gauss.cov) / n).sqrt()
    assert ((x.mean(0) - gauss.mean).abs() < 5 * std_err).all(), (x.mean(0) - gauss.mean) / std_err
    c = torch.cov(x.T)
    assert float((c - gauss.cov).norm() / gauss.cov.norm()) < cov_rel


# ---------------------------------------------------------------------------------------------
# schedule
# ---------------------------------------------------------------------------------------------
def test_edm_sigmas_endpoints_monotone_length() -> None:
    s = edm_sigmas(18)
    assert s.shape == (19,) and s.dtype == torch.float64
    assert float(s[0]) == 80.0 and float(s[-2]) == pytest.approx(0.002, rel=1e-12) and float(s[-1]) == 0.0
    assert bool((s[1:] < s[:-1]).all())
    # the formula at an interior point
    i, n, rho = 5, 18, 7.0
    want = (80 ** (1 / rho) + i / (n - 1) * (0.002 ** (1 / rho) - 80 ** (1 / rho))) ** rho
    assert float(s[i]) == pytest.approx(want, rel=1e-12)
    assert edm_sigmas(1, sigma_max=10.0).tolist() == [10.0, 0.0]
    assert edm_sigmas(4, sigma_min=0.5, sigma_max=2.0, rho=1.0).tolist() == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"steps": 4, "sigma_min": 0.0}, "sigma_min"),
        ({"steps": 4, "sigma_max": float("nan")}, "sigma_max"),
        ({"steps": 4, "rho": -1.0}, "rho"),
        ({"steps": 4, "sigma_min": 5.0, "sigma_max": 1.0}, "below sigma_max"),
        ({"steps": 4, "sigma_min": 1.0, "sigma_max": 1.0}, "below sigma_max"),
    ],
)
def test_edm_sigmas_validates(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        edm_sigmas(**kwargs)


def test_sampler_validates_schedule_and_churn() -> None:
    x = torch.zeros(2, 3, dtype=torch.complex64)

    def zero(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    with pytest.raises(ValueError, match="decreasing"):
        heun_sample(zero, x, [1.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="> 0"):
        heun_sample(zero, x, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="churn"):
        euler_sample(zero, x, edm_sigmas(3), churn=-1.0)
    with pytest.raises(ValueError, match="generator"):
        euler_sample(zero, x, edm_sigmas(3), churn=1.0)


# ---------------------------------------------------------------------------------------------
# accuracy against the exact Gaussian
# ---------------------------------------------------------------------------------------------
def test_heun_matches_exact_ode_and_distribution(gauss: ExactGaussian) -> None:
    x_init = _x_init()
    exact = gauss.ode_solution(x_init, SIGMA_MAX)
    errors = []
    for steps in (32, 64):
        res = heun_sample(gauss, x_init, edm_sigmas(steps, sigma_max=SIGMA_MAX))
        assert isinstance(res, SampleResult) and res.nfe == 2 * steps - 1
        errors.append(float((res.x - exact).norm(dim=1).mean()))
    assert errors[1] < 0.01
    assert errors[0] / errors[1] > 3.0  # second order: ~4x per halving of the step
    _assert_distribution(res.x, gauss, cov_rel=0.1)


def test_euler_converges(gauss: ExactGaussian) -> None:
    x_init = _x_init()
    exact = gauss.ode_solution(x_init, SIGMA_MAX)
    e64 = float((euler_sample(gauss, x_init, edm_sigmas(64)).x - exact).norm(dim=1).mean())
    res = euler_sample(gauss, x_init, edm_sigmas(128))
    assert res.nfe == 128
    e128 = float((res.x - exact).norm(dim=1).mean())
    assert e128 < 0.1 and 1.6 < e64 / e128 < 2.5  # first order
    _assert_distribution(res.x, gauss, cov_rel=0.12)


def test_library_gaussian_denoiser_agrees(gauss: ExactGaussian) -> None:
    """The package's per-sample exact denoiser gives the same trajectory as the vectorised one."""
    x_init = _x_init(n=16).to(torch.complex64)
    sig = edm_sigmas(12)
    a = heun_sample(gaussian_denoiser(gauss.mean, gauss.cov), x_init, sig, real=True).x
    b = heun_sample(gauss, x_init.to(torch.complex128), sig, real=True).x
    torch.testing.assert_close(a.real.to(torch.float64), b.real, atol=2e-3, rtol=1e-3)
    assert float(a.imag.abs().max()) == 0.0


@pytest.mark.parametrize("sampler", [heun_sample, euler_sample])
def test_churn_changes_samples_but_keeps_distribution(gauss: ExactGaussian, sampler, global_rng_guard) -> None:
    x_init = _x_init()
    steps = 64 if sampler is heun_sample else 128
    plain = sampler(gauss, x_init, edm_sigmas(steps)).x
    churned = sampler(gauss, x_init, edm_sigmas(steps), churn=20.0, generator=torch.Generator().manual_seed(5))
    assert churned.nfe == (2 * steps - 1 if sampler is heun_sample else steps)
    assert float((churned.x - plain).norm(dim=1).mean()) > 0.1
    _assert_distribution(churned.x, gauss, cov_rel=0.12)


def test_complex_noise_and_churn_restricted_range(gauss: ExactGaussian, global_rng_guard) -> None:
    """Complex images: independent real and imaginary noise; churn only inside [s_tmin, s_tmax]."""
    gens = torch.Generator().manual_seed(3)
    x_init = initial_noise((N, D_DIM), SIGMA_MAX, gens, dtype=torch.complex128)
    res = heun_sample(gauss, x_init, edm_sigmas(64), churn=10.0, s_tmin=0.05, s_tmax=50.0, generator=gens)
    _assert_distribution(res.x.real, gauss, cov_rel=0.12)
    imag = ExactGaussian()
    imag.mean = torch.zeros(D_DIM, dtype=torch.float64)
    _assert_distribution(res.x.imag, imag, cov_rel=0.12)
    assert float(torch.corrcoef(torch.stack([res.x.real[:, 0], res.x.imag[:, 0]]))[0, 1]) == pytest.approx(0, abs=0.06)


# ---------------------------------------------------------------------------------------------
# randomness, batching, callbacks, guidance hook
# ---------------------------------------------------------------------------------------------
def test_initial_noise_statistics_and_validation(global_rng_guard) -> None:
    g = torch.Generator().manual_seed(0)
    x = initial_noise((2000, 16), 3.0, g)
    assert x.dtype == torch.complex64 and x.shape == (2000, 16)
    assert float(x.real.std()) == pytest.approx(3.0, rel=0.03)
    assert float(x.imag.std()) == pytest.approx(3.0, rel=0.03)
    r = initial_noise((4, 5), 2.0, torch.Generator().manual_seed(0), real=True)
    assert r.dtype == torch.complex64 and float(r.imag.abs().max()) == 0.0
    assert initial_noise((3, 2), 1.0, g, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match="generators"):
        initial_noise((3, 2), 1.0, [torch.Generator()] * 2)
    with pytest.raises(ValueError, match="sigma_max"):
        initial_noise((3, 2), 0.0, g)
    with pytest.raises(TypeError, match="generator"):
        initial_noise((3, 2), 1.0, None)  # type: ignore[arg-type]


def _shrink(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """An element-wise denoiser (no cross-sample arithmetic): exact N(0, I) posterior mean."""
    return x / (1 + sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2)


def _per_sample(seed: int, idx: range) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 1000 + i) for i in idx]


@pytest.mark.parametrize("sampler", [heun_sample, euler_sample])
def test_deterministic_and_batch_invariant(sampler, global_rng_guard) -> None:
    sig = edm_sigmas(10)

    def run(seed: int, idx: range) -> torch.Tensor:
        gens = _per_sample(seed, idx)
        x0 = initial_noise((len(idx), 6, 5), 80.0, gens)
        return sampler(_shrink, x0, sig, churn=5.0, generator=gens).x

    whole = run(1, range(4))
    assert torch.equal(whole, run(1, range(4)))
    assert torch.equal(whole, torch.cat([run(1, range(2)), run(1, range(2, 4))]))
    assert not torch.allclose(whole, run(2, range(4)))
    # one shared generator: deterministic too
    a = sampler(_shrink, initial_noise((3, 4), 80.0, torch.Generator().manual_seed(9)), sig, churn=5.0,
                generator=torch.Generator().manual_seed(9)).x
    b = sampler(_shrink, initial_noise((3, 4), 80.0, torch.Generator().manual_seed(9)), sig, churn=5.0,
                generator=torch.Generator().manual_seed(9)).x
    assert torch.equal(a, b)


def test_noise_like_follows_dtype() -> None:
    g = torch.Generator().manual_seed(0)
    assert noise_like(torch.zeros(3, 2), g).dtype == torch.float32
    c = noise_like(torch.zeros(3, 2, dtype=torch.complex64), g)
    assert c.dtype == torch.complex64 and float(c.imag.abs().max()) > 0
    assert float(noise_like(torch.zeros(3, 2, dtype=torch.complex64), g, real=True).imag.abs().max()) == 0


def test_callback_and_nfe() -> None:
    seen: list[tuple[int, int, float]] = []
    sig = edm_sigmas(5)
    x0 = initial_noise((2, 3), 80.0, torch.Generator().manual_seed(0))
    res = heun_sample(_shrink, x0, sig, callback=lambda i, n, s, x: seen.append((i, n, s)))
    assert res.nfe == 9
    assert [(i, n) for i, n, _ in seen] == [(i, 5) for i in range(5)]
    assert [s for *_, s in seen] == pytest.approx(sig[1:].tolist())
    # a schedule that stops above 0 gets the Heun correction on every step
    assert heun_sample(_shrink, x0, [80.0, 10.0, 1.0]).nfe == 4
    assert euler_sample(_shrink, x0, [80.0, 10.0, 1.0]).nfe == 2


class _Guided:
    """A guided denoiser with x̂0 = 0 and a constant correction."""

    def __init__(self, c: torch.Tensor) -> None:
        self.c = c

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    def denoise_with_guidance(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros_like(x), self.c.expand_as(x)


def test_guidance_correction_is_subtracted_per_step() -> None:
    c = torch.tensor([0.5 + 0.25j, -1.0 + 0j], dtype=torch.complex64)
    x = torch.tensor([[2.0 + 1j, 3.0 - 1j]], dtype=torch.complex64)
    # one Euler step from σ = 1 to 0 with x̂0 = 0: x + (0 − 1)·x/1 − c = −c
    torch.testing.assert_close(euler_sample(_Guided(c), x, [1.0, 0.0]).x, -c.reshape(1, 2))
    # Heun from 2 to 1 (both slopes x/σ): x + ½[(−1)(x/2) − c + (−1)(x_e/1) − c], x_e = x/2 − c
    x_e = x / 2 - c
    want = x + 0.5 * (-(x / 2) - c - x_e - c)
    torch.testing.assert_close(heun_sample(_Guided(c), x, [2.0, 1.0]).x, want)
    assert math.isclose(float(heun_sample(_Guided(c), x, [2.0, 1.0]).nfe), 2)
