"""Figures for inspecting sampling masks (headless: matplotlib's Agg canvas, no pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ambientmri.utils import atomic_path

__all__ = ["image_grid", "mask_to_2d", "plot_mask", "point_spread_function", "sampleset_figure", "training_curves"]


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


Panel = tuple[str, np.ndarray, str]  # (title, image, "image" | "error")


def image_grid(path: str | Path, rows: list[list[Panel]], *, row_labels: list[str] | None = None,
               title: str = "") -> tuple[int, int]:
    """Save a PNG of image panels, one row per entry of ``rows``, each panel with its colour bar.

    The ``image`` panels of a row share one grey scale (0 to the largest 99.5th percentile of
    them); ``error`` panels use their own scale (magma). Written atomically.

    Args:
        path: the PNG.
        rows: per row, ``(title, image (H, W), kind)`` panels; rows may differ in length.
        row_labels: a label per row, shown left of its first panel.
        title: the figure title.

    Returns:
        ``(rows, columns)`` of the grid.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_rows, n_cols = len(rows), max((len(r) for r in rows), default=1)
    fig = Figure(figsize=(3.1 * n_cols, 3.0 * n_rows + 0.5), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, row in enumerate(rows):
        vmax = max((float(np.percentile(np.abs(p[1]), 99.5)) for p in row if p[2] != "error"), default=0.0) or 1.0
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.set_visible(False)
                continue
            name, img, kind = row[c]
            img = np.abs(np.asarray(img, dtype=np.float64))
            if kind == "error":
                shown = ax.imshow(img, cmap="magma", vmin=0.0, vmax=float(img.max()) or 1.0)
            else:
                shown = ax.imshow(img, cmap="gray", vmin=0.0, vmax=vmax)
            fig.colorbar(shown, ax=ax, shrink=0.8)
            ax.set_title(name, fontsize=8)
            if c == 0 and row_labels:
                ax.set_ylabel(row_labels[r], fontsize=9)
    _save(fig, path, title, fontsize=10)
    return n_rows, n_cols


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pairs = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and "step" in r]
    return [float(p[0]) for p in pairs], [float(p[1]) for p in pairs]


def _plot_line(ax: Any, xs: list[float], ys: list[float], *args: Any, marker: str = "o", **kwargs: Any) -> None:
    """A line with markers, so that a single point stays visible (markers only up to 60 points)."""
    ax.plot(xs, ys, *args, marker=marker if len(xs) <= 60 or len(xs) == 1 else None, markersize=4, **kwargs)


