"""Classical reconstructions (no network, NFE 0): zero-filled, CG-SENSE and L1-wavelet compressed sensing.

All take measurements ``y (B, *A.out_shape)`` zero-filled on the full grid and the scans' operator
``A`` (a :class:`~ambientmri.operators.linear.MaskedOperator`, batched masks and coil maps allowed)
and return a :class:`~ambientmri.sampling.restoration.Restoration` with complex64 images.

- :func:`zero_filled`: ``Aᴴ y``.
- :func:`cg_sense`: conjugate gradient on ``(AᴴA + λI) x = Aᴴ y`` (any masked operator, batched).
- :func:`l1_wavelet`: ``argmin ½‖A x − y‖² + λ‖W x‖₁`` (Daubechies-4 wavelets, FISTA) with sigpy,
  one slice at a time, for k-space (single- and multi-coil) and image-domain masks.

sigpy's centered FFT (``sp.fft(x, axes=(-2, -1))``: ``ifftshift → fftn(norm="ortho") → fftshift``) is
the same transform as fastMRI's ``fft2c`` (``tests/sampling/test_classical.py`` checks it on even
and odd sizes), so k-space and coil maps are handed to sigpy unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ambientmri.operators.base import ComposedOperator, Identity
from ambientmri.operators.linear import FFT2, CoilSensitivity, MaskedOperator
from ambientmri.sampling.methods import L1_WAVELET_LAMBDA, L1WaveletConfig, SenseConfig
from ambientmri.sampling.restoration import Restoration, check_measurements, finish_restoration, restoration_shape

__all__ = ["L1_WAVELET_LAMBDA", "cg_sense", "l1_wavelet", "zero_filled"]

# L1_WAVELET_LAMBDA (defined in sampling/methods.py): the default weight for images normalised to
# magnitude ~1 (see :func:`l1_wavelet`).


def zero_filled(y: torch.Tensor, A: MaskedOperator, *, image_shape: Sequence[int] | None = None) -> Restoration:
    """The zero-filled reconstruction ``Aᴴ y`` (coil-combined with ``Sᴴ`` for SENSE). NFE 0."""
    b = check_measurements(y, A)
    shape = restoration_shape(A, image_shape)
    return Restoration(finish_restoration(A.adjoint(y), b, shape), 0)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-slice real part of ``⟨a, b⟩`` in float64, ``(B,)``."""
    return (a.conj() * b).real.reshape(a.shape[0], -1).to(torch.float64).sum(1)


def cg_sense(
    y: torch.Tensor,
    A: MaskedOperator,
    *,
    iters: int = SenseConfig.iters,
    lam: float = SenseConfig.lam,
    tol: float = 1e-6,
    image_shape: Sequence[int] | None = None,
) -> Restoration:
    """CG-SENSE: conjugate gradient on ``(AᴴA + λI) x = Aᴴ y`` from ``x = 0``. NFE 0.

    Solves the (Tikhonov-regularised) least-squares problem ``min ‖A x − y‖² + λ‖x‖²`` for every
    slice of the batch at once (per-slice step sizes). Works for any masked operator: multi-coil
    SENSE, single-coil k-space, pixel masks, Gaussian sensing. Without regularisation the iterates
    stay in the range of ``Aᴴ`` (unmeasured modes stay zero for single-coil k-space and pixel
    masks, where the result is the zero-filled image).

    Args:
        y: measurements ``(B, *A.out_shape)``.
        A: the scans' operators.
        iters: maximum CG iterations.
        lam: Tikhonov weight ``λ ≥ 0``.
        tol: stop once every slice's residual norm is below ``tol`` times its initial one.
        image_shape: the shape of the returned images (default ``A.in_shape``).
    """
    b = check_measurements(y, A)
    shape = restoration_shape(A, image_shape)
    if lam < 0:
        raise ValueError(f"cg_sense: lam must be >= 0, got {lam}")
    rhs = A.adjoint(y)
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rs = _dot(r, r)
    stop = (tol**2) * rs
    view = (b,) + (1,) * (rhs.ndim - 1)
    for _ in range(iters):
        if bool((rs <= stop).all()):
            break
        ap = A.normal(p)
        if lam:
            ap = ap + lam * p
        pap = _dot(p, ap)
        alpha = torch.where(pap > 0, rs / torch.where(pap > 0, pap, 1.0), 0.0)
        alpha = torch.where(rs > stop, alpha, 0.0).to(rhs.real.dtype).reshape(view)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = _dot(r, r)
        beta = torch.where(rs > 0, rs_new / torch.where(rs > 0, rs, 1.0), 0.0).to(rhs.real.dtype).reshape(view)
        p = r + beta * p
        rs = rs_new
    return Restoration(finish_restoration(x, b, shape), 0)


