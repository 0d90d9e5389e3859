"""Writing generated scans: complex samples (HDF5 and .npy), a magnitude NIfTI and a PNG grid."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ambientmri.data.medical import write_nifti
from ambientmri.outputs import output_dir
from ambientmri.utils import save_npy_atomic, write_json_atomic

__all__ = ["earlier_samples", "plot_grid", "samples_checkpoint_hash", "write_samples"]


def plot_grid(images: np.ndarray, path: str | Path, *, title: str = "", columns: int | None = None) -> Path:
    """Save magnitude images ``(N, H, W)`` as one PNG grid (each image scaled to its 99.5th percentile)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = images.shape[0]
    cols = columns or min(n, 8)
    rows = math.ceil(n / cols)
    aspect = images.shape[1] / images.shape[2]
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.8 * rows * aspect + (0.4 if title else 0)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            img = images[k]
            ax.imshow(img, cmap="gray", vmin=0, vmax=float(np.percentile(img, 99.5)) or 1.0)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


SAMPLE_FILES = ("samples.h5", "samples.npy", "samples.nii.gz", "grid.png", "meta.json")


def earlier_samples(folder: Path) -> bool:
    """An ``ambientmri sample`` output of a version without output markers: only its five files."""
    names = {p.name for p in folder.iterdir()}
    return "meta.json" in names and names <= set(SAMPLE_FILES)


def write_samples(
    samples: np.ndarray,
    out: str | Path,
    meta: dict[str, Any],
    *,
    inputs: Sequence[str | Path | None] = (),
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write generated complex images ``(N, H, W)`` into the folder ``out`` as a whole (atomically).

    Files: ``samples.h5`` (dataset ``samples``, complex64, with the metadata as JSON in the attribute
    ``meta``), ``samples.npy`` (complex64), ``samples.nii.gz`` (magnitude, one sample per slice),
    ``grid.png`` and ``meta.json``. An existing ``out`` is replaced only if it is an earlier
    ``sample`` output, or with ``overwrite`` (:func:`ambientmri.outputs.output_dir`); ``out`` may not
    be, hold or lie inside any of ``inputs`` (the run).
    """
    samples = np.asarray(samples, dtype=np.complex64)
    if samples.ndim != 3:
        raise ValueError(f"samples must be (N, H, W), got {samples.shape}")
    if not np.isfinite(samples).all():
        raise FloatingPointError("generated samples contain NaN or Inf; nothing was written")
    out = Path(out)
    with output_dir(out, "sample", inputs=inputs, overwrite=overwrite, recognise=earlier_samples) as tmp:
        with h5py.File(tmp / "samples.h5", "w") as f:
            f.create_dataset("samples", data=samples)
            f.attrs["meta"] = json.dumps(meta)
        save_npy_atomic(tmp / "samples.npy", samples)
        magnitude = np.abs(samples).astype(np.float32)
        write_nifti(tmp / "samples.nii.gz", magnitude, description="ambientmri generated samples (magnitude)")
        plot_grid(magnitude, tmp / "grid.png", title=str(meta.get("title", "")))
        write_json_atomic(tmp / "meta.json", meta)
    return {name: out / name for name in SAMPLE_FILES}


def samples_checkpoint_hash(samples: str | Path) -> str | None:
    """The weights fingerprint an ``ambientmri sample`` folder's ``meta.json`` records, else None."""
    p = Path(samples)
    meta = (p if p.is_dir() else p.parent) / "meta.json"
    if not meta.is_file():
        return None
    try:
        value = json.loads(meta.read_text(encoding="utf-8")).get("checkpoint_hash")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    return str(value) if value else None


_earlier_samples = earlier_samples  # the former private name, kept for existing callers
