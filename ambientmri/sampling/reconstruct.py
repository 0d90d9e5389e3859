"""``ambientmri reconstruct``: undersampled scans in, fastMRI-challenge-style reconstructions out.

The input (a fastMRI file or folder, NIfTI, or DICOM series) is prepared exactly as training data
is, into a temporary store: test/challenge files keep their own mask; fully sampled files are
undersampled with the recipe's mask, seeded per volume like fastMRI (``tuple(map(ord, name))``);
NIfTI/DICOM magnitude images get simulated single-coil k-space. Each slice is then reconstructed
in the store's normalised units by the chosen method (its settings: a typed config of
:mod:`ambientmri.sampling.methods`), multiplied back by its scale.

The loop (:func:`_volumes`) yields one :class:`VolumeResult` per volume; the writers then put in
``out``:

- ``NAME.h5``: what fastMRI's ``save_reconstructions`` writes and its ``evaluate.py`` and the
  leaderboard read: the dataset ``reconstruction`` (float32 magnitude ``(slices, h, w)``,
  center-cropped to the fastMRI target size), in a file of the input's name; these files are
  alone at the top of ``out`` beside ``summary.json`` (every setting used, NFE, seconds and the
  data-consistency residual per volume);
- ``previews/NAME.png`` (for a few evenly spaced slices: the zero-filled input, the reconstruction,
  the target when known, and the error, with colour bars and each slice's PSNR/SSIM),
  ``previews/NAME.nii.gz`` and, with ``dicom``, ``previews/NAME_dicom/``.

The output folder appears only when everything succeeded.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ambientmri.data.batch import collate, to_device
from ambientmri.data.store import CorruptedStore, prepare_store
from ambientmri.errors import InputError
from ambientmri.models.objectives import get_objective
from ambientmri.operators.fft import center_crop
from ambientmri.outputs import check_output_dir, output_dir
from ambientmri.recipes import Recipe, validate_recipe
from ambientmri.sampling.methods import (
    CLASSICAL_METHODS,
    METHODS,
    MODEL_METHODS,
    ADPSConfig,
    AOSConfig,
    DDRMConfig,
    DPSConfig,
    L1WaveletConfig,
    MethodConfig,
    SenseConfig,
    method_config,
)
from ambientmri.sampling.restoration import consistency_energies
from ambientmri.utils import stable_seed, write_json_atomic

__all__ = ["CLASSICAL_METHODS", "METHODS", "MODEL_METHODS", "PREVIEWS", "VolumeResult", "detect_kind",
           "earlier_reconstruction", "method_config", "preview_slices", "reconstruct", "reconstruct_options",
           "write_challenge_file", "write_preview"]

MethodFn = Callable[[Any, Any], Any]


def detect_kind(src: Path) -> str:
    """``fastmri``, ``nifti`` or ``dicom`` from the input's file names."""
    src = Path(src)
    if not src.exists():
        raise InputError(src, "no such file or folder")
    files = [src] if src.is_file() else [p for p in src.rglob("*") if p.is_file()]
    if any(p.suffix in (".h5", ".hdf5") for p in files):
        return "fastmri"
    if any(p.name.endswith((".nii", ".nii.gz")) for p in files):
        return "nifti"
    return "dicom"


