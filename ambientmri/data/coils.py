"""Coil sensitivity maps from the calibration region of the measurements (sigpy ESPIRiT)."""

from __future__ import annotations

import numpy as np


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
