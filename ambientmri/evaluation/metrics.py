"""Reconstruction metrics: fastMRI's NMSE, PSNR and SSIM, and Aali-style per-slice metrics.

The volume metrics are an independent implementation of ``fastmri/evaluate.py`` (facebookresearch
fastMRI, PyPI ``fastmri`` 0.3.0); ambientmri never imports ``fastmri``. On magnitude volumes
``(slices, H, W)``:

- ``nmse = ‖gt − pred‖² / ‖gt‖²`` over the whole volume (computed in the arrays' own dtype, as
  fastMRI does: float32 for files);
- ``psnr = skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=gt.max())``, i.e.
  ``10 log10(max(gt)² / mean((gt − pred)²))`` over the volume;
- ``ssim`` = the mean over slices of ``skimage.metrics.structural_similarity(gt[i], pred[i],
  data_range=gt.max())`` with skimage's defaults (7×7 uniform window) and the *volume* maximum.

fastMRI's ``evaluate`` first crops the target to ``(w, w)`` with ``w`` the target's width, then
crops the reconstruction to the same ``(w, w)`` (fastMRI ``center_crop`` offsets
``(size − crop) // 2``). The metrics are computed per volume and then averaged over volumes.

:func:`slice_metrics` gives the per-slice numbers of Aali et al. (ICLR 2025) instead: NRMSE,
``PSNR = 20 log10(max|gt| / RMSE)`` and SSIM with ``data_range = max|gt| − min|gt|``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ambientmri.data.fastmri import TARGET_NAMES
from ambientmri.errors import InputError, one_line
from ambientmri.operators.fft import center_crop
from ambientmri.utils import write_json_atomic, write_text_atomic

__all__ = [
    "CHALLENGES",
    "METRIC_NAMES",
    "PREDICTION_KEY",
    "evaluate_folders",
    "evaluate_volumes",
    "fastmri_crop",
    "image_targets",
    "nmse",
    "psnr",
    "slice_metrics",
    "ssim",
    "target_key_for_challenge",
    "volume_metrics",
    "write_metrics_csv",
    "write_metrics_json",
]

METRIC_NAMES = ("nmse", "psnr", "ssim")
CHALLENGES = ("singlecoil", "multicoil")
PREDICTION_KEY = "reconstruction"
_H5_SUFFIXES = (".h5", ".hdf5")


# --------------------------------------------------------------------------------------------
# fastMRI's volume metrics
# --------------------------------------------------------------------------------------------


def _pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred shapes differ: {gt.shape} vs {pred.shape}")
    return gt, pred


def nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Normalised mean squared error ``‖gt − pred‖² / ‖gt‖²`` over the whole array (fastMRI ``nmse``).

    Computed in the inputs' dtype exactly as fastMRI does (``np.linalg.norm`` squared), so float32
    volumes give the float32 result fastMRI reports.
    """
    gt, pred = _pair(gt, pred)
    return float(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)


def psnr(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB over the whole array (fastMRI ``psnr``).

    ``skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=maxval)`` with ``maxval``
    defaulting to ``gt.max()``: ``10 log10(maxval² / mean((gt − pred)²))``. ``inf`` when
    ``pred == gt``.
    """
    gt, pred = _pair(gt, pred)
    if maxval is None:
        maxval = gt.max()
    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(gt, pred, data_range=maxval))


def ssim(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """Structural similarity of a volume ``(slices, H, W)``: the mean of per-slice SSIMs (fastMRI ``ssim``).

    Each slice uses ``skimage.metrics.structural_similarity(gt[i], pred[i], data_range=maxval)``
    with skimage's defaults (7×7 uniform window, K1 0.01, K2 0.03, sample covariance) and
    ``maxval = gt.max()`` of the whole volume unless given.

    Raises:
        ValueError: ``gt`` is not 3-D, the shapes differ, or a slice is smaller than 7×7.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.ndim != 3:
        raise ValueError(f"ssim needs volumes (slices, H, W); gt has shape {gt.shape}")
    gt, pred = _pair(gt, pred)
    maxval = gt.max() if maxval is None else maxval
    total = 0.0
    for i in range(gt.shape[0]):
        total = total + float(structural_similarity(gt[i], pred[i], data_range=maxval))
    return total / gt.shape[0]


