"""Classical baselines: zero-filled, CG-SENSE, L1-wavelet (sigpy) and sigpy's FFT convention.

Measured on two 64×64 brain phantoms (``ambientmri.data.synth.phantom``, seeds 0 and 1), relative
squared error ``‖x̂ − x0‖² / ‖x0‖²`` at λ = 1e-3 (the default), 100 FISTA iterations:

================================= =========== ========== ===========
problem                           zero-filled CG-SENSE   L1-wavelet
================================= =========== ========== ===========
single-coil Cartesian R 4         0.094       —          0.071
single-coil 2-D uniform R 4       0.071       —          0.049
4-coil Cartesian R 4              0.115       0.049      0.038
pixel inpainting p 0.75 (λ 1e-2)  0.744       —          0.124
block 16×16 (λ 1e-2, 50 it.)      0.198       —          0.146
================================= =========== ========== ===========

(Cartesian line sampling is only weakly incoherent, hence the modest single-coil gain.)
"""

from __future__ import annotations

import numpy as np
import pytest
import sigpy as sp
import torch

from ambientmri.data.synth import coil_maps, phantom
from ambientmri.operators.corruptions import (
    BlockCorruption,
    CartesianCorruption,
    GaussianCorruption,
    InpaintingCorruption,
    KSpace2DCorruption,
)
from ambientmri.operators.fft import fft2c, fft2c_np, ifft2c_np
from ambientmri.sampling.classical import cg_sense, l1_wavelet, zero_filled

pytestmark = pytest.mark.usefixtures("global_rng_guard")

N = 64
CART4 = CartesianCorruption(mask_type="random", center_fractions=(0.08,), accelerations=(4.0,))


def phantoms(batch: int = 2) -> torch.Tensor:
    return torch.from_numpy(
        np.stack([phantom("brain", (N, N), np.random.default_rng(s), fov=(N, N)) for s in range(batch)])
    )


def masks_for(corruption, batch: int = 2) -> torch.Tensor:
    return torch.stack([torch.from_numpy(corruption.sample_mask((N, N), s)) for s in range(batch)]).float()


def rel_err(x: torch.Tensor, x0: torch.Tensor) -> float:
    return float((x - x0).abs().square().sum() / x0.abs().square().sum())


def maps(batch: int = 2, coils: int = 4) -> torch.Tensor:
    return torch.stack(
        [torch.from_numpy(coil_maps(coils, (N, N), fov=(N, N), rotation=0.3 * b)) for b in range(batch)]
    )


