"""One contract test for every registered operator and corruption (sigpy/deepinv style)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ambientmri.operators.base import ComposedOperator, Identity, LinearOperator
from ambientmri.operators.corruptions import (
    BlockCorruption,
    CartesianCorruption,
    GaussianCorruption,
    InpaintingCorruption,
    KSpace2DCorruption,
    _KSpaceFurther,
)
from ambientmri.operators.fft import fft2c, ifft2c
from ambientmri.operators.linear import FFT2, CoilSensitivity, Diagonal, MaskedOperator, Matrix

GRID = (16, 12)
C = 3


def _maps(gen: torch.Generator) -> torch.Tensor:
    m = torch.randn(C, *GRID, generator=gen, dtype=torch.complex128)
    return m / m.abs().pow(2).sum(0).sqrt()


CORRUPTIONS = {
    "inpainting": (InpaintingCorruption(p=0.5, delta=0.2), False),
    "block": (BlockCorruption(size=0.3, blocks=2, extra_blocks=1), False),
    "cartesian-singlecoil": (CartesianCorruption("random", (0.25,), (3.0,)), False),
    "cartesian-equispaced": (CartesianCorruption("equispaced", (0.25,), (3.0,)), False),
    "sense-multicoil": (CartesianCorruption("random", (0.25,), (3.0,), _KSpaceFurther(None, 1, None)), True),
    "poisson": (KSpace2DCorruption("poisson", 2.0, (4, 4)), False),
    "uniform2d-multicoil": (KSpace2DCorruption("uniform", 3.0, (4, 4), _KSpaceFurther(None, None, 0.3)), True),
    "gaussian": (GaussianCorruption(m=40, p=0.2, delta=0.3), False),
}


def build(name: str, seed: int = 0) -> tuple[MaskedOperator, MaskedOperator]:
    """(A, Ã) for one sample of corruption ``name`` (complex128 parameters)."""
    corruption, coils = CORRUPTIONS[name]
    gen = torch.Generator().manual_seed(seed)
    if isinstance(corruption, GaussianCorruption):
        n = GRID[0] * GRID[1]
        mask = corruption.sample_mask((corruption.m,), (seed, 1))
        further = corruption.further_mask(mask, (seed, 2))
        g = torch.from_numpy(corruption.matrix(n, seed)).double()
        op = corruption.operator(torch.from_numpy(mask), (corruption.m,), matrix=g)
        return op, op.restrict(torch.from_numpy(further))
    mask = corruption.sample_mask(GRID, (seed, 1))
    further = corruption.further_mask(mask, (seed, 2))
    maps = _maps(gen) if coils else None
    op = corruption.operator(torch.from_numpy(mask), GRID, maps=maps)
    return op, op.restrict(torch.from_numpy(further))


def _rand(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.complex128)


def _inner(a: torch.Tensor, b: torch.Tensor) -> complex:
    return complex((a.conj() * b).sum())


PLAIN_OPERATORS = {
    "identity": lambda g: Identity(GRID),
    "diagonal": lambda g: Diagonal(_rand(GRID, g), GRID),
    "fft2": lambda g: FFT2(GRID),
    "coils": lambda g: CoilSensitivity(_maps(g)),
    "matrix": lambda g: Matrix(_rand((7, 5), g)),
    "composed": lambda g: FFT2((C, *GRID)) @ CoilSensitivity(_maps(g)),
}


def _all_operators() -> list[tuple[str, LinearOperator]]:
    gen = torch.Generator().manual_seed(0)
    ops = [(name, make(gen)) for name, make in PLAIN_OPERATORS.items()]
    for name in CORRUPTIONS:
        a, at = build(name)
        ops += [(name, a), (f"{name}-further", at)]
    return ops


@pytest.mark.parametrize(("name", "op"), _all_operators(), ids=[n for n, _ in _all_operators()])
def test_operator_contract(name: str, op: LinearOperator) -> None:
    gen = torch.Generator().manual_seed(1)
    x, x2 = _rand((2, *op.in_shape), gen), _rand((2, *op.in_shape), gen)
    y = _rand((2, *op.out_shape), gen)
    # adjointness <Ax, y> = <x, Aᴴy> in complex128
    lhs, rhs = _inner(op.forward(x), y), _inner(x, op.adjoint(y))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs)), f"{name}: <Ax,y>={lhs} but <x,Aᴴy>={rhs}"
    # linearity
    a, b = 0.7 - 0.2j, -1.3 + 0.5j
    torch.testing.assert_close(op.forward(a * x + b * x2), a * op.forward(x) + b * op.forward(x2))
    # normal = AᴴA, and the adjoint view
    torch.testing.assert_close(op.normal(x), op.adjoint(op.forward(x)))
    torch.testing.assert_close(op.H.forward(y), op.adjoint(y))
    assert op.H.H is op
    # batch dims are free and match per-sample application
    torch.testing.assert_close(op.forward(x)[1], op.forward(x[1]))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_further_is_subset_and_from_y_alone(name: str) -> None:
    a, at = build(name, seed=3)
    assert at.is_subset_of(a)
    assert not a.is_subset_of(at) or torch.equal(a.mask, at.mask)
    gen = torch.Generator().manual_seed(2)
    x0 = _rand(a.in_shape, gen)
    y = a.forward(x0)
    # Ã x0 is computable from y alone: Ã x0 = M̃ ⊙ y (with the coil axis broadcast)
    further_mask = at.mask.unsqueeze(-len(at.grid_shape) - 1) if at.coil_axis else at.mask
    torch.testing.assert_close(at.forward(x0), y * further_mask)
    # measurements are zero wherever A measures nothing
    applied = a.mask.unsqueeze(-len(a.grid_shape) - 1) if a.coil_axis else a.mask
    assert torch.all(y[torch.broadcast_to(applied, y.shape) == 0] == 0)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_samplers_deterministic_and_rng_clean(name: str, global_rng_guard) -> None:
    corruption, _ = CORRUPTIONS[name]
    grid = (corruption.m,) if isinstance(corruption, GaussianCorruption) else GRID
    m1, m2 = corruption.sample_mask(grid, (7, 1)), corruption.sample_mask(grid, (7, 1))
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(corruption.further_mask(m1, (9,)), corruption.further_mask(m1, (9,)))
    others = [corruption.sample_mask(grid, (s, 1)) for s in range(8, 14)]
    assert any(not np.array_equal(m1, o) for o in others), "different seeds should give different masks"
    assert m1.dtype == np.uint8 and set(np.unique(m1)) <= {0, 1}


def test_shape_errors_name_the_operator() -> None:
    op = FFT2(GRID)
    with pytest.raises(ValueError, match=r"FFT2: input has shape \(3, 5\), expected \(\*batch, 16, 12\)"):
        op.forward(torch.zeros(3, 5, dtype=torch.complex64))
    with pytest.raises(ValueError, match="cannot compose"):
        ComposedOperator(FFT2((4, 4)), Identity((5, 5)))


def test_fft_matches_numpy_convention() -> None:
    gen = torch.Generator().manual_seed(0)
    x = _rand((2, 8, 6), gen)
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(fft2c(x).numpy(), ref, atol=1e-12)
    torch.testing.assert_close(ifft2c(fft2c(x)), x)


def test_complex64_preserved() -> None:
    a, _ = build("sense-multicoil")
    a = a.restrict(a.mask)
    x = torch.zeros(1, *a.in_shape, dtype=torch.complex64)
    a.transform.inner.maps = a.transform.inner.maps.to(torch.complex64)
    assert a.forward(x).dtype == torch.complex64


def test_cartesian_further_raises_acceleration_by_about_one() -> None:
    """R̃ ≈ R + 1 as in Aali et al. 2025 (W = 320, 20 ACS lines: Δ = 54/16/8/5 for R = 2/4/6/8)."""
    width = 320
    for r, expected in ((2, 54), (4, 16), (6, 8), (8, 5)):
        c = CartesianCorruption("random", (20 / width,), (float(r),))  # W/R lines in expectation
        removed = []
        for s in range(40):
            m = c.sample_mask((width, width), (s,))
            removed.append(int(m.sum() - c.further_mask(m, (s, 1)).sum()))
        assert abs(np.mean(removed) - expected) <= 2.5, (r, np.mean(removed), expected)


def test_further_never_removes_acs_but_may_remove_lines_touching_it() -> None:
    c = CartesianCorruption("random", (0.125,), (4.0,))
    width = 64
    acs = np.zeros(width, bool)
    acs[28:36] = True
    touched = False
    for s in range(200):
        m = c.sample_mask((64, width), (s,)).reshape(-1).astype(bool)
        f = c.further_mask(m.astype(np.uint8).reshape(1, -1), (s, 1)).reshape(-1).astype(bool)
        assert f[acs].all()
        if m[27] and not f[27]:
            touched = True
    assert touched, "a random line adjacent to the ACS block must sometimes be removed"
