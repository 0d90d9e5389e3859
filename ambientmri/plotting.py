"""Figures for inspecting sampling masks (headless: matplotlib's Agg canvas, no pyplot state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ambientmri.utils import atomic_path

__all__ = ["mask_to_2d", "plot_mask", "point_spread_function"]


def mask_to_2d(mask: np.ndarray) -> np.ndarray:
    """The 2-D k-space sampling grid of a mask.

    Args:
        mask: ``(W,)`` Cartesian mask (phase-encode columns) or ``(H, W)`` 2-D mask; any real dtype.

    Returns:
        float64 ``(H, W)``; a 1-D mask is broadcast over ``H = W`` fully sampled readout rows.

    Raises:
        ValueError: not 1-D/2-D, empty, or non-finite.
    """
    arr = np.asarray(mask)
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise ValueError(f"mask must be a non-empty 1-D or 2-D array, got shape {arr.shape}")
    if np.iscomplexobj(arr):
        arr = arr.real
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"mask of shape {arr.shape} contains NaN or Inf")
    if arr.ndim == 1:
        arr = np.broadcast_to(arr, (arr.shape[0], arr.shape[0])).copy()
    return arr


def point_spread_function(mask2d: np.ndarray) -> np.ndarray:
    """Centered point-spread function ``|IFFT2(mask)|`` normalised to peak 1.

    Args:
        mask2d: ``(H, W)`` mask in centered k-space order (DC at ``(H//2, W//2)``).

    Returns:
        float64 ``(H, W)``, centered (peak at ``(H//2, W//2)``); all zeros for an empty mask.
    """
    psf = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(mask2d))))
    peak = psf.max()
    return psf / peak if peak > 0 else psf


def plot_mask(mask: np.ndarray, path: str | Path, title: str = "") -> None:
    """Save a PNG with the mask, its point-spread function (log scale) and the PSF's center row.

    The file is written atomically (temporary file in the same folder, then ``os.replace``).

    Args:
        mask: ``(W,)`` Cartesian mask or ``(H, W)`` 2-D mask of 0/1 (weights also work).
        path: output PNG path; parent folders are created.
        title: figure title; the sampled fraction and acceleration are appended.

    Raises:
        ValueError: a mask that is not a non-empty finite 1-D or 2-D array.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    grid = mask_to_2d(mask)
    h, w = grid.shape
    psf = point_spread_function(grid)
    floor = 1e-4
    fraction = float(grid.mean())
    accel = f"R = {1.0 / fraction:.2f}" if fraction > 0 else "R = inf"
    info = f"{np.asarray(mask).shape} mask, sampled {100 * fraction:.1f}% ({accel})"

    fig = Figure(figsize=(13.5, 4.2), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    ax_mask, ax_psf, ax_row = fig.subplots(1, 3)

    ax_mask.imshow(grid, cmap="gray", vmin=0.0, vmax=max(1.0, float(grid.max())),
                   interpolation="nearest", aspect="auto" if h != w else "equal")
    is_1d = np.asarray(mask).ndim == 1
    ax_mask.set_title("k-space mask" + (" (1-D, broadcast over rows)" if is_1d else ""))
    ax_mask.set_xlabel("k_x (phase encode)")
    ax_mask.set_ylabel("k_y")

    shown = psf
    extent = None
    if is_1d:
        # the PSF of a row-broadcast mask lives on the center row only: show a band around it,
        # or the one-pixel line would vanish when the image is downsampled for display
        band = min(8, h // 2)
        shown = psf[h // 2 - band : h // 2 + band + 1]
        extent = (-0.5, w - 0.5, h // 2 + band + 0.5, h // 2 - band - 0.5)
    image = ax_psf.imshow(np.clip(shown, floor, None), cmap="magma",
                          norm=LogNorm(vmin=floor, vmax=1.0), interpolation="nearest",
                          aspect="auto" if (h != w or is_1d) else "equal", extent=extent)
    fig.colorbar(image, ax=ax_psf, shrink=0.85, label="|PSF| / max")
    ax_psf.set_title("point-spread function |IFFT2(mask)|"
                     + (" (center rows)" if is_1d else ""))
    ax_psf.set_xlabel("x")
    ax_psf.set_ylabel("y")

    x = np.arange(w) - w // 2
    ax_row.semilogy(x, np.clip(psf[h // 2], floor, None), lw=1.0)
    ax_row.set_ylim(floor, 1.5)
    ax_row.set_title("PSF, center row")
    ax_row.set_xlabel("x offset (pixels)")
    ax_row.grid(True, which="both", alpha=0.3)

    fig.suptitle(f"{title} - {info}" if title else info)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        fig.clear()