def training_curves(records: list[dict[str, Any]], path: str | Path, *, title: str = "") -> int:
    """Save ``RUN/curves.png``: loss, held-out NMSE (EMA model and its input, per σ), learning rate, throughput.

    Every curve is drawn with markers, so a run with one logged point shows it. Written atomically.

    Args:
        records: the lines of ``metrics.jsonl`` (``step``, ``loss``, ``lr``, ``images_per_second``,
            ``heldout_nmse@σ`` and ``heldout_input_nmse@σ`` where evaluated).
        path: the PNG.
        title: the figure title.

    Returns:
        How many logged points the loss panel shows.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.0, 7.0), dpi=80)  # fixed margins: constrained layout doubles the time
    FigureCanvasAgg(fig)
    (ax_loss, ax_eval), (ax_lr, ax_speed) = fig.subplots(2, 2)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.9, hspace=0.35, wspace=0.22)
    xs, ys = _series(records, "loss")
    _plot_line(ax_loss, xs, ys, lw=1)
    if ys and min(ys) > 0:
        ax_loss.set_yscale("log")
    ax_loss.set_title("training loss (mean over each logged window)")
    keys = sorted({k for r in records for k in r if k.startswith("heldout_nmse@")}, key=lambda k: float(k[13:]))
    for i, key in enumerate(keys):
        sigma = key.split("@", 1)[1]
        _plot_line(ax_eval, *_series(records, key), "-", color=f"C{i}", label=f"EMA model, σ={sigma}")
        _plot_line(ax_eval, *_series(records, f"heldout_input_nmse@{sigma}"), "--", color=f"C{i}", alpha=0.6,
                   marker="s", mfc="none", label=f"its input, σ={sigma}")
    if keys:
        ax_eval.set_yscale("log")
        ax_eval.legend(fontsize=7)
    else:
        ax_eval.text(0.5, 0.5, "no held-out evaluation\n(training.heldout_store, training.eval_every)",
                     ha="center", va="center", transform=ax_eval.transAxes)
    ax_eval.set_title("held-out denoising NMSE: model below its input = learning")
    _plot_line(ax_lr, *_series(records, "lr"), lw=1, color="C2")
    ax_lr.set_title("learning rate")
    _plot_line(ax_speed, *_series(records, "images_per_second"), lw=1, color="C3")
    ax_speed.set_title("throughput (images/s)")
    for ax in (ax_loss, ax_eval, ax_lr, ax_speed):
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    _save(fig, path, title)
    return len(xs)


def sampleset_figure(path: str | Path, generated: np.ndarray, reference: np.ndarray, spectrum: dict[str, Any],
                     energy: dict[str, Any] | None = None, *, show: int = 4, title: str = "") -> int:
    """Save ``compare-samples``' PNG: generated scans beside held-out scans, the radial spectra, the energy bar.

    Args:
        generated, reference: magnitude images ``(N, H, W)`` (the first ``show`` of each are drawn).
        spectrum: :func:`~ambientmri.evaluation.sampleset.radial_spectrum_distance`'s dict
            (``frequency``, ``generated``, ``reference``, ``distance``).
        energy: the report's ``unmeasured_energy`` (``generated``, ``reference``, ``ratio``), or None.
        show: how many scans of each set.
        title: the figure title.

    Returns:
        How many scans of each set are drawn.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = max(1, min(show, len(generated), len(reference)))
    fig = Figure(figsize=(2.2 * k + 8.5, 5.0), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, k + 2, width_ratios=[1.0] * k + [2.2, 1.4])
    for row, (label, images) in enumerate((("generated", generated), ("held-out", reference))):
        for i in range(k):
            ax = fig.add_subplot(grid[row, i])
            img = np.abs(np.asarray(images[i], dtype=np.float64))
            ax.imshow(img, cmap="gray", vmin=0.0, vmax=float(np.percentile(img, 99.5)) or 1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label)
    ax = fig.add_subplot(grid[:, k])
    freq = spectrum["frequency"]
    ax.plot(freq, spectrum["generated"], marker="o", markersize=2.5, label="generated")
    ax.plot(freq, spectrum["reference"], marker="o", markersize=2.5, label="held-out")
    ax.set_xlabel("spatial frequency (cycles/pixel)")
    ax.set_ylabel("log10 mean radial power")
    ax.set_title(f"radial power spectra (distance {spectrum['distance']:.3g})", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    ax = fig.add_subplot(grid[:, k + 1])
    if energy:
        ax.bar(["generated", "held-out"], [energy["generated"], energy["reference"]], color=["C0", "C1"])
        ratio = "n/a" if energy.get("ratio") is None else f"{energy['ratio']:.2f}"
        ax.set_title(f"energy where training\nrarely sampled (ratio {ratio})", fontsize=9)
        ax.set_ylabel("fraction of k-space energy")
    else:
        ax.text(0.5, 0.5, "rarely-sampled energy:\nneeds --store\n(a k-space store)", ha="center", va="center",
                transform=ax.transAxes, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, path, title)
    return k


def _save(fig: Any, path: str | Path, title: str = "", fontsize: float | None = None) -> None:
    """Give ``fig`` its title, write it to ``path`` as PNG atomically and free it."""
    if title:
        fig.suptitle(title, **({"fontsize": fontsize} if fontsize else {}))
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        fig.clear()
