"""Generate golden fastMRI metric values with the reference fastMRI package.

Run with the separate reference environment (ambientmri itself never imports fastmri)::

    /opt/fmref/bin/python tests/golden/make_golden_metrics.py

It writes ``tests/golden/fastmri_metrics.npz`` holding, for a few small seeded volumes,

* ``target_<name>`` and ``pred_<name>``: float32 target and reconstruction volumes; some targets
  are taller than wide and some reconstructions larger than the target, so fastMRI's crops
  (target to ``(w, w)``, reconstruction to the same) are exercised, with odd offsets;
* ``meta``: UTF-8 JSON (as uint8) with

  - ``volumes``: ``{name: {"acquisition", "cropped_shape", "nmse", "psnr", "ssim"}}``: fastMRI's
    ``nmse``/``psnr``/``ssim`` on the volumes after ``fastmri.data.transforms.center_crop`` as
    ``evaluate`` crops them;
  - ``evaluate``: ``fastmri.evaluate.evaluate`` run on folders of HDF5 files (targets holding
    ``reconstruction_esc`` = the target and ``reconstruction_rss`` = the target times
    ``float32(1.1)``; predictions holding ``reconstruction``), for the ``reconstruction_esc`` and
    ``reconstruction_rss`` keys and for ``--acquisition CORPD_FBK``: the means and standard
    deviations (``Metrics.means()``, ``Metrics.stddevs()``);
  - provenance (package versions).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import h5py
import numpy as np
import skimage
from fastmri import evaluate as fm_evaluate
from fastmri.data import transforms

OUT = Path(__file__).with_name("fastmri_metrics.npz")
RSS_FACTOR = np.float32(1.1)

# name: (target shape, reconstruction shape, acquisition, kind of reconstruction)
CASES = {
    "file_a.h5": ((3, 32, 32), (3, 32, 32), "CORPD_FBK", "noise"),
    "file_b.h5": ((3, 40, 32), (3, 48, 44), "CORPD_FBK", "noise"),
    "file_c.h5": ((2, 25, 23), (2, 27, 26), "AXT2", "blur"),
    "file_d.h5": ((2, 24, 24), (2, 24, 24), "CORPDFS_FBK", "scaled"),
}


def phantom(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth, structured, non-negative volume: a few Gaussian blobs on a dim disc, plus noise."""
    slices, h, w = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    vol = np.empty(shape, dtype=np.float64)
    for s in range(slices):
        img = 0.2 * (xx**2 + yy**2 < 0.8)
        for _ in range(5):
            cy, cx = rng.uniform(-0.6, 0.6, 2)
            width = rng.uniform(0.08, 0.3)
            img = img + rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
        vol[s] = img + 0.01 * np.abs(rng.standard_normal((h, w)))
    return (vol * 1e-4).astype(np.float32)  # fastMRI targets are of order 1e-4


def reconstruction(target: np.ndarray, shape: tuple[int, int, int], kind: str, rng: np.random.Generator) -> np.ndarray:
    """A reconstruction of ``shape``: the target (padded/embedded at fastMRI's crop offsets) degraded."""
    _, h, w = target.shape
    pad = np.abs(rng.standard_normal(shape)).astype(np.float32) * target.max() * 0.05
    # embed the target's central w x w at the offsets fastMRI's center_crop uses on the reconstruction
    t = target[:, (h - w) // 2 : (h - w) // 2 + w, :]
    top, left = (shape[1] - w) // 2, (shape[2] - w) // 2
    pad[:, top : top + w, left : left + w] = t
    if kind == "noise":
        pad = pad + rng.normal(0.0, 0.08 * float(target.max()), shape).astype(np.float32)
    elif kind == "blur":
        kernel = np.ones(3) / 3.0
        for axis in (1, 2):
            pad = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, pad)
        pad = pad + rng.normal(0.0, 0.02 * float(target.max()), shape)
    elif kind == "scaled":
        pad = 0.9 * pad + rng.normal(0.0, 0.03 * float(target.max()), shape)
    return np.abs(pad).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(20240607)
    arrays: dict[str, np.ndarray] = {}
    volumes: dict[str, dict] = {}
    for name, (tshape, pshape, acquisition, kind) in CASES.items():
        target = phantom(tshape, rng)
        pred = reconstruction(target, pshape, kind, rng)
        arrays[f"target_{name}"] = target
        arrays[f"pred_{name}"] = pred
        width = target.shape[-1]
        gt = transforms.center_crop(target, (width, width))
        rc = transforms.center_crop(pred, (width, width))
        volumes[name] = {
            "acquisition": acquisition,
            "cropped_shape": list(gt.shape),
            "nmse": float(fm_evaluate.nmse(gt, rc)),
            "psnr": float(fm_evaluate.psnr(gt, rc)),
            "ssim": float(fm_evaluate.ssim(gt, rc)[0]),
        }

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        tdir, pdir = Path(tmp, "targets"), Path(tmp, "predictions")
        tdir.mkdir()
        pdir.mkdir()
        for name, (_, _, acquisition, _) in CASES.items():
            target = arrays[f"target_{name}"]
            with h5py.File(tdir / name, "w") as f:
                f.create_dataset("reconstruction_esc", data=target)
                f.create_dataset("reconstruction_rss", data=target * RSS_FACTOR)
                f.attrs["acquisition"] = acquisition
            with h5py.File(pdir / name, "w") as f:
                f.create_dataset("reconstruction", data=arrays[f"pred_{name}"])
        for label, key, acq in (
            ("esc", "reconstruction_esc", None),
            ("rss", "reconstruction_rss", None),
            ("rss_CORPD_FBK", "reconstruction_rss", "CORPD_FBK"),
        ):
            args = argparse.Namespace(target_path=tdir, predictions_path=pdir, acquisition=acq, acceleration=None)
            metrics = fm_evaluate.evaluate(args, key)
            means, stds = metrics.means(), metrics.stddevs()
            runs[label] = {
                "key": key,
                "acquisition": acq,
                "mean": {m.lower(): float(np.ravel(v)[0]) for m, v in means.items()},
                "std": {m.lower(): float(np.ravel(v)[0]) for m, v in stds.items()},
            }

    import fastmri

    meta = {
        "volumes": volumes,
        "evaluate": runs,
        "rss_factor": float(RSS_FACTOR),
        "provenance": {
            "fastmri": getattr(fastmri, "__version__", "0.3.0"),
            "numpy": np.__version__,
            "scikit-image": skimage.__version__,
            "h5py": h5py.__version__,
            "script": "tests/golden/make_golden_metrics.py",
        },
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta, indent=1).encode("utf-8"), dtype=np.uint8)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