# ------------------------------------------------------------------------------------------------
# sigpy's FFT is fastMRI's fft2c
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(8, 6), (7, 5), (3, 8, 6), (2, 7, 9)])
def test_sigpy_fft_matches_fastmri_fft2c(shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex128)
    ours = fft2c(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sp.fft(x, axes=(-2, -1)), ours, atol=1e-12)
    np.testing.assert_allclose(fft2c_np(x), ours, atol=1e-12)
    np.testing.assert_allclose(sp.ifft(x, axes=(-2, -1)), ifft2c_np(x), atol=1e-12)
    # an explicit fastMRI-style reference: ifftshift → fft2(ortho) → fftshift
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(sp.fft(x, axes=(-2, -1)), ref, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# zero-filled and CG-SENSE
# ------------------------------------------------------------------------------------------------
def test_zero_filled_is_the_adjoint():
    x0 = phantoms()
    A = CART4.operator(masks_for(CART4), (N, N), maps=maps())
    y = A.forward(x0)
    out = zero_filled(y, A)
    assert out.nfe == 0 and out.std is None and out.x.dtype == torch.complex64 and out.x.shape == (2, N, N)
    assert torch.allclose(out.x, A.adjoint(y))


def test_cg_sense_recovers_fully_sampled_multicoil_exactly():
    x0 = phantoms()
    A = CART4.operator(torch.ones((1, N)), (N, N), maps=maps())
    out = cg_sense(A.forward(x0), A, iters=30)
    assert out.nfe == 0 and out.x.shape == (2, N, N)
    assert rel_err(out.x, x0) < 1e-8  # measured ~1e-13


def test_cg_sense_undersampled_is_data_consistent_and_per_slice():
    x0 = phantoms(3)
    A = CART4.operator(masks_for(CART4, 3), (N, N), maps=maps(3))
    y = A.forward(x0)
    out = cg_sense(y, A, iters=100)
    resid = float((A.forward(out.x) - y).norm() / y.norm())
    assert resid < 5e-3, resid  # measured 7e-4
    assert rel_err(out.x, x0) < 0.6 * rel_err(zero_filled(y, A).x, x0)  # measured 0.049 vs 0.115
    # slices are solved independently: slice 1 alone gives the same image
    one = CART4.operator(masks_for(CART4, 3)[1:2], (N, N), maps=maps(3)[1:2])
    alone = cg_sense(y[1:2], one, iters=100).x
    assert torch.allclose(alone[0], out.x[1], atol=1e-4 * float(out.x[1].abs().max()))
    # Tikhonov: a large λ shrinks towards zero
    small = cg_sense(y, A, iters=30, lam=100.0).x
    assert float(small.norm()) < 0.1 * float(out.x.norm())
    with pytest.raises(ValueError, match="lam"):
        cg_sense(y, A, lam=-1.0)


def test_cg_sense_on_a_gaussian_operator():
    g = GaussianCorruption(m=48)
    mat = torch.stack([torch.from_numpy(g.matrix(16, s)) for s in range(2)])
    A = g.operator(torch.ones((1, 48)), (48,), matrix=mat)
    x0 = torch.complex(*torch.randn((2, 2, 16), generator=torch.Generator().manual_seed(0)))
    out = cg_sense(A.forward(x0), A, iters=50, image_shape=(4, 4))
    assert out.x.shape == (2, 4, 4)
    assert rel_err(out.x.reshape(2, 16), x0) < 1e-6


# ------------------------------------------------------------------------------------------------
# L1-wavelet
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("corruption", "multicoil", "gain"),
    [
        (CART4, False, 0.85),  # measured 0.071 / 0.094 = 0.75
        (KSpace2DCorruption(pattern="uniform", acceleration=4.0, calib=(8, 8)), False, 0.8),  # 0.69
        (CART4, True, 0.6),  # 0.038 / 0.115 = 0.33
    ],
    ids=["cartesian-R4", "kspace2d-R4", "multicoil-cartesian-R4"],
)
def test_l1_wavelet_improves_on_zero_filled(corruption, multicoil, gain):
    x0 = phantoms()
    A = corruption.operator(masks_for(corruption), (N, N), maps=maps() if multicoil else None)
    y = A.forward(x0)
    out = l1_wavelet(y, A)
    assert out.nfe == 0 and out.x.shape == (2, N, N) and out.x.dtype == torch.complex64
    zf = rel_err(zero_filled(y, A).x, x0)
    assert rel_err(out.x, x0) < gain * zf, (rel_err(out.x, x0), zf)


@pytest.mark.parametrize(
    ("corruption", "gain"),
    [
        (InpaintingCorruption(p=0.75), 0.5),  # measured 0.12 / 0.74 = 0.17
        (BlockCorruption(size=0.25), 0.9),  # 0.146 / 0.198 = 0.74: wavelets barely fill a 16×16 hole
    ],
    ids=["inpainting", "block"],
)
def test_l1_wavelet_image_domain_masks(corruption, gain):
    x0 = phantoms()
    A = corruption.operator(masks_for(corruption), (N, N))
    y = A.forward(x0)
    out = l1_wavelet(y, A, lam=1e-2, iters=50)
    assert rel_err(out.x, x0) < gain * rel_err(zero_filled(y, A).x, x0)


def test_l1_wavelet_refuses_gaussian_operators():
    g = GaussianCorruption(m=16)
    A = g.operator(torch.ones(16), (64,), matrix=torch.from_numpy(g.matrix(64, 0)))
    with pytest.raises(ValueError, match="cg_sense"):
        l1_wavelet(torch.zeros((1, 16), dtype=torch.complex64), A)
