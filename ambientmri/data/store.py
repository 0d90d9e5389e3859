"""The corrupted store: what ambient training reads, and the only thing it reads.

Layout of a store folder::

    STORE/manifest.json          what the store holds (written last: a store without it is unfinished)
    STORE/volumes/<name>.h5      one file per source volume, written atomically

Each volume file holds, per slice, only what a hospital would have: the measurements
``y = A x0`` (zero wherever ``A`` measures nothing), ``A``'s mask, the further corruption ``Ã``'s
mask (fixed per slice, drawn from a seed derived from the file name and slice), coil maps estimated
from the calibration lines of ``y`` (multi-coil k-space), the sensing-matrix seed (Gaussian), a
normalisation scale computed from ``y``, and provenance (source file name, slice, subject
pseudonym). There is never a clean image or fully sampled k-space in a store.

How the volume files lay this out on disk (version 1, dense; version 2, compact: the measured
entries of ``y`` only, half-precision coil maps on their support) is :mod:`ambientmri.data.store_format`;
:class:`CorruptedStore` reads both and returns the same tensors.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as _dt
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import h5py
import numpy as np
import torch

from ambientmri import __version__
from ambientmri.data.coils import coil_combine, coil_compression_matrix, compress_coils, espirit_maps
from ambientmri.data.sources import SourceVolume, iter_slices, open_sources
from ambientmri.data.store_format import (
    DENSE_DTYPES,
    FORMAT_VERSIONS,
    VolumeReader,
    volume_version,
    write_volume,
)
from ambientmri.errors import AmbientError, InputError, OutputError
from ambientmri.operators.corruptions import (
    Corruption,
    GaussianCorruption,
    KSpace2DCorruption,
    acs_columns,
    calib_box,
)
from ambientmri.operators.fft import crop_kspace, ifft2c_np
from ambientmri.operators.linear import MaskedOperator
from ambientmri.outputs import LOCK_FILE, exclusive_lock, refuse_overlap
from ambientmri.utils import (
    atomic_path,
    fastmri_volume_seed,
    further_key_seed,
    pseudonym,
    pseudonym_key_id,
    pseudonym_scheme,
    stable_seed,
    write_json_atomic,
)

if TYPE_CHECKING:  # the recipe schema sits above the data layer: typing only
    from ambientmri.recipes import Recipe

STORE_FORMAT = "ambientmri-store"
STORE_VERSION = FORMAT_VERSIONS[-1]  # what prepare writes; every version in FORMAT_VERSIONS opens
MAX_GAUSSIAN_DIM = 16384
#: Volume files one process keeps open (least recently used closed first): a store of thousands of
#: volumes read by several DataLoader workers stays far below the usual limit of 1024 open files.
MAX_OPEN_VOLUMES = 128

ProgressFn = Callable[[int, int], None]

_STORE_DTYPES = DENSE_DTYPES  # the former private name


# ---------------------------------------------------------------------------------------------
# seeds
# ---------------------------------------------------------------------------------------------
def mask_seed(mode: str, seed_name: str, slice_index: int, base_seed: int) -> tuple[int, ...]:
    """The seed of ``A`` for one slice.

    ``volume``: fastMRI's per-volume seed ``tuple(map(ord, file name))`` (every slice of a volume
    shares one mask, exactly as fastMRI's validation transforms); ``slice``: that seed extended by
    the slice index and ``base_seed``; ``fixed``: ``(base_seed,)`` for every slice.
    """
    if mode == "volume":
        return fastmri_volume_seed(seed_name)
    if mode == "slice":
        return (*fastmri_volume_seed(seed_name), int(slice_index), int(base_seed))
    if mode == "fixed":
        return (int(base_seed),)
    raise ValueError(f"seed_mode must be one of slice, volume, fixed; got {mode!r}")


def further_seed(seed_name: str, slice_index: int, base_seed: int) -> tuple[int]:
    """The seed of ``Ã`` for one slice (fixed per slice, never redrawn per epoch)."""
    return further_key_seed(seed_name, slice_index, base_seed)


def matrix_seed(seed_name: str, slice_index: int, base_seed: int) -> int:
    """The seed of the Gaussian sensing matrix of one slice."""
    return stable_seed(seed_name, slice_index, base_seed, "matrix") % 2**32


# ---------------------------------------------------------------------------------------------
# prepare
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PrepareResult:
    """What :func:`prepare_store` did."""

    store: Path
    volumes: int
    slices: int
    skipped_volumes: int
    seconds: float

    @property
    def slices_per_second(self) -> float:
        return self.slices / self.seconds if self.seconds > 0 else float("nan")


def config_hash(recipe: Recipe) -> str:
    """Hash of the recipe sections that determine a store's content."""
    sections = {k: recipe.model_dump(mode="json")[k] for k in ("data", "corruption", "prepare")}
    sections["data"].pop("path", None)
    sections["prepare"].pop("workers", None)  # how fast, not what
    further = sections["corruption"].get("further")
    if isinstance(further, dict):  # when training draws Ã, not what the store holds
        further.pop("redraw", None)
        further.pop("draws", None)
        if not further and sections["corruption"]["kind"] not in ("cartesian", "kspace2d"):
            sections["corruption"].pop("further")
    sections["pseudonym_key"] = pseudonym_key_id()  # a resume must not mix pseudonym keys
    blob = json.dumps(sections, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def prepare_store(
    src: str | Path,
    dst: str | Path,
    recipe: Recipe,
    *,
    progress: ProgressFn | None = None,
    source_kind: str | None = None,
    workers: int | None = None,
    store_version: int = STORE_VERSION,
) -> PrepareResult:
    """Build the corrupted store ``dst`` from the raw scans under ``src``.

    An interrupted run (Ctrl-C, SIGTERM, a crash) resumes: volume files are written atomically,
    and complete ones whose settings match are kept. If the run fails on bad input and ``dst`` did
    not exist before, ``dst`` is removed: nothing half-done is left behind.

    Args:
        src: a fastMRI file or folder, a NIfTI file or folder, or a folder of DICOM series folders.
        dst: the store folder.
        recipe: the validated recipe (its ``data``, ``corruption`` and ``prepare`` sections).
        progress: called with ``(slices done, slices total)``.
        source_kind: override ``recipe.data.kind`` (``fastmri`` for synthetic data already written).
        workers: processes preparing volumes in parallel (default ``recipe.prepare.workers``).
        store_version: the volume-file layout to write (docs/data.md): 2, compact (the default), or
            1, dense (what ambientmri 0.1.0 wrote; for comparisons). Complete volume files of
            either layout are kept on resume.

    Raises:
        InputError: a bad input file, naming it; or a store prepared with another recipe.
    """
    src, dst = Path(src), Path(dst)
    if store_version not in FORMAT_VERSIONS:
        raise ValueError(f"store_version must be one of {FORMAT_VERSIONS}, got {store_version}")
    kind = source_kind or recipe.data.kind
    refuse_overlap(dst, [src], what="store (--out)")
    digest = config_hash(recipe)
    _check_existing(dst, digest)
    t0 = time.perf_counter()
    try:
        dst.mkdir(parents=True)
        existed = False
    except FileExistsError:
        existed = True
    try:
        with exclusive_lock(dst, what="store"):
            plan = _Plan(recipe, recipe.corruption.build(), (0, 0), digest, store_version)
            return _prepare_locked(src, dst, plan, kind, t0, progress, workers)
    except (AmbientError, ValueError, OSError) as exc:
        # bad input: leave nothing behind (an interruption instead keeps finished volumes to resume);
        # never when another process holds the lock: the folder is its
        if not existed and not _lock_refusal(exc):
            shutil.rmtree(dst, ignore_errors=True)
        raise


def _lock_refusal(exc: BaseException) -> bool:
    return isinstance(exc, OutputError) and "in use by another ambientmri process" in exc.problem


def _prepare_locked(
    src: Path,
    dst: Path,
    plan: _Plan,
    kind: str,
    t0: float,
    progress: ProgressFn | None,
    workers: int | None,
) -> PrepareResult:
    """:func:`prepare_store` once it holds the store's lock."""
    recipe, corruption, digest = plan.recipe, plan.corruption, plan.digest
    _check_existing(dst, digest)  # again: another process may have started a store here meanwhile
    volumes = open_sources(src, "fastmri" if kind == "synthetic" else kind)
    _check_challenge(volumes, recipe)
    grid = _common_grid(volumes, recipe, src)
    plan = dataclasses.replace(plan, grid=grid)
    for stale in dst.glob(".*.json.*.tmp"):  # a killed run's half-written manifest (we hold the lock)
        stale.unlink(missing_ok=True)
    # first: from here on the folder is recognisably this store, whenever the process is killed
    write_json_atomic(dst / ".prepare.json", {"config_hash": digest, "started": _now()})
    (dst / "volumes").mkdir(parents=True, exist_ok=True)
    for stale in (dst / "volumes").glob(".*.tmp"):  # left by a killed run
        stale.unlink(missing_ok=True)
    total = sum(v.num_slices for v in volumes)
    outputs = [dst / "volumes" / f"{vol.name}.h5" for vol in volumes]
    todo = []
    for vol, out in zip(volumes, outputs, strict=True):
        if out.exists() and _volume_hash(out) == digest and _volume_signature(out) == source_signature(vol.source):
            continue  # built with these settings from this very source file
        rel = vol.source.relative_to(src) if src.is_dir() else Path(vol.source.name)
        todo.append((vol, rel, out))
    skipped = len(volumes) - len(todo)
    done = total - sum(vol.num_slices for vol, _, _ in todo)
    if progress:
        progress(done, total)
    jobs = workers if workers is not None else recipe.prepare.workers
    if jobs <= 1 or len(todo) <= 1:
        for vol, rel, out in todo:
            _prepare_volume(vol, rel, out, plan, progress, done, total)
            done += vol.num_slices
            if progress:
                progress(done, total)
    else:
        _prepare_parallel(todo, min(jobs, len(todo)), plan, progress, done, total)
    entries = [_entry(out, vol) for vol, out in zip(volumes, outputs, strict=True)]
    manifest = _manifest(dst, recipe, corruption, grid, entries, digest, src)
    write_json_atomic(dst / "manifest.json", manifest)
    (dst / ".prepare.json").unlink(missing_ok=True)
    return PrepareResult(dst, len(volumes), total, skipped, time.perf_counter() - t0)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What every volume of one prepare run shares (picklable for worker processes)."""

    recipe: Recipe
    corruption: Corruption
    grid: tuple[int, int]
    digest: str
    version: int = STORE_VERSION


def _prepare_parallel(
    todo: list[tuple[SourceVolume, Path, Path]],
    workers: int,
    plan: _Plan,
    progress: ProgressFn | None,
    done: int,
    total: int,
) -> None:
    """Prepare volumes in ``workers`` processes; each writes its own volume file atomically."""
    context = multiprocessing.get_context("spawn")
    # each worker gets its share of the cores for BLAS/numba threads (no oversubscription)
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, threads))
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)
    try:  # workers start at the first submit and read the environment then
        futures = {
            pool.submit(_prepare_volume, vol, rel, out, plan): vol
            for vol, rel, out in todo
        }
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    with pool:
        try:
            for future in concurrent.futures.as_completed(futures):
                future.result()
                done += futures[future].num_slices
                if progress:
                    progress(done, total)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _check_existing(dst: Path, digest: str) -> None:
    if not dst.exists():
        return
    if not dst.is_dir():
        raise InputError(dst, "the output exists and is not a folder")
    for marker in ("manifest.json", ".prepare.json"):
        path = dst / marker
        if path.exists():
            try:
                recorded = json.loads(path.read_text()).get("config_hash")
            except (json.JSONDecodeError, OSError):
                recorded = None
            if recorded != digest:
                raise InputError(
                    dst,
                    "already holds a store prepared with a different recipe or pseudonym key; "
                    "choose another --out",
                )
            return
    # a store killed before it wrote .prepare.json holds at most its lock file and a temporary of it
    if any(p.name != LOCK_FILE and not _own_temporary(p) for p in dst.iterdir()):
        raise InputError(dst, "the output folder is not empty and is not an ambientmri store")


def _own_temporary(path: Path) -> bool:
    """A temporary file of ``.prepare.json`` or ``manifest.json`` (:func:`~ambientmri.utils.atomic_path`)."""
    name = path.name
    return path.is_file() and name.endswith(".tmp") and name.startswith((".prepare.json.", ".manifest.json."))


def _volume_hash(path: Path) -> str | None:
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs.get("config_hash", ""))
    except OSError:
        return None


def _volume_signature(path: Path) -> str | None:
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs.get("source_signature", ""))
    except OSError:
        return None


def source_signature(source: str | Path) -> str:
    """``size:mtime_ns`` of a source file; for a folder (a DICOM series) a hash of every file's
    relative path, size and mtime. A resumed prepare rebuilds volumes whose source changed."""
    source = Path(source)
    if source.is_file():
        st = source.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    h = hashlib.sha256()
    count = 0
    for p in sorted(q for q in source.rglob("*") if q.is_file()):
        st = p.stat()
        h.update(f"{p.relative_to(source).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        count += 1
    return f"{count} files:{h.hexdigest()[:16]}"


def _target_grid(vol: SourceVolume, recipe: Recipe) -> tuple[int, int]:
    crop = recipe.data.crop
    return (int(crop[0]), int(crop[1])) if crop else vol.shape


def _check_challenge(volumes: list[SourceVolume], recipe: Recipe) -> None:
    """A fastMRI recipe that names its challenge only accepts files of that challenge."""
    expected = getattr(recipe.data, "challenge", None)
    if recipe.data.kind != "fastmri" or expected is None:
        return
    for v in volumes:
        actual = "multicoil" if v.coils > 1 else "singlecoil"
        if actual != expected:
            raise InputError(v.source, f"is a {actual} file but data.challenge is {expected}")


def _common_grid(volumes: list[SourceVolume], recipe: Recipe, src: Path) -> tuple[int, int]:
    grids = {_target_grid(v, recipe) for v in volumes}
    if len(grids) > 1:
        sizes = ", ".join(f"{h}x{w}" for h, w in sorted(grids))
        raise InputError(src, f"inputs have different matrix sizes ({sizes}); set data.crop to one size")
    for v in volumes:
        h, w = v.shape
        ch, cw = _target_grid(v, recipe)
        if ch > h or cw > w:
            raise InputError(v.source, f"data.crop {ch}x{cw} is larger than the {h}x{w} matrix")
        if v.mask is not None and cw != w:
            raise InputError(
                v.source, f"undersampled file has width {w}; data.crop may only crop the readout (H)"
            )
    return grids.pop()


def _prepare_volume(
    vol: SourceVolume,
    rel: Path,
    out: Path,
    plan: _Plan,
    progress: ProgressFn | None = None,
    done: int = 0,
    total: int = 0,
) -> None:
    recipe, corruption, grid = plan.recipe, plan.corruption, plan.grid
    cfg = recipe.corruption
    if vol.mask is not None and corruption.domain != "kspace":
        raise InputError(vol.source, f"undersampled file cannot be used with the {corruption.kind} corruption")
    if vol.mask is not None and isinstance(corruption, KSpace2DCorruption):
        raise InputError(vol.source, "undersampled file has a 1-D mask; kspace2d needs fully sampled data")
    columns: dict[str, list[Any]] = {}
    for i, k in iter_slices(vol):
        seed_a = mask_seed(cfg.seed_mode, vol.seed_name, i, cfg.seed)
        seed_f = further_seed(vol.seed_name, i, cfg.seed)
        k = crop_kspace(k, grid, readout_only=vol.mask is not None) if k.shape[-2:] != grid else k
        for key, value in _corrupt_slice(vol, i, k, grid, recipe, corruption, seed_a, seed_f).items():
            columns.setdefault(key, []).append(value)
        if progress:
            progress(done + i + 1, total)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        write_volume(f, columns, plan.version)
        f.attrs["source"] = rel.as_posix()
        f.attrs["subject"] = pseudonym(vol.subject)
        f.attrs["num_slices"] = vol.num_slices
        f.attrs["corruption"] = corruption.kind
        f.attrs["undersampled_input"] = vol.mask is not None
        f.attrs["config_hash"] = plan.digest
        f.attrs["source_signature"] = source_signature(vol.source)
        if vol.spacing is not None:  # geometry of NIfTI/DICOM inputs, for writing outputs later
            f.attrs["spacing"] = np.asarray(vol.spacing, np.float64)
            f.attrs["affine"] = np.asarray(vol.affine, np.float64)


def _corrupt_slice(
    vol: SourceVolume,
    i: int,
    k: np.ndarray,
    grid: tuple[int, int],
    recipe: Recipe,
    corruption: Corruption,
    seed_a: tuple[int, ...],
    seed_f: tuple[int],
) -> dict[str, Any]:
    """Measurements and parameters of one slice. ``k``: ``(C, H, W)`` k-space (cropped)."""
    where = f"slice {i}"
    if corruption.domain == "kspace":
        if vol.mask is not None:
            mask = (np.asarray(vol.mask).reshape(1, -1) > 0).astype(np.uint8)
        else:
            mask = corruption.sample_mask(grid, seed_a)
        y = np.where(mask.astype(bool)[None], k, 0).astype(np.complex64)
        further = corruption.further_mask(mask, seed_f)
        result: dict[str, Any] = {"mask": mask, "further_mask": further}
        if vol.coils > 1:
            virtual = recipe.prepare.virtual_coils
            if virtual is not None and virtual < vol.coils:
                compression = coil_compression_matrix(y, virtual, _calibration_region(mask, corruption))
                y = compress_coils(y, compression)
                result["coil_compression"] = compression
            maps = _maps_from_measurements(y, mask, recipe, corruption, vol, where)
            result["maps"] = maps
            zero_filled = coil_combine(maps, y)
            result["y"] = y
        else:
            zero_filled = ifft2c_np(y[0])
            result["y"] = y[0]
    else:
        x0 = source_image(vol, i, k, recipe)
        if corruption.domain == "image":
            mask = corruption.sample_mask(grid, seed_a)
            y = (x0 * mask).astype(np.complex64)
            zero_filled = y
            result = {"mask": mask, "further_mask": corruption.further_mask(mask, seed_f), "y": y}
        else:
            assert isinstance(corruption, GaussianCorruption)
            n = x0.size
            if n > MAX_GAUSSIAN_DIM:
                raise InputError(
                    vol.source, f"gaussian corruption needs at most {MAX_GAUSSIAN_DIM} pixels, got {n}; set data.crop"
                )
            mseed = matrix_seed(vol.seed_name, i, recipe.corruption.seed)
            g = corruption.matrix(n, mseed)
            mask = corruption.sample_mask((corruption.m,), seed_a)
            y = (mask * (g @ x0.reshape(-1))).astype(np.complex64)
            zero_filled = g.T @ y
            result = {
                "mask": mask,
                "further_mask": corruption.further_mask(mask, seed_f),
                "y": y,
                "matrix_seed": mseed,
            }
    mag = np.abs(zero_filled)
    scale = float(np.percentile(mag, recipe.prepare.scale_percentile))
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(vol.source, f"{where}: the measurements are all zero; cannot normalise")
    result["scale"] = scale
    return result


def _calibration_region(mask: np.ndarray, corruption: Corruption) -> tuple[slice, slice]:
    """The fully sampled calibration box of a k-space mask: every row of the ACS columns
    (Cartesian) or the configured calib box (2-D sampling)."""
    if isinstance(corruption, KSpace2DCorruption):
        return calib_box(np.shape(mask), corruption.calib)
    cols = np.flatnonzero(acs_columns(np.asarray(mask).reshape(-1)))
    if cols.size == 0:
        raise ValueError("no calibration (ACS) lines around the k-space center for coil compression")
    return slice(None), slice(int(cols[0]), int(cols[-1]) + 1)


def _calib_width(mask: np.ndarray, corruption: Corruption, recipe: Recipe) -> int:
    requested = recipe.prepare.coil_maps.calib_width
    if isinstance(corruption, KSpace2DCorruption):
        available = min(corruption.calib)
    else:
        available = int(acs_columns(np.asarray(mask).reshape(-1)).sum())
    width = min(requested or 24, available)
    return width


def _maps_from_measurements(
    y: np.ndarray, mask: np.ndarray, recipe: Recipe, corruption: Corruption, vol: SourceVolume, where: str
) -> np.ndarray:
    width = _calib_width(mask, corruption, recipe)
    if width < 4:
        raise InputError(
            vol.source, f"{where}: only {width} calibration lines around the k-space center; ESPIRiT needs >= 4"
        )
    c = recipe.prepare.coil_maps
    return espirit_maps(
        y, width, thresh=c.thresh, kernel_width=c.kernel_width, crop=c.crop, max_iter=c.max_iter
    )


def source_image(vol: SourceVolume, i: int, k: np.ndarray, recipe: Recipe) -> np.ndarray:
    """The complex image an image-domain corruption masks: the magnitude image of NIfTI/DICOM
    sources, the single-coil image, or the multi-coil image combined with ESPIRiT maps from the
    fully sampled center."""
    if vol.is_image and k.shape[-2:] == vol.shape:
        return vol.image(i).astype(np.complex64)
    if k.shape[0] == 1:
        return ifft2c_np(k)[0]
    c = recipe.prepare.coil_maps
    maps = espirit_maps(
        k, c.calib_width or 24, thresh=c.thresh, kernel_width=c.kernel_width, crop=c.crop, max_iter=c.max_iter
    )
    return coil_combine(maps, k).astype(np.complex64)


def _entry(path: Path, vol: SourceVolume) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        return {
            "file": f"volumes/{path.name}",
            "source": str(f.attrs["source"]),
            "subject": str(f.attrs["subject"]),
            "slices": int(f.attrs["num_slices"]),
            "undersampled_input": bool(f.attrs["undersampled_input"]),
            "source_signature": str(f.attrs.get("source_signature", "")),
            "version": volume_version(f),
        }


def _manifest(
    dst: Path,
    recipe: Recipe,
    corruption: Corruption,
    grid: tuple[int, int],
    entries: list[dict],
    digest: str,
    src: Path,
) -> dict[str, Any]:
    first = VolumeReader(dst / entries[0]["file"])
    try:
        coils = int(first.maps_shape[0]) if first.has_maps else 1
        y_shape = list(first.y_shape)
        mask_shape = list(first["mask"].shape[1:])
    finally:
        first.close()
    data = recipe.model_dump(mode="json")
    return {
        "format": STORE_FORMAT,
        "version": max(e["version"] for e in entries),
        "ambientmri_version": __version__,
        "created": _now(),
        "config_hash": digest,
        "contains_clean_images": False,
        "pseudonyms": pseudonym_scheme(),
        "source_root": str(Path(src).resolve()),
        "source_root_relative": os.path.relpath(Path(src).resolve(), dst.resolve()),
        "recipe": {k: data[k] for k in ("name", "data", "corruption", "prepare")},
        "corruption": corruption.describe(),
        "domain": corruption.domain,
        "grid": list(grid),
        "coils": coils,
        "y_shape": y_shape,
        "mask_shape": mask_shape,
        "num_volumes": len(entries),
        "num_slices": int(sum(e["slices"] for e in entries)),
        "num_subjects": len({e["subject"] for e in entries}),
        "volumes": entries,
    }


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
class AmbientSample(NamedTuple):
    """One training slice of a corrupted store. There is deliberately no field for a clean image.

    Attributes:
        y: measurements ``y / scale``, complex64, shaped like ``A``'s output: ``(H, W)`` for image
            and single-coil k-space corruptions, ``(C, H, W)`` multi-coil, ``(m,)`` Gaussian.
        mask: ``A``'s mask, float32, compact shape (``(1, W)`` Cartesian, ``(H, W)``, ``(m,)``).
        further_mask: ``Ã``'s mask, same shape, ``≤ mask``.
        maps: coil maps ``(C, H, W)`` complex64, or an empty ``(0,)`` tensor without coils.
        matrix_seed: the Gaussian sensing matrix's seed, or -1.
        scale: the normalisation constant the measurements were divided by.
        index: the slice's index in the store.
    """

    y: torch.Tensor
    mask: torch.Tensor
    further_mask: torch.Tensor
    maps: torch.Tensor
    matrix_seed: int
    scale: float
    index: int


def _zeros(shape: tuple[int, ...]) -> torch.Tensor:
    """A zero complex64 batch buffer: in shared memory inside a DataLoader worker (where the batch
    goes to the main process anyway, as torch's own collate does), else a NumPy allocation (large
    ones are backed by transparent huge pages: far fewer page faults than one buffer per slice)."""
    if torch.utils.data.get_worker_info() is not None:
        nbytes = int(np.prod(shape)) * 8
        storage = torch.UntypedStorage._new_shared(nbytes)  # fresh shared memory reads as zeros
        return torch.empty(0, dtype=torch.complex64).set_(storage, 0, shape)
    return torch.from_numpy(np.zeros(shape, np.complex64))


class CorruptedStore(torch.utils.data.Dataset):
    """A corrupted store as a map-style Dataset of :class:`AmbientSample`.

    It has no way to return a clean image: the store holds none. Clean references for evaluation
    come from :mod:`ambientmri.data.references`.

    Opening reads the manifest only (the slice index comes from its per-volume slice counts); volume
    files are opened on first use by the process that reads them, so every DataLoader worker (and
    every process forked after the store was used) opens its own HDF5 handles. Version-1 (dense) and
    version-2 (compact) volume files read the same.

    Args:
        path: the store folder (with ``manifest.json``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            hint = " (unfinished: run prepare again to resume)" if (self.path / ".prepare.json").exists() else ""
            raise InputError(self.path, f"not a corrupted store: manifest.json missing{hint}")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(manifest_path, f"not valid JSON ({exc.msg})") from None
        if self.manifest.get("format") != STORE_FORMAT:
            raise InputError(manifest_path, "not an ambientmri store manifest")
        version = self.manifest.get("version", 1)
        if version not in FORMAT_VERSIONS:
            raise InputError(
                manifest_path,
                f"store version {version} is not one this ambientmri reads ({', '.join(map(str, FORMAT_VERSIONS))}); "
                "upgrade ambientmri or prepare the store again",
            )
        self.volumes: list[dict[str, Any]] = self.manifest["volumes"]
        counts = np.asarray([int(vol["slices"]) for vol in self.volumes], np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # slice offset per volume
        self._files: dict[int, VolumeReader] = {}
        self._pid = os.getpid()
        self._corruption: Corruption | None = None

    # -- metadata --------------------------------------------------------------------------
    @property
    def corruption(self) -> Corruption:
        """The corruption family the store was prepared with."""
        if self._corruption is None:
            from pydantic import TypeAdapter

            from ambientmri.recipes import CorruptionConfig

            cfg = TypeAdapter(CorruptionConfig).validate_python(self.manifest["recipe"]["corruption"])
            self._corruption = cfg.build()
        return self._corruption

    @property
    def grid(self) -> tuple[int, int]:
        """The image grid ``(H, W)``."""
        return tuple(self.manifest["grid"])  # type: ignore[return-value]

    @property
    def coils(self) -> int:
        return int(self.manifest["coils"])

    def provenance(self, index: int) -> dict[str, Any]:
        """Source file name, slice and subject pseudonym of slice ``index``."""
        v, s = self._locate(index)
        vol = self.volumes[v]
        return {"index": index, "source": vol["source"], "slice": s, "subject": vol["subject"]}

    def coil_compression(self, index: int) -> np.ndarray | None:
        """The ``(V, C)`` matrix that compressed slice ``index``'s coils, or None."""
        v, s = self._locate(index)
        f = self._file(v)
        return np.asarray(f["coil_compression"][s]) if "coil_compression" in f else None

    def subjects(self) -> list[str]:
        """The subject pseudonym of every slice, in store order."""
        return [vol["subject"] for vol in self.volumes for _ in range(int(vol["slices"]))]

    def mask_frequency(self) -> np.ndarray:
        """``(H, W)``: the fraction of slices whose ``A`` measures each location of the grid (masks only are read)."""
        total = np.zeros(self.grid, np.float64)
        for v, vol in enumerate(self.volumes):
            masks = np.asarray(self._file(v)["mask"][: int(vol["slices"])], np.float64)
            total += np.broadcast_to(masks.sum(axis=0), self.grid)
        return (total / max(len(self), 1)).astype(np.float32)

    # -- data ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, index: int) -> tuple[int, int]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"slice index {index} out of range for a store of {n} slices")
        index %= n
        v = int(np.searchsorted(self._starts, index, side="right")) - 1
        return v, int(index - self._starts[v])

    def _file(self, v: int) -> VolumeReader:
        if self._pid != os.getpid():  # forked after use: HDF5 handles must not cross processes
            self._files, self._pid = {}, os.getpid()
        f = self._files.pop(v, None)
        if f is None:
            if len(self._files) >= MAX_OPEN_VOLUMES:  # a fastMRI train set has thousands of volumes
                self._files.pop(next(iter(self._files))).close()  # the least recently used
            path = self.path / self.volumes[v]["file"]
            try:
                f = VolumeReader(path)
            except (OSError, KeyError, ValueError):
                raise InputError(path, "store volume file is missing or corrupt") from None
        self._files[v] = f  # (re)inserted last: the dict's order is the order of use
        return f

    def __getitem__(self, index: int) -> AmbientSample:
        return self._read(index)

    def __getitems__(self, indices: list[int]) -> list[AmbientSample]:
        """The samples of a batch (what a DataLoader with automatic batching asks for).

        Slices of one shape are decoded into one zero-filled buffer per field, and the samples are
        consecutive views of it that :func:`~ambientmri.data.batch.collate` takes without copying:
        one large allocation per batch instead of two per slice, which at fastMRI size is most of
        the loader's time. The tensors are the same as ``[store[i] for i in indices]``.
        """
        located = [self._locate(int(i) % len(self)) for i in indices]
        readers = [self._file(v) for v, _ in located]
        shapes = {(r.y_shape, getattr(r, "maps_shape", None) if r.has_maps else None) for r in readers}
        if len(indices) < 2 or len(shapes) != 1:
            return [self._read(i) for i in indices]
        y_shape, maps_shape = shapes.pop()
        ty = _zeros((len(indices), *y_shape))
        tm = _zeros((len(indices), *maps_shape)) if maps_shape else None
        ys, maps = ty.numpy(), None if tm is None else tm.numpy()
        return [
            self._read(i, ys[j], None if maps is None else maps[j], ty[j], None if tm is None else tm[j])
            for j, i in enumerate(indices)
        ]

    def _read(
        self,
        index: int,
        y_out: np.ndarray | None = None,
        maps_out: np.ndarray | None = None,
        y_view: torch.Tensor | None = None,
        maps_view: torch.Tensor | None = None,
    ) -> AmbientSample:
        index = int(index) % len(self)
        v, s = self._locate(index)
        f = self._file(v)
        small = f.small
        scale = float(small["scale"][s])
        mask = small["mask"][s]
        y_array = f.scaled_y(s, mask, scale, y_out)
        y = y_view if y_view is not None else torch.from_numpy(y_array)
        if f.has_maps:
            maps_array = f.maps(s, maps_out)
            maps = maps_view if maps_view is not None else torch.from_numpy(maps_array)
        else:
            maps = torch.zeros(0)
        seed = int(small["matrix_seed"][s]) if "matrix_seed" in small else -1
        return AmbientSample(
            y=y,
            mask=torch.from_numpy(mask.astype(np.float32)),
            further_mask=torch.from_numpy(small["further_mask"][s].astype(np.float32)),
            maps=maps,
            matrix_seed=seed,
            scale=scale,
            index=index,
        )

    def operator(self, sample: AmbientSample, *, further: bool = False) -> MaskedOperator:
        """``A`` (or ``Ã`` with ``further=True``) of a sample or a collated batch of samples."""
        mask = sample.further_mask if further else sample.mask
        corruption = self.corruption
        maps = sample.maps if sample.maps.numel() else None
        matrix = None
        if isinstance(corruption, GaussianCorruption):
            seeds = sample.matrix_seed if isinstance(sample.matrix_seed, torch.Tensor) else [sample.matrix_seed]
            n = self.grid[0] * self.grid[1]
            mats = [
                torch.from_numpy(corruption.matrix(n, int(sd))).to(mask.device)
                for sd in torch.as_tensor(seeds).reshape(-1)
            ]
            matrix = torch.stack(mats) if isinstance(sample.matrix_seed, torch.Tensor) else mats[0]
            return corruption.operator(mask, (corruption.m,), matrix=matrix)
        return corruption.operator(mask, self.grid, maps=maps)

    def close(self) -> None:
        """Close the volume files this process opened."""
        if self._pid == os.getpid():
            for f in self._files.values():
                f.close()
        self._files = {}

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen files
        state = self.__dict__.copy()
        state["_files"] = {}
        return state


__all__ = [
    "AmbientSample",
    "CorruptedStore",
    "PrepareResult",
    "further_seed",
    "mask_seed",
    "matrix_seed",
    "prepare_store",
    "source_image",
]

_image_of = source_image  # the former private name, kept for existing callers
