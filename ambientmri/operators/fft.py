"""Centered orthonormal 2-D FFT, the convention of fastMRI's ``fft2c`` / ``ifft2c``.

``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))`` over the last two dimensions, on native
complex tensors (fastMRI stores complex data as a trailing real/imaginary pair; the transform is the
same).
"""

from __future__ import annotations

import numpy as np
import torch

_DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal 2-D FFT over the last two dims of a complex tensor ``(..., H, W)``."""
    x = torch.fft.ifftshift(x, dim=_DIMS)
    x = torch.fft.fft2(x, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(x, dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal inverse 2-D FFT over the last two dims of a complex tensor."""
    k = torch.fft.ifftshift(k, dim=_DIMS)
    k = torch.fft.ifft2(k, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(k, dim=_DIMS)


def fft1c(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Centered orthonormal 1-D FFT along ``dim``."""
    x = torch.fft.ifftshift(x, dim=dim)
    x = torch.fft.fft(x, dim=dim, norm="ortho")
    return torch.fft.fftshift(x, dim=dim)


def ifft1c(k: torch.Tensor, dim: int) -> torch.Tensor:
    """Centered orthonormal inverse 1-D FFT along ``dim``."""
    k = torch.fft.ifftshift(k, dim=dim)
    k = torch.fft.ifft(k, dim=dim, norm="ortho")
    return torch.fft.fftshift(k, dim=dim)


def fft2c_np(x: np.ndarray) -> np.ndarray:
    """NumPy version of :func:`fft2c` (keeps complex64 inputs complex64)."""
    out = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=_DIMS), norm="ortho"), axes=_DIMS)
    return out.astype(np.result_type(x.dtype, np.complex64), copy=False)


def ifft2c_np(k: np.ndarray) -> np.ndarray:
    """NumPy version of :func:`ifft2c` (keeps complex64 inputs complex64)."""
    out = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=_DIMS), norm="ortho"), axes=_DIMS)
    return out.astype(np.result_type(k.dtype, np.complex64), copy=False)


def center_crop(x: np.ndarray | torch.Tensor, shape: tuple[int, int]) -> np.ndarray | torch.Tensor:
    """Center-crop the last two dims to ``shape`` exactly as fastMRI's ``center_crop``.

    fastMRI uses ``from = (size - crop) // 2`` on each axis.
    """
    h, w = x.shape[-2], x.shape[-1]
    ch, cw = int(shape[0]), int(shape[1])
    if not (0 < ch <= h and 0 < cw <= w):
        raise ValueError(f"center_crop: crop {ch}x{cw} does not fit inside {h}x{w}")
    top = (h - ch) // 2
    left = (w - cw) // 2
    return x[..., top : top + ch, left : left + cw]


def crop_kspace(kspace: np.ndarray, shape: tuple[int, int], *, readout_only: bool = False) -> np.ndarray:
    """Crop the *image* of ``kspace (..., H, W)`` to ``shape`` and return its k-space.

    Each cropped axis is brought to image space with a centered 1-D inverse FFT, center-cropped as
    fastMRI does and transformed back, so an axis that is not cropped is left untouched (a phase
    encode mask on W survives a readout crop on H exactly).

    Args:
        kspace: complex array ``(..., H, W)``.
        shape: the image size ``(h, w)`` to keep.
        readout_only: refuse to crop W (undersampled data: cropping W would mix sampled and
            unsampled columns).
    """
    h, w = kspace.shape[-2:]
    ch, cw = int(shape[0]), int(shape[1])
    if not (0 < ch <= h and 0 < cw <= w):
        raise ValueError(f"crop {ch}x{cw} does not fit inside the {h}x{w} matrix")
    if readout_only and cw != w:
        raise ValueError(
            f"crop width {cw} differs from the k-space width {w}; undersampled data can only be "
            "cropped along the readout (H)"
        )
    out = kspace
    for axis, size, crop in ((-2, h, ch), (-1, w, cw)):
        if crop == size:
            continue
        img = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(out, axes=axis), axis=axis, norm="ortho"), axes=axis)
        start = (size - crop) // 2
        img = np.take(img, np.arange(start, start + crop), axis=axis)
        out = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(img, axes=axis), axis=axis, norm="ortho"), axes=axis)
    return out.astype(np.complex64, copy=False)