def earlier_reconstruction(folder: Path) -> bool:
    """A ``reconstruct`` output of a version without output markers: its summary and its files only."""
    import json

    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        volumes = summary["volumes"]
        method = summary["method"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if method not in METHODS or not isinstance(volumes, dict):
        return False
    own = {"summary.json", PREVIEWS}
    for name in volumes:
        stem = str(name).removesuffix(".h5")
        own |= {f"{stem}.h5", f"{stem}.nii.gz", f"{stem}.png", f"{stem}_dicom"}
    return {p.name for p in folder.iterdir()} <= own


def reconstruct_options(
    method: str,
    *,
    seed: int = 0,
    steps: int | None = None,
    sigma: float | None = None,
    mask_channel: str = "measured",
    l_ss: float | None = None,
    zeta: float | None = None,
    num_samples: int = 1,
    lam: float | None = None,
    dc_step: str | None = None,
) -> dict[str, Any]:
    """The older ``options`` dict of :func:`reconstruct`: the settings of :func:`method_config` by name.

    Kept for existing callers; new code passes ``config=method_config(method, ...)``. ``None``
    leaves the method's default.

    Raises:
        ValueError: an unknown method or ``mask_channel``.
    """
    config = method_config(method, seed=seed, steps=steps, sigma=sigma, mask_channel=mask_channel, l_ss=l_ss,
                           zeta=zeta, num_samples=num_samples, lam=lam, dc_step=dc_step)
    return {k: v for k, v in config.settings().items() if k != "method"}


def _input_recipe(recipe: Recipe, kind: str, path: Path) -> Recipe:
    """The run's recipe applied to new input: same crop, corruption and prepare, per-volume seeds."""
    tree = recipe.model_dump(mode="json")
    crop = tree["data"].get("crop")
    tree["data"] = {"kind": kind, "path": str(path), "crop": crop}
    tree["corruption"]["seed_mode"] = "volume"  # fastMRI's validation seeding: tuple(map(ord, name))
    tree["training"]["store"] = None
    tree["training"]["heldout_store"] = None
    tree["training"]["init_from"] = None
    return validate_recipe(tree, "reconstruct")


def _recon_size(source: Path, grid: tuple[int, int]) -> tuple[int, int]:
    if source.suffix in (".h5", ".hdf5"):
        from ambientmri.data.fastmri import FastMRIFile

        with FastMRIFile(source) as f:
            h, w = f.info.recon_size
        return min(h, grid[0]), min(w, grid[1])
    return grid


def _sampler_generator(config: MethodConfig, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(stable_seed("reconstruct", int(config.seed)) % 2**63)


def _classical_fn(config: MethodConfig, shape: tuple[int, ...]) -> MethodFn:
    from ambientmri.sampling import classical

    if isinstance(config, SenseConfig):
        return lambda batch, A: classical.cg_sense(batch.y, A, iters=config.iters, lam=config.lam, image_shape=shape)
    if isinstance(config, L1WaveletConfig):
        return lambda batch, A: classical.l1_wavelet(batch.y, A, iters=config.iters, lam=config.lam,
                                                     image_shape=shape)
    return lambda batch, A: classical.zero_filled(batch.y, A, image_shape=shape)


def _method_fn(config: MethodConfig, run: Any, store: CorruptedStore, device: torch.device) -> MethodFn:
    """``fn(batch, A) -> Restoration`` of the method ``config`` configures, on ``store``'s grid."""
    from ambientmri.sampling import restoration
    from ambientmri.sampling.denoisers import clean_denoiser
    from ambientmri.sampling.generate import ambient_generation_denoiser

    shape = tuple(store.grid)
    if not config.needs_model:
        return _classical_fn(config, shape)
    if run is None:
        raise ValueError(f"--method {config.name} needs --run RUN (a trained model)")
    model = run.model
    if tuple(run.image_shape) != shape:
        raise InputError(run.checkpoint, f"the model was trained on {list(run.image_shape)} images; "
                         f"this input gives {list(shape)} (check data.crop)")
    if isinstance(config, AOSConfig):
        further = config.mask_channel == "further"
        return lambda batch, A: restoration.a_os(
            model, batch.y, A, sigma=config.sigma, image_shape=shape,
            further_masks=batch.further_mask if further else None)
    if isinstance(config, ADPSConfig):
        return lambda batch, A: restoration.a_dps(
            model, batch.y, A, batch.further_mask, steps=config.steps, l_ss=config.l_ss,
            dc_step=config.dc_step, num_samples=config.num_samples, generator=_sampler_generator(config, device),
            image_shape=shape)

    def denoiser(batch: Any) -> Any:
        if get_objective(run.objective).sees_further:
            index = [int(i) for i in batch.index]
            return ambient_generation_denoiser(model, run.corruption, shape, seed=int(config.seed), batch=index,
                                               device=device)
        return clean_denoiser(model, shape)

    if isinstance(config, DPSConfig):
        return lambda batch, A: restoration.dps(denoiser(batch), batch.y, A, steps=config.steps, zeta=config.zeta,
                                                dc_step=config.dc_step, generator=_sampler_generator(config, device),
                                                image_shape=shape)
    if isinstance(config, DDRMConfig):
        return lambda batch, A: restoration.ddrm(denoiser(batch), batch.y, A, steps=config.steps,
                                                 generator=_sampler_generator(config, device), image_shape=shape)
    raise ValueError(f"--method {config.name!r}: allowed: {', '.join(METHODS)}")


#: ``reconstruct`` warns when a posterior sampler's relative data-consistency residual ``‖y − A x̂‖ / ‖y‖``
#: exceeds zero-filled's (consistent up to the coil model's error) by more than this: a quarter of the
#: measured signal left unexplained. Measured on the 32 × 32 study data (R = 4, 1000 steps): A-OS at
#: σ = 0.1 0.06, A-DPS 0.07-0.14 (its worst volume), both above zero-filled in PSNR.
DC_WARN_MARGIN = 0.25
#: the methods with a data-consistency step, to which the warning applies (A-OS has none).
POSTERIOR_SAMPLERS = ("a-dps", "dps", "ddrm")
#: the subfolder of ``out`` holding everything that is not a challenge file.
PREVIEWS = "previews"
#: how many slices (evenly spaced) each volume's preview PNG shows.
PREVIEW_SLICES = 3


@dataclass
class VolumeResult:
    """One volume reconstructed in the loop, before anything is written.

    Attributes:
        name: the volume's stem (``NAME`` of ``NAME.h5``).
        source: the input file or series it came from.
        source_name: its path relative to the input (the store's ``source``).
        volume: complex64 ``(S, H, W)`` on the store's grid, in the input's units.
        zero_filled: complex64 ``(S, H, W)``: ``Aᴴ y`` in the same units (the previews' input panel).
        std: float32 ``(S, H, W)`` per-pixel posterior std, or None.
        nfe: network evaluations per slice.
        seconds: seconds for the whole volume.
        dc: ``Σ‖y − A x̂‖², Σ‖y − A Aᴴy‖², Σ‖y‖²`` over the volume.
    """

    name: str
    source: Path
    source_name: str
    volume: np.ndarray
    zero_filled: np.ndarray
    std: np.ndarray | None
    nfe: int
    seconds: float
    dc: np.ndarray


def _reconstruct_volume(fn: MethodFn, store: CorruptedStore, first: int, n: int, batch_size: int,
                        device: torch.device, tick: Callable[[int], None]) -> tuple[Any, ...]:
    """Slices ``first .. first + n`` of ``store``: (volume, zero-filled, std or None, nfe, seconds, dc)."""
    from ambientmri.sampling.classical import zero_filled

    images, zfs, stds, nfe, t0 = [], [], [], 0, time.perf_counter()
    dc = np.zeros(3)
    shape = tuple(store.grid)
    for b0 in range(first, first + n, batch_size):
        idx = list(range(b0, min(b0 + batch_size, first + n)))
        batch = to_device(collate([store[i] for i in idx]), device)
        A = store.operator(batch)
        result = fn(batch, A)
        dc += consistency_energies(batch.y, A, result.x.to(device))
        scale = batch.scale.to("cpu", torch.float32).reshape(-1, 1, 1)
        images.append((result.x.detach().to("cpu") * scale).numpy())
        zfs.append((zero_filled(batch.y, A, image_shape=shape).x.detach().to("cpu") * scale).numpy())
        if result.std is not None:
            stds.append((result.std.detach().to("cpu").float() * scale).numpy())
        nfe = int(result.nfe)
        tick(len(idx))
    seconds = time.perf_counter() - t0
    volume = np.concatenate(images).astype(np.complex64)
    std = np.concatenate(stds).reshape(volume.shape).astype(np.float32) if stds else None
    return volume, np.concatenate(zfs).astype(np.complex64), std, nfe, seconds, dc


def _volumes(store: CorruptedStore, src: Path, fn: MethodFn, batch_size: int, device: torch.device,
             progress: Callable[[int, int], None] | None) -> Iterator[VolumeResult]:
    """Reconstruct the store volume by volume (the loop; nothing is written here)."""
    root = src if src.is_dir() else src.parent
    counter = {"done": 0}
    total = len(store)

    def tick(k: int) -> None:
        counter["done"] += k
        if progress:
            progress(counter["done"], total)

    first = 0
    for vol in store.volumes:
        n = int(vol["slices"])
        volume, zf, std, nfe, seconds, dc = _reconstruct_volume(fn, store, first, n, batch_size, device, tick)
        first += n
        stem = Path(vol["source"]).name.removesuffix(".gz").removesuffix(".nii").removesuffix(".h5")
        yield VolumeResult(stem, root / vol["source"] if src.is_dir() else src, str(vol["source"]), volume, zf,
                           std, nfe, seconds, dc)


# -- writers: one volume's files, then the summary ------------------------------------------------


def write_challenge_file(path: Path, result: VolumeResult, recon: np.ndarray, method: str, *,
                         keep_complex: bool = False) -> None:
    """``NAME.h5`` as fastMRI's ``save_reconstructions`` writes it (dataset ``reconstruction``), plus attributes."""
    crop = recon.shape[1:]
    with h5py.File(path, "w") as f:
        f.create_dataset("reconstruction", data=recon)
        if keep_complex:
            f.create_dataset("reconstruction_complex", data=center_crop(result.volume, crop))
        if result.std is not None:  # a-dps with several posterior samples: the per-pixel standard deviation
            f.create_dataset("reconstruction_std", data=center_crop(result.std, crop).astype(np.float32))
        f.attrs["method"] = method
        f.attrs["nfe_per_slice"] = result.nfe
        f.attrs["seconds_per_slice"] = result.seconds / len(recon)
        f.attrs["source"] = result.source_name


def _target(result: VolumeResult, kind: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The volume's reference magnitudes (fastMRI targets, or the NIfTI/DICOM images), cropped; else None."""
    source = result.source
    if kind == "fastmri":
        from ambientmri.data.fastmri import FastMRIFile

        with FastMRIFile(source) as f:
            if not f.info.targets:
                return None
            target = f.target_all()  # fastMRI's choice: ESC for single-coil, RSS for multi-coil
    else:
        from ambientmri.data.sources import open_source

        target = np.abs(np.asarray(open_source(source, kind).images, np.float32))
    if target.shape[0] != shape[0] or min(target.shape[1] - shape[1], target.shape[2] - shape[2]) < 0:
        return None
    return center_crop(target, shape[1:]).astype(np.float32)


def preview_slices(n: int, count: int = PREVIEW_SLICES) -> list[int]:
    """``count`` evenly spaced slice indices of a volume of ``n`` slices (all of them when fewer)."""
    k = min(count, n)
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})


def write_preview(path: Path, result: VolumeResult, recon: np.ndarray, target: np.ndarray | None,
                  title: str) -> tuple[int, int]:
    """``NAME.png``: per shown slice, zero-filled input, reconstruction, target and |error| with PSNR/SSIM.

    Returns:
        ``(rows, columns)`` of the panel grid (one row per shown slice).
    """
    from ambientmri.evaluation.metrics import psnr, ssim
    from ambientmri.plotting import image_grid

    zf = center_crop(np.abs(result.zero_filled), recon.shape[1:])
    maxval = float(target.max()) if target is not None else None
    rows, labels = [], []
    for s in preview_slices(len(recon)):
        row = [("zero-filled input", zf[s], "image")]
        if target is not None and maxval:
            scores = {k: (psnr(target[s][None], v[s][None], maxval), ssim(target[s][None], v[s][None], maxval))
                      for k, v in (("zf", zf), ("rec", recon))}
            row = [(f"zero-filled input\nPSNR {scores['zf'][0]:.2f} dB, SSIM {scores['zf'][1]:.3f}", zf[s], "image"),
                   (f"reconstruction\nPSNR {scores['rec'][0]:.2f} dB, SSIM {scores['rec'][1]:.3f}", recon[s], "image"),
                   ("target", target[s], "image"), ("|error| = |target − reconstruction|",
                                                    np.abs(target[s] - recon[s]), "error")]
        else:
            row.append(("reconstruction (no target)", recon[s], "image"))
        rows.append(row)
        labels.append(f"slice {s}")
    return image_grid(path, rows, row_labels=labels, title=title)


def _volume_summary(result: VolumeResult, n: int, method: str) -> tuple[dict[str, Any], str | None]:
    residual, zf_residual = (float(np.sqrt(result.dc[i] / max(result.dc[2], 1e-30))) for i in (0, 1))
    entry = {"slices": n, "nfe_per_slice": result.nfe, "seconds_per_slice": round(result.seconds / n, 4),
             "dc_residual": round(residual, 5), "zero_filled_dc_residual": round(zf_residual, 5)}
    warning = None
    if method in POSTERIOR_SAMPLERS and residual > zf_residual + DC_WARN_MARGIN:
        warning = (f"{result.name}.h5: the {method} reconstruction explains the measurements worse than zero-filled "
                   f"(relative data-consistency residual {residual:.3f} against {zf_residual:.3f}); its step size "
                   "may not suit this data: tune it on validation scans (docs/sampling.md)")
    return entry, warning


def _write_volume(tmp: Path, result: VolumeResult, config: MethodConfig, kind: str, grid: tuple[int, int],
                  files: dict[str, bool]) -> np.ndarray:
    """Every file of one volume: ``NAME.h5`` in ``tmp``, the previews in ``tmp/previews``."""
    method = config.name
    if not np.isfinite(result.volume).all():
        raise FloatingPointError(f"{result.source}: the {method} reconstruction has NaN/Inf; nothing was written")
    recon = center_crop(np.abs(result.volume), _recon_size(result.source, grid)).astype(np.float32)
    write_challenge_file(tmp / f"{result.name}.h5", result, recon, method, keep_complex=files["keep_complex"])
    extras = tmp / PREVIEWS
    if files["nifti"]:
        from ambientmri.data.medical import write_nifti

        extras.mkdir(exist_ok=True)
        write_nifti(extras / f"{result.name}.nii.gz", recon, description=f"ambientmri {method} reconstruction")
    if files["dicom"]:
        from ambientmri.data.medical import write_dicom_series

        extras.mkdir(exist_ok=True)
        write_dicom_series(extras / f"{result.name}_dicom", recon, series_description=f"ambientmri {method}")
    if files["previews"]:
        extras.mkdir(exist_ok=True)
        target = _target(result, kind, recon.shape)
        write_preview(extras / f"{result.name}.png", result, recon, target,
                      f"{result.name}: {method} (NFE {result.nfe})")
    return recon


def reconstruct(
    src: str | Path,
    out: str | Path,
    method: str,
    *,
    run: Any = None,
    recipe: Recipe | None = None,
    config: MethodConfig | None = None,
    options: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    nifti: bool = True,
    dicom: bool = False,
    previews: bool = True,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    inputs: tuple[str | Path | None, ...] = (),
    keep_complex: bool = False,
) -> dict[str, Any]:
    """Reconstruct every volume under ``src`` into ``out`` (see the module docstring).

    ``out`` is created new, or replaces an earlier ``reconstruct`` output, or anything else only
    with ``overwrite``; it may never be, hold or lie inside ``src``, the run or any of ``inputs``
    (:func:`ambientmri.outputs.output_dir`).

    Args:
        src: fastMRI file/folder, NIfTI file/folder or folder of DICOM series.
        out: output folder (created as a whole at the end).
        method: one of :data:`METHODS`.
        run: a :class:`~ambientmri.sampling.runs.LoadedRun` (needed by the model methods; its recipe
            gives the crop and, for fully sampled inputs, the mask).
        recipe: the recipe when no run is given (classical methods).
        config: the method's settings (:mod:`ambientmri.sampling.methods`); default: its defaults,
            updated by ``options``.
        options: settings by name (``sigma``, ``steps``, ``l_ss``, ``zeta``, ``num_samples``,
            ``lam``, ``iters``, ``seed``, ``mask_channel``), the older way to give them; ignored
            with ``config``.
        batch_size: slices per batch.
        device: where the methods run.
        nifti: also write ``previews/NAME.nii.gz``.
        dicom: also write a DICOM series ``previews/NAME_dicom/`` (fresh UIDs, nothing copied from the input).
        previews: write ``previews/NAME.png``.
        progress: called with ``(slices done, slices total)``.
        overwrite: replace an existing ``out`` that is not an earlier ``reconstruct`` output.
        inputs: further files the caller read (the recipe), protected like ``src``.
        keep_complex: also store the complex reconstruction, center-cropped like ``reconstruction``
            (complex64), as the dataset ``reconstruction_complex`` of each ``NAME.h5``.

    Returns:
        The summary also written to ``out/summary.json``.

    Raises:
        OutputError: ``out`` may not be written (before any work is done).
    """
    typed = config is not None
    if config is None:
        config = method_config(method, options)
    elif config.name != method:
        raise ValueError(f"reconstruct: method {method!r} with the settings of {config.name!r}")
    src, out = Path(src), Path(out)
    base = run.recipe if run is not None else recipe
    if base is None:
        raise ValueError("reconstruct needs --run RUN or --recipe RECIPE (the mask and crop to use)")
    protected = (src, run.path if run is not None else None, getattr(run, "checkpoint", None), *inputs)
    guard = {"inputs": protected, "overwrite": overwrite, "recognise": earlier_reconstruction}
    check_output_dir(out, "reconstruct", **guard)
    dev = torch.device(device)
    kind = detect_kind(src)
    rec = _input_recipe(base, kind, src)
    files = {"nifti": nifti, "dicom": dicom, "previews": previews, "keep_complex": keep_complex}
    summary = _summary_head(src, run, base, config, dict(options) if options is not None and not typed else None,
                            {"batch_size": batch_size, "device": str(dev), **files})
    with output_dir(out, "reconstruct", **guard) as tmp:
        store_dir = tmp / ".store"
        prepare_store(src, store_dir, rec, source_kind=kind)
        store = CorruptedStore(store_dir)
        fn = _method_fn(config, run, store, dev)
        for result in _volumes(store, src, fn, batch_size, dev, progress):
            recon = _write_volume(tmp, result, config, kind, tuple(store.grid), files)
            entry, warning = _volume_summary(result, len(recon), method)
            summary["volumes"][f"{result.name}.h5"] = entry
            if warning:
                summary.setdefault("warnings", []).append(warning)
        store.close()
        shutil.rmtree(store_dir)
        _finish_summary(summary)
        write_json_atomic(tmp / "summary.json", summary)
    return summary


def _summary_head(src: Path, run: Any, recipe: Recipe, config: MethodConfig, options: dict[str, Any] | None,
                  extra: dict[str, Any]) -> dict[str, Any]:
    """``summary.json`` before the volumes: ``settings`` holds every setting used."""
    settings = {**config.settings(), **extra, "recipe": recipe.name,
                "checkpoint": str(getattr(run, "checkpoint", "")) or None,
                "checkpoint_hash": getattr(run, "checkpoint_hash", None)}
    return {"method": config.name, "input": str(src), "run": str(run.path) if run else None,
            "options": options if options is not None else config.settings(), "settings": settings,
            "layout": {"challenge_files": "*.h5", "previews": f"{PREVIEWS}/"}, "volumes": {}}


def _finish_summary(summary: dict[str, Any]) -> None:
    vols = summary["volumes"].values()
    summary["slices"] = sum(v["slices"] for v in vols)
    summary["seconds_per_slice"] = round(
        sum(v["seconds_per_slice"] * v["slices"] for v in vols) / max(summary["slices"], 1), 4)
    summary["nfe_per_slice"] = max((v["nfe_per_slice"] for v in vols), default=0)


_earlier_reconstruction = earlier_reconstruction  # the former private name, kept for existing callers
