"""``ambientmri reconstruct``: undersampled scans in, fastMRI-challenge-style reconstructions out.

The input (a fastMRI file or folder, NIfTI, or DICOM series) is prepared exactly as training data
is, into a temporary store: test/challenge files keep their own mask; fully sampled files are
undersampled with the recipe's mask, seeded per volume like fastMRI (``tuple(map(ord, name))``);
NIfTI/DICOM magnitude images get simulated single-coil k-space. Each slice is then reconstructed
in the store's normalised units by the chosen method, multiplied back by its scale, and written per
volume: ``NAME.h5`` (dataset ``reconstruction``, magnitude, center-cropped to the fastMRI target
size like the challenge files), ``NAME.nii.gz`` and ``NAME.png`` (target if known,
reconstruction, error map), plus ``summary.json`` (NFE and seconds per slice). The output folder
appears only when everything succeeded.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ambientmri.data.batch import collate, to_device
from ambientmri.data.store import CorruptedStore, prepare_store
from ambientmri.errors import InputError
from ambientmri.operators.fft import center_crop
from ambientmri.outputs import check_output_dir, output_dir
from ambientmri.recipes import Recipe, validate_recipe
from ambientmri.sampling.restoration import consistency_energies
from ambientmri.utils import stable_seed, write_json_atomic

__all__ = ["CLASSICAL_METHODS", "METHODS", "MODEL_METHODS", "detect_kind", "earlier_reconstruction", "reconstruct",
           "reconstruct_options"]

MODEL_METHODS = ("a-os", "a-dps", "dps", "ddrm")
CLASSICAL_METHODS = ("zero-filled", "sense", "l1-wavelet")
METHODS = MODEL_METHODS + CLASSICAL_METHODS
TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")


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
    own = {"summary.json"}
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
    l_ss: float = 1.0,
    zeta: float = 1.0,
    num_samples: int = 1,
    lam: float | None = None,
) -> dict[str, Any]:
    """The ``options`` of :func:`reconstruct` from ``ambientmri reconstruct``'s flags, with its defaults.

    ``None`` leaves a method's own default (``steps``: 100 for a-dps and dps, 20 for ddrm; ``sigma``:
    :data:`~ambientmri.sampling.restoration.A_OS_SIGMA`; ``lam``: the method's). ``mask_channel``
    (``measured`` or ``further``) is used by a-os only.

    Raises:
        ValueError: an unknown ``mask_channel``.
    """
    if mask_channel not in ("measured", "further"):
        raise ValueError(f"--mask-channel {mask_channel!r}: allowed: measured, further")
    options: dict[str, Any] = {"seed": seed, "l_ss": l_ss, "zeta": zeta, "num_samples": num_samples}
    if method == "a-os":
        options["mask"] = mask_channel
    for key, value in (("steps", steps), ("sigma", sigma), ("lam", lam)):
        if value is not None:
            options[key] = value
    return options


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


def _target(source: Path, s: int) -> np.ndarray | None:
    if source.suffix not in (".h5", ".hdf5"):
        return None
    with h5py.File(source, "r") as f:
        for key in TARGET_KEYS:
            if key in f:
                return np.asarray(f[key][s], np.float32)
    return None


def _method_fn(method: str, run: Any, store: CorruptedStore, options: dict[str, Any], device: torch.device
               ) -> Callable[[Any, Any], Any]:
    from ambientmri.sampling import classical, restoration
    from ambientmri.sampling.denoisers import clean_denoiser
    from ambientmri.sampling.generate import ambient_generation_denoiser

    shape = tuple(store.grid)
    seed = int(options.get("seed", 0))

    def generator() -> torch.Generator:
        return torch.Generator(device=device).manual_seed(stable_seed("reconstruct", seed) % 2**63)

    if method == "zero-filled":
        return lambda batch, A: classical.zero_filled(batch.y, A, image_shape=shape)
    if method == "sense":
        return lambda batch, A: classical.cg_sense(batch.y, A, iters=int(options.get("iters", 30)),
                                                   lam=float(options.get("lam", 0.0)), image_shape=shape)
    if method == "l1-wavelet":
        kwargs = {"lam": float(options["lam"])} if options.get("lam") is not None else {}
        return lambda batch, A: classical.l1_wavelet(batch.y, A, iters=int(options.get("iters", 100)),
                                                     image_shape=shape, **kwargs)
    if run is None:
        raise ValueError(f"--method {method} needs --run RUN (a trained model)")
    model = run.model
    if tuple(run.image_shape) != shape:
        raise InputError(run.checkpoint, f"the model was trained on {list(run.image_shape)} images; "
                         f"this input gives {list(shape)} (check data.crop)")
    if method == "a-os":
        kwargs = {"sigma": float(options["sigma"])} if options.get("sigma") is not None else {}
        mask = options.get("mask", "measured")
        if mask not in ("measured", "further"):
            raise ValueError(f"a-os mask {mask!r}: allowed: measured, further")
        return lambda batch, A: restoration.a_os(
            model, batch.y, A, image_shape=shape, further_masks=batch.further_mask if mask == "further" else None,
            **kwargs)
    if method == "a-dps":
        def a_dps(batch: Any, A: Any) -> Any:
            return restoration.a_dps(model, batch.y, A, batch.further_mask, steps=int(options.get("steps", 100)),
                                     l_ss=float(options.get("l_ss", 1.0)),
                                     num_samples=int(options.get("num_samples", 1)), generator=generator(),
                                     image_shape=shape)
        return a_dps

    def denoiser(batch: Any) -> Any:
        if run.objective == "ambient":
            index = [int(i) for i in batch.index]
            return ambient_generation_denoiser(model, run.corruption, shape, seed=seed, batch=index, device=device)
        return clean_denoiser(model, shape)

    if method == "dps":
        return lambda batch, A: restoration.dps(denoiser(batch), batch.y, A, steps=int(options.get("steps", 100)),
                                                zeta=float(options.get("zeta", 1.0)), generator=generator(),
                                                image_shape=shape)
    if method == "ddrm":
        return lambda batch, A: restoration.ddrm(denoiser(batch), batch.y, A, steps=int(options.get("steps", 20)),
                                                 generator=generator(), image_shape=shape)
    raise ValueError(f"--method {method!r}: allowed: {', '.join(METHODS)}")


def _png(path: Path, target: np.ndarray | None, recon: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mid = recon.shape[0] // 2
    panels = [("reconstruction", recon[mid])]
    if target is not None:
        panels = [("target", target[mid]), *panels, ("|error|", np.abs(target[mid] - recon[mid]))]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3), squeeze=False)
    vmax = float(np.percentile(panels[0][1], 99.5)) or 1.0
    for ax, (name, img) in zip(axes[0], panels, strict=True):
        ax.imshow(img, cmap="gray" if name != "|error|" else "magma", vmin=0, vmax=vmax if name != "|error|" else None)
        ax.set_title(f"{name}, slice {mid}", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


#: ``reconstruct`` warns when a posterior sampler's relative data-consistency residual ``‖y − A x̂‖ / ‖y‖``
#: exceeds zero-filled's (consistent up to the coil model's error) by more than this: a quarter of the
#: measured signal left unexplained. Measured on the 32 × 32 study data (R = 4, 1000 steps): A-OS at
#: σ = 0.1 0.06, A-DPS 0.07-0.14 (its worst volume), both above zero-filled in PSNR.
DC_WARN_MARGIN = 0.25
#: the methods with a data-consistency step, to which the warning applies (A-OS has none).
POSTERIOR_SAMPLERS = ("a-dps", "dps", "ddrm")


def reconstruct(
    src: str | Path,
    out: str | Path,
    method: str,
    *,
    run: Any = None,
    recipe: Recipe | None = None,
    options: dict[str, Any] | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    nifti: bool = True,
    dicom: bool = False,
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
        options: method options (``sigma``, ``steps``, ``l_ss``, ``zeta``, ``num_samples``, ``lam``,
            ``iters``, ``seed``).
        batch_size: slices per batch.
        device: where the methods run.
        nifti: also write ``NAME.nii.gz``.
        dicom: also write a DICOM series ``NAME_dicom/`` (fresh UIDs, nothing copied from the input).
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
    if method not in METHODS:
        raise ValueError(f"--method {method!r}: allowed: {', '.join(METHODS)}")
    src, out = Path(src), Path(out)
    base = run.recipe if run is not None else recipe
    if base is None:
        raise ValueError("reconstruct needs --run RUN or --recipe RECIPE (the mask and crop to use)")
    protected = (src, run.path if run is not None else None, getattr(run, "checkpoint", None), *inputs)
    guard = {"inputs": protected, "overwrite": overwrite, "recognise": earlier_reconstruction}
    check_output_dir(out, "reconstruct", **guard)
    dev = torch.device(device)
    options = dict(options or {})
    kind = detect_kind(src)
    rec = _input_recipe(base, kind, src)
    summary: dict[str, Any] = {"method": method, "input": str(src), "run": str(run.path) if run else None,
                               "options": options, "volumes": {}}
    with output_dir(out, "reconstruct", **guard) as tmp:
        store_dir = tmp / ".store"
        prepare_store(src, store_dir, rec, source_kind=kind)
        store = CorruptedStore(store_dir)
        fn = _method_fn(method, run, store, options, dev)
        root = src if src.is_dir() else src.parent
        done, total = 0, len(store)
        start = 0
        for vol in store.volumes:
            n = int(vol["slices"])
            source = root / vol["source"] if src.is_dir() else src
            images, stds, nfe, t0 = [], [], 0, time.perf_counter()
            dc = np.zeros(3)  # Σ‖y − A x̂‖², Σ‖y − A Aᴴy‖², Σ‖y‖² over the volume
            for b0 in range(start, start + n, batch_size):
                idx = list(range(b0, min(b0 + batch_size, start + n)))
                batch = to_device(collate([store[i] for i in idx]), dev)
                A = store.operator(batch)
                result = fn(batch, A)
                dc += consistency_energies(batch.y, A, result.x.to(dev))
                x = result.x.detach().to("cpu") * batch.scale.to("cpu", torch.float32).reshape(-1, 1, 1)
                images.append(x.numpy())
                if result.std is not None:
                    scale = batch.scale.to("cpu", torch.float32).reshape(-1, 1, 1)
                    stds.append((result.std.detach().to("cpu").float() * scale).numpy())
                nfe = int(result.nfe)
                done += len(idx)
                if progress:
                    progress(done, total)
            seconds = time.perf_counter() - t0
            start += n
            volume = np.concatenate(images).astype(np.complex64)
            if not np.isfinite(volume).all():
                raise FloatingPointError(f"{source}: the {method} reconstruction has NaN/Inf; nothing was written")
            recon = center_crop(np.abs(volume), _recon_size(source, store.grid)).astype(np.float32)
            stem = Path(vol["source"]).name.removesuffix(".gz").removesuffix(".nii").removesuffix(".h5")
            name = f"{stem}.h5"
            with h5py.File(tmp / name, "w") as f:
                f.create_dataset("reconstruction", data=recon)
                if keep_complex:
                    f.create_dataset("reconstruction_complex", data=center_crop(volume, recon.shape[1:]))
                if stds:  # a-dps with several posterior samples: the per-pixel standard deviation
                    std = center_crop(np.concatenate(stds).reshape(volume.shape), recon.shape[1:])
                    f.create_dataset("reconstruction_std", data=std.astype(np.float32))
                f.attrs["method"] = method
                f.attrs["nfe_per_slice"] = nfe
                f.attrs["seconds_per_slice"] = seconds / n
                f.attrs["source"] = vol["source"]
            if nifti:
                from ambientmri.data.medical import write_nifti

                write_nifti(tmp / f"{stem}.nii.gz", recon, description=f"ambientmri {method} reconstruction")
            if dicom:
                from ambientmri.data.medical import write_dicom_series

                write_dicom_series(tmp / f"{stem}_dicom", recon, series_description=f"ambientmri {method}")
            targets = [_target(source, s) for s in range(n)]
            target = np.stack(targets) if all(t is not None for t in targets) else None
            if target is not None and target.shape[1:] != recon.shape[1:]:
                target = center_crop(target, recon.shape[1:])
            _png(tmp / f"{stem}.png", target, recon, f"{stem}: {method} (NFE {nfe})")
            residual, zf_residual = (float(np.sqrt(dc[i] / max(dc[2], 1e-30))) for i in (0, 1))
            summary["volumes"][name] = {"slices": n, "nfe_per_slice": nfe,
                                        "seconds_per_slice": round(seconds / n, 4),
                                        "dc_residual": round(residual, 5),
                                        "zero_filled_dc_residual": round(zf_residual, 5)}
            if method in POSTERIOR_SAMPLERS and residual > zf_residual + DC_WARN_MARGIN:
                summary.setdefault("warnings", []).append(
                    f"{name}: the {method} reconstruction explains the measurements worse than zero-filled "
                    f"(relative data-consistency residual {residual:.3f} against {zf_residual:.3f}); its step size "
                    "may not suit this data: tune it on validation scans (docs/sampling.md)")
        store.close()
        shutil.rmtree(store_dir)
        vols = summary["volumes"].values()
        summary["slices"] = sum(v["slices"] for v in vols)
        summary["seconds_per_slice"] = round(
            sum(v["seconds_per_slice"] * v["slices"] for v in vols) / max(summary["slices"], 1), 4)
        summary["nfe_per_slice"] = max((v["nfe_per_slice"] for v in vols), default=0)
        write_json_atomic(tmp / "summary.json", summary)
    return summary

_earlier_reconstruction = earlier_reconstruction  # the former private name, kept for existing callers