# ------------------------------------------------------------------------------------------------
# L1-wavelet (sigpy)
# ------------------------------------------------------------------------------------------------
def _structure(A: MaskedOperator) -> tuple[str, torch.Tensor | None]:
    """``("image", None)``, ``("kspace", None)`` or ``("kspace", maps (…, C, H, W))``."""
    T = A.transform
    if isinstance(T, Identity) and len(T.in_shape) == 2 and T.in_shape == T.out_shape:
        return "image", None
    if isinstance(T, FFT2) and len(T.in_shape) == 2 and not A.coil_axis:
        return "kspace", None
    if (
        A.coil_axis
        and isinstance(T, ComposedOperator)
        and isinstance(T.outer, FFT2)
        and isinstance(T.inner, CoilSensitivity)
    ):
        return "kspace", T.inner.maps
    raise ValueError(
        f"l1_wavelet: supports 2-D k-space (single- or multi-coil) and image-domain masks, got transform "
        f"{T.name} ({A.kind}); use cg_sense for other operators"
    )


def l1_wavelet(
    y: torch.Tensor,
    A: MaskedOperator,
    *,
    lam: float = L1_WAVELET_LAMBDA,
    iters: int = L1WaveletConfig.iters,
    wave_name: str = "db4",
    image_shape: Sequence[int] | None = None,
) -> Restoration:
    """L1-wavelet compressed sensing: ``argmin_x ½‖A x − y‖² + λ‖W x‖₁`` per slice. NFE 0.

    ``W`` is sigpy's orthogonal wavelet transform (``wave_name``), solved with FISTA
    (``sigpy.app.LinearLeastSquares`` / ``sigpy.mri.app.L1WaveletRecon``) for ``iters`` iterations
    with step ``1/L``, ``L = max_pixel Σ_c |S_c|²`` an upper bound of ``‖AᴴA‖`` (1 without coil
    maps); passing the step avoids sigpy's power iteration, which would draw from numpy's global RNG.

    - k-space (``A = M F`` or ``M F S``): ``L1WaveletRecon(k (C, H, W), maps (C, H, W), λ, weights=M)``
      (single coil: one coil with a map of ones). sigpy's centered FFT equals fastMRI's ``fft2c``.
    - image-domain masks (``A = M``): the same problem with a sigpy ``Multiply(M)`` operator.

    ``λ`` is absolute, so it depends on the data scale; the default suits images normalised to
    magnitude ~1 (the stores' 99th-percentile normalisation). Tune it on validation data.

    Args:
        y: measurements ``(B, *A.out_shape)``.
        A: the scans' operators.
        lam: the L1 weight λ.
        iters: FISTA iterations (sigpy's default 100).
        wave_name: a PyWavelets wavelet name.
        image_shape: the shape of the returned images (default ``A.in_shape``).

    Raises:
        ValueError: the Gaussian sensing operator or another transform.
    """
    import sigpy as sp
    import sigpy.mri

    b = check_measurements(y, A)
    shape = restoration_shape(A, image_shape)
    kind, maps = _structure(A)
    h, w = A.in_shape
    mask = (A.mask.to(torch.float32) * torch.ones((b, h, w), device=A.mask.device)).cpu().numpy()
    y_np = y.detach().cpu().numpy().astype(np.complex64)
    if maps is not None:
        maps_np = torch.broadcast_to(maps, (b, *maps.shape[-3:])).detach().cpu().numpy().astype(np.complex64)
    out = np.empty((b, h, w), dtype=np.complex64)
    for i in range(b):
        if kind == "image":
            op = sp.linop.Multiply((h, w), mask[i].astype(np.complex64))
            wav = sp.linop.Wavelet((h, w), wave_name=wave_name)
            proxg = sp.prox.UnitaryTransform(sp.prox.L1Reg(wav.oshape, lam), wav)
            app = sp.app.LinearLeastSquares(
                op, y_np[i] * mask[i], proxg=proxg, max_iter=iters, alpha=1.0, show_pbar=False
            )
        else:
            if maps is None:
                mps = np.ones((1, h, w), dtype=np.complex64)
                ksp = y_np[i][None]
            else:
                mps = maps_np[i]
                ksp = y_np[i]
            lipschitz = float((np.abs(mps) ** 2).sum(0).max())
            app = sigpy.mri.app.L1WaveletRecon(
                ksp * mask[i], mps, lam, weights=mask[i], wave_name=wave_name, max_iter=iters,
                alpha=1.0 / max(lipschitz, 1e-12), show_pbar=False,
            )
        out[i] = np.asarray(app.run(), dtype=np.complex64)
    x = torch.from_numpy(out).to(y.device)
    return Restoration(finish_restoration(x, b, shape), 0)