def fastmri_crop(target: np.ndarray, reconstruction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both volumes as ``fastmri.evaluate.evaluate`` does before computing the metrics.

    The target is center-cropped to ``(w, w)`` with ``w = target.shape[-1]`` (its width), and the
    reconstruction to the same ``(w, w)``; offsets ``(size − crop) // 2`` on each axis.

    Raises:
        ValueError: the target is wider than it is tall, or the reconstruction is smaller than
            ``(w, w)`` (fastMRI fails on both).
    """
    width = int(target.shape[-1])
    return center_crop(target, (width, width)), center_crop(reconstruction, (width, width))


def volume_metrics(target: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """``{"nmse", "psnr", "ssim"}`` of one volume pair that is already cropped to the same shape."""
    return {
        "nmse": nmse(target, reconstruction),
        "psnr": psnr(target, reconstruction),
        "ssim": ssim(target, reconstruction),
    }


def _check_volume(volume: Any, name: str, what: str) -> np.ndarray:
    """A real floating (slices, H, W) volume without NaN/Inf, else InputError naming ``name``."""
    arr = np.asarray(volume)
    if arr.dtype.kind == "c":
        raise InputError(name, f"{what} is complex ({arr.dtype}); the metrics compare magnitude images")
    if arr.dtype.kind not in "fiu":
        raise InputError(name, f"{what} has dtype {arr.dtype}; expected floating point")
    if arr.ndim != 3:
        raise InputError(name, f"{what} has shape {arr.shape}; expected a volume (slices, H, W)")
    if min(arr.shape) == 0:
        raise InputError(name, f"{what} is empty, shape {arr.shape}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    finite = np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1)
    if not finite.all():
        raise InputError(name, f"{what} contains NaN or Inf (slice {int(np.flatnonzero(~finite)[0])})")
    return arr


def _evaluate_pair(
    target: np.ndarray, reconstruction: np.ndarray, target_name: str, prediction_name: str, target_what: str
) -> dict[str, float]:
    """Crop as fastMRI does, check the shapes, and compute the three metrics of one volume."""
    slices, height, width = target.shape
    if height < width:
        raise InputError(
            target_name,
            f"{target_what} is {height}x{width}; fastMRI's evaluation crops it to {width}x{width}, "
            "which needs a target at least as tall as it is wide",
        )
    if reconstruction.shape[0] != slices:
        raise InputError(
            prediction_name,
            f"reconstruction has {reconstruction.shape[0]} slices, the target has {slices}",
        )
    if reconstruction.shape[1] < width or reconstruction.shape[2] < width:
        raise InputError(
            prediction_name,
            f"reconstruction is {reconstruction.shape[1]}x{reconstruction.shape[2]}, smaller than the "
            f"{width}x{width} evaluation crop of the {height}x{width} target",
        )
    if width < 7:
        raise InputError(target_name, f"{target_what} is {height}x{width}; SSIM's 7x7 window needs at least 7x7")
    gt, pred = fastmri_crop(target, reconstruction)
    if not np.any(gt):
        raise InputError(
            target_name, f"{target_what} is all zeros inside the evaluation crop; NMSE and PSNR are undefined"
        )
    return volume_metrics(gt, pred)


def _summarise(volumes: dict[str, dict[str, float]], notes: list[str]) -> dict[str, Any]:
    """The result dict: running means over volumes (runstats' update, in float64), sample stds."""
    mean: dict[str, float | None] = {}
    std: dict[str, float | None] = {}
    for metric in METRIC_NAMES:
        values = [volumes[name][metric] for name in volumes]
        all_finite = all(math.isfinite(v) for v in values)
        eta = 0.0
        for count, value in enumerate(values, start=1):
            eta += (value - eta) / count  # fastMRI's runstats.Statistics.push
        if not all_finite:  # the running update turns inf into nan; the plain mean keeps inf
            eta = float(np.mean(values))
        mean[metric] = eta if values else None
        std[metric] = float(np.std(values, ddof=1)) if len(values) > 1 and all_finite else None
    return {"mean": mean, "std": std, "num_volumes": len(volumes), "volumes": volumes, "notes": notes}


def evaluate_volumes(targets: Mapping[str, np.ndarray], predictions: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """fastMRI metrics of reconstructions against targets, per volume and averaged over volumes.

    Args:
        targets: ``{name: (slices, H, W)}`` real magnitude target volumes (``H ≥ W``).
        predictions: ``{name: (slices, H', W')}`` reconstructions, ``H', W' ≥ W``; every target
            needs one. Predictions without a target are ignored (and listed in ``notes``).

    Returns:
        ``{"mean": {"nmse", "psnr", "ssim"}, "std": {...}, "num_volumes", "volumes": {name:
        {"nmse", "psnr", "ssim"}}, "notes": [...]}``; volumes in sorted name order; ``std`` is the
        sample standard deviation over volumes (None for a single volume).

    Raises:
        InputError: (a ``ValueError``) naming the volume: missing prediction, shape mismatch,
            complex or non-finite values, an all-zero target.
    """
    if not targets:
        raise ValueError("evaluate_volumes: no target volumes given")
    volumes: dict[str, dict[str, float]] = {}
    for name in sorted(targets):
        if name not in predictions:
            raise InputError(name, "no prediction for this target volume")
        target = _check_volume(targets[name], name, "target")
        pred = _check_volume(predictions[name], name, "reconstruction")
        volumes[name] = _evaluate_pair(target, pred, name, name, "target")
    extra = sorted(set(predictions) - set(targets))
    notes = [f"ignored {len(extra)} prediction(s) without a target: {', '.join(extra)}"] if extra else []
    return _summarise(volumes, notes)


# --------------------------------------------------------------------------------------------
# Folders of HDF5 files
# --------------------------------------------------------------------------------------------


def target_key_for_challenge(challenge: str) -> str:
    """fastMRI's target dataset for a challenge: ``reconstruction_rss`` (multicoil) or ``reconstruction_esc``."""
    if challenge not in CHALLENGES:
        raise ValueError(f"challenge must be one of {list(CHALLENGES)}, got {challenge!r}")
    return "reconstruction_rss" if challenge == "multicoil" else "reconstruction_esc"


@contextlib.contextmanager
def _open_h5(path: Path) -> Iterator[h5py.File]:
    if not path.exists():
        raise InputError(path, "no such file")
    if not path.is_file():
        raise InputError(path, "is not a file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(path, f"cannot open HDF5 file, truncated or corrupt ({one_line(exc)})") from None
    try:
        yield f
    finally:
        f.close()


def _read_dataset(f: h5py.File, path: Path, key: str) -> np.ndarray:
    ds = f.get(key)
    if not isinstance(ds, h5py.Dataset):
        raise InputError(path, f"has no '{key}' dataset; it holds {sorted(f.keys())}")
    try:
        return np.asarray(ds[()])
    except (OSError, RuntimeError) as exc:
        raise InputError(path, f"cannot read '{key}', truncated or corrupt ({one_line(exc)})") from None


def _choose_target_key(
    f: h5py.File, path: Path, target_key: str | None, challenge: str | None
) -> tuple[str, str | None]:
    """The target dataset to evaluate against, and a note when it is a fallback."""
    if target_key is not None:
        if target_key not in f:
            raise InputError(path, f"has no '{target_key}' dataset; it holds {sorted(f.keys())}")
        return target_key, None
    present = [key for key in TARGET_NAMES if isinstance(f.get(key), h5py.Dataset)]
    how = "given"
    if challenge is None:
        kspace = f.get("kspace")
        if isinstance(kspace, h5py.Dataset) and kspace.ndim in (3, 4):
            challenge, how = ("singlecoil" if kspace.ndim == 3 else "multicoil"), "from its k-space"
        elif len(present) == 2:
            challenge, how = "singlecoil", "it has reconstruction_esc"
    if challenge is not None:
        preferred = target_key_for_challenge(challenge)
        if preferred in present:
            return preferred, None
        if present:
            return present[0], (
                f"{path.name}: no '{preferred}' (challenge {challenge}, {how}); evaluated against '{present[0]}'"
            )
    elif present:
        return present[0], None
    raise InputError(
        path, "has no reconstruction_esc or reconstruction_rss target (a test/challenge file, or not a target?)"
    )


def _h5_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in _H5_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def evaluate_folders(
    targets_dir: str | Path,
    predictions_dir: str | Path,
    *,
    target_key: str | None = None,
    challenge: str | None = None,
    acquisition: str | None = None,
) -> dict[str, Any]:
    """fastMRI's ``evaluate``: every target file against the prediction file of the same name.

    Args:
        targets_dir: fastMRI train/val files (``*.h5``) holding ``reconstruction_rss`` and/or
            ``reconstruction_esc`` (k-space is not needed); or, without any ``.h5``, NIfTI files or
            DICOM series (magnitude volumes), each scored against ``NAME.h5`` (``NAME``: the file
            name without ``.nii``/``.nii.gz``, or the series folder's name), the target first
            center-cropped to the reconstruction's size when larger.
        predictions_dir: challenge-style files of the same names, each with a ``reconstruction``
            dataset ``(slices, H, W)`` of real magnitudes (float32). Files without a target are
            ignored (listed in ``notes``).
        target_key: the target dataset to use in every file; overrides ``challenge``.
        challenge: ``"multicoil"`` → ``reconstruction_rss``, ``"singlecoil"`` →
            ``reconstruction_esc`` (fastMRI's choice). Default: per file, singlecoil when its
            k-space is 3-D (or, without k-space, when both targets exist), multicoil when 4-D.
            A file lacking the chosen target is evaluated against the one it has; ``notes`` says so.
        acquisition: if set, only files whose ``acquisition`` attribute equals it (fastMRI's
            ``--acquisition``).

    Returns:
        The :func:`evaluate_volumes` dict keyed by file name, plus ``"target_keys": {file name:
        dataset used}``.

    Raises:
        InputError: one line naming the file: a missing or corrupt file, a missing dataset, a
            shape mismatch, NaN/Inf, complex values; or naming a folder that is missing or empty.
    """
    targets_dir, predictions_dir = Path(targets_dir), Path(predictions_dir)
    if challenge is not None:
        target_key_for_challenge(challenge)  # validate
    for folder in (targets_dir, predictions_dir):
        if not folder.is_dir():
            raise InputError(folder, "no such folder")
    target_files = _h5_files(targets_dir)
    if not target_files:
        images = image_targets(targets_dir)
        if images is None:
            raise InputError(targets_dir, "holds no .h5 target files, and no NIfTI or DICOM series either")
        return _evaluate_image_targets(images, targets_dir, predictions_dir, acquisition)

    volumes: dict[str, dict[str, float]] = {}
    keys: dict[str, str] = {}
    notes: list[str] = []
    skipped = 0
    for tpath in target_files:
        with _open_h5(tpath) as f:
            if acquisition is not None and _attr_str(f.attrs.get("acquisition")) != acquisition:
                skipped += 1
                continue
            key, note = _choose_target_key(f, tpath, target_key, challenge)
            target = _read_dataset(f, tpath, key)
        ppath = predictions_dir / tpath.name
        if not ppath.exists():
            raise InputError(ppath, f"missing: no reconstruction for the target {tpath}")
        with _open_h5(ppath) as f:
            pred = _read_dataset(f, ppath, PREDICTION_KEY)
        target = _check_volume(target, str(tpath), f"'{key}'")
        pred = _check_volume(pred, str(ppath), f"'{PREDICTION_KEY}'")
        volumes[tpath.name] = _evaluate_pair(target, pred, str(tpath), str(ppath), f"'{key}'")
        keys[tpath.name] = key
        if note:
            notes.append(note)
    if not volumes:
        raise InputError(targets_dir, f"no target file has acquisition {acquisition!r}")
    if skipped:
        notes.append(f"skipped {skipped} target file(s) whose acquisition is not {acquisition}")
    names = {p.name for p in target_files}
    extra = [p.name for p in _h5_files(predictions_dir) if p.name not in names]
    if extra:
        notes.append(f"ignored {len(extra)} prediction file(s) without a target: {', '.join(extra)}")
    result = _summarise(volumes, notes)
    result["target_keys"] = keys
    return result


def image_targets(folder: str | Path) -> tuple[str, list[tuple[str, Path]]] | None:
    """The NIfTI files (or else the DICOM series) under ``folder`` as ``(kind, [(name, path)])``; None if none.

    ``name`` is what ``reconstruct`` names the volume's prediction (``NAME.h5``): the file name without
    ``.nii``/``.nii.gz``, or the series folder's name.
    """
    from ambientmri.data.sources import discover, open_source

    for kind in ("nifti", "dicom"):
        try:
            paths = discover(Path(folder), kind)
        except InputError:
            continue
        return kind, [(open_source(p, kind).name, p) for p in paths]
    return None


def _image_target(path: Path, kind: str) -> np.ndarray:
    from ambientmri.data.sources import open_source

    return np.abs(np.asarray(open_source(path, kind).images, dtype=np.float32))


def _evaluate_image_targets(
    images: tuple[str, list[tuple[str, Path]]], targets_dir: Path, predictions_dir: Path, acquisition: str | None
) -> dict[str, Any]:
    """:func:`evaluate_folders` on NIfTI/DICOM magnitude targets: each against ``NAME.h5`` of ``predictions_dir``.

    A target larger than its reconstruction (``reconstruct`` crops to the recipe's ``data.crop``) is
    first center-cropped to the reconstruction's size; then fastMRI's crop and metrics apply.
    """
    kind, entries = images
    label = {"nifti": "NIfTI image", "dicom": "DICOM series"}[kind]
    volumes: dict[str, dict[str, float]] = {}
    keys: dict[str, str] = {}
    notes = [f"targets: {label} magnitudes under {targets_dir}"]
    if acquisition is not None:
        notes.append(f"--acquisition {acquisition} ignored: {label}s have no fastMRI acquisition attribute")
    for name, tpath in entries:
        ppath = predictions_dir / f"{name}.h5"
        if not ppath.exists():
            raise InputError(ppath, f"missing: no reconstruction for the target {tpath}")
        with _open_h5(ppath) as f:
            pred = _check_volume(_read_dataset(f, ppath, PREDICTION_KEY), str(ppath), f"'{PREDICTION_KEY}'")
        target = _check_volume(_image_target(tpath, kind), str(tpath), label)
        h, w = pred.shape[1:]
        if target.shape[1] >= h and target.shape[2] >= w and target.shape[1:] != pred.shape[1:]:
            target = center_crop(target, (h, w))
            notes.append(f"{name}: the {label} was center-cropped to the reconstruction's {h}x{w}")
        volumes[f"{name}.h5"] = _evaluate_pair(target, pred, str(tpath), str(ppath), label)
        keys[f"{name}.h5"] = kind
    result = _summarise(volumes, notes)
    result["target_keys"] = keys
    return result


def _attr_str(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return None if value is None else str(value)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _json_safe(obj: Any) -> Any:
    """Non-finite floats become None (``null``): strict JSON has no Infinity/NaN."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_metrics_json(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write an evaluation result as indented JSON, atomically.

    Non-finite numbers (``psnr`` of a reconstruction identical to its target is ``inf``) are
    written as ``null``.
    """
    path = Path(path)
    write_json_atomic(path, _json_safe(dict(result)))
    return path


def write_metrics_csv(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write an evaluation result as CSV, atomically.

    Columns ``volume,nmse,psnr,ssim``: one row per volume, then a ``mean`` row and a ``std`` row
    (empty cells where undefined). Numbers use Python's shortest round-trip ``repr``.
    """

    def cell(value: Any) -> str:
        return "" if value is None else repr(float(value))

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["volume", *METRIC_NAMES])
    for name, row in result["volumes"].items():
        writer.writerow([name, *(cell(row[m]) for m in METRIC_NAMES)])
    for label in ("mean", "std"):
        stats = result.get(label) or {}
        writer.writerow([label, *(cell(stats.get(m)) for m in METRIC_NAMES)])
    path = Path(path)
    write_text_atomic(path, buf.getvalue())
    return path


# --------------------------------------------------------------------------------------------
# Aali-style per-slice metrics
# --------------------------------------------------------------------------------------------


def slice_metrics(gt: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Per-slice NRMSE, PSNR and SSIM on magnitude images, as Aali et al. (ICLR 2025) report them.

    With ``g = |gt|`` and ``p = |pred|`` (complex inputs become magnitudes), in float64:

    - ``nrmse = ‖g − p‖ / ‖g‖``;
    - ``psnr = 20 log10(max(g) / sqrt(mean((g − p)²)))`` (dB; ``inf`` when ``p == g``);
    - ``ssim = structural_similarity(g, p, data_range=max(g) − min(g))`` (skimage defaults).

    Args:
        gt, pred: one slice ``(H, W)``, or a stack ``(N, H, W)`` evaluated slice by slice.

    Returns:
        ``{"nrmse", "psnr", "ssim"}``: floats for one slice, float64 arrays ``(N,)`` for a stack.

    Raises:
        ValueError: shapes differ or are not 2-D/3-D, NaN/Inf, or an all-zero reference slice.
    """
    g = np.abs(np.asarray(gt)).astype(np.float64)
    p = np.abs(np.asarray(pred)).astype(np.float64)
    if g.shape != p.shape:
        raise ValueError(f"gt and pred shapes differ: {g.shape} vs {p.shape}")
    if g.ndim not in (2, 3):
        raise ValueError(f"slice_metrics needs (H, W) or (N, H, W) images, got shape {g.shape}")
    if not (np.isfinite(g).all() and np.isfinite(p).all()):
        raise ValueError("slice_metrics: gt or pred contains NaN or Inf")
    stack_g, stack_p = (g[None], p[None]) if g.ndim == 2 else (g, p)
    out: dict[str, list[float]] = {"nrmse": [], "psnr": [], "ssim": []}
    for i, (a, b) in enumerate(zip(stack_g, stack_p, strict=True)):
        norm = np.linalg.norm(a)
        if norm == 0:
            raise ValueError(f"slice_metrics: reference slice {i} is all zeros")
        err = np.linalg.norm(a - b)
        rmse = err / math.sqrt(a.size)
        out["nrmse"].append(float(err / norm))
        out["psnr"].append(float(20 * math.log10(a.max() / rmse)) if rmse > 0 else math.inf)
        out["ssim"].append(float(structural_similarity(a, b, data_range=float(a.max() - a.min()))))
    if g.ndim == 2:
        return {k: v[0] for k, v in out.items()}
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
