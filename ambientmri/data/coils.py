"""Coil sensitivity maps from the calibration region of the measurements (sigpy ESPIRiT), and the coil combine."""

from __future__ import annotations

import numpy as np

from ambientmri.operators.fft import ifft2c_np


def coil_combine(maps: np.ndarray, kspace: np.ndarray) -> np.ndarray:
    """The SENSE coil combination ``x = Σ_c conj(S_c) · F⁻¹ y_c`` (``Aᴴy`` of multi-coil k-space).

    Args:
        maps: coil sensitivity maps ``(C, H, W)``, complex.
        kspace: multi-coil k-space ``(C, H, W)``, complex (zero where unmeasured).

    Returns:
        The combined image ``(H, W)``, complex (complex64 for complex64 inputs).
    """
    return (np.conj(maps) * ifft2c_np(kspace)).sum(0)


def espirit_maps(
    kspace: np.ndarray,
    calib_width: int,
    *,
    thresh: float = 0.02,
    kernel_width: int = 6,
    crop: float = 0.95,
    max_iter: int = 30,
) -> np.ndarray:
    """ESPIRiT sensitivity maps (one set) from the central ``calib_width`` region of ``kspace``.

    Only the fully sampled calibration (ACS) box is used, so undersampled k-space is fine as long
    as the box is inside the ACS region.

    Args:
        kspace: ``(C, H, W)`` complex k-space (centered, fastMRI convention).
        calib_width: side of the square calibration box (clipped to the matrix).
        thresh, kernel_width, crop, max_iter: sigpy ``EspiritCalib`` parameters.

    Returns:
        ``(C, H, W)`` complex64 maps with ``Σ_c |S_c|² ≈ 1`` inside the object and 0 outside
        (``crop``).
    """
    import sigpy.mri  # imported lazily: numba start-up is slow

    _, h, w = kspace.shape
    width = int(min(calib_width, h, w))
    kernel = int(min(kernel_width, max(2, width // 2)))
    app = sigpy.mri.app.EspiritCalib(
        np.asarray(kspace, dtype=np.complex64),
        calib_width=width,
        thresh=thresh,
        kernel_width=kernel,
        crop=crop,
        max_iter=max_iter,
        show_pbar=False,
    )
    maps = np.asarray(app.run(), dtype=np.complex64)
    return np.nan_to_num(maps)


def coil_compression_matrix(kspace: np.ndarray, virtual_coils: int, calib: tuple[slice, slice]) -> np.ndarray:
    """SVD coil compression (Buehrer et al. 2007; Huang et al. 2008) from the calibration region.

    The rows of the returned matrix are the ``virtual_coils`` dominant left singular vectors of the
    calibration data ``(C, N)``; applying it to every k-space sample is a linear map of the
    measurements, so zeros (unmeasured samples) stay zero.

    Args:
        kspace: ``(C, H, W)`` complex k-space.
        virtual_coils: number of virtual coils ``V <= C``.
        calib: the fully sampled calibration box (row and column slices).

    Returns:
        ``(V, C)`` complex64 compression matrix with orthonormal rows.
    """
    c = kspace.shape[0]
    if not 1 <= virtual_coils <= c:
        raise ValueError(f"virtual_coils must be in [1, {c}], got {virtual_coils}")
    data = kspace[:, calib[0], calib[1]].reshape(c, -1)
    u, _, _ = np.linalg.svd(data, full_matrices=False)
    return u[:, :virtual_coils].conj().T.astype(np.complex64)


def compress_coils(kspace: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(V, C)`` compression matrix to ``(C, H, W)`` k-space -> ``(V, H, W)``."""
    return np.tensordot(matrix, kspace, axes=(1, 0)).astype(np.complex64)
