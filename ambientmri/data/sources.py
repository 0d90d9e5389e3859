"""Raw scan sources for ``prepare``: fastMRI HDF5 files, NIfTI volumes, DICOM series.

Each source volume yields, per slice, either fully sampled k-space ``(C, H, W)`` complex64 or (for
test/challenge files) masked k-space plus the file's own 1-D mask. Magnitude images (NIfTI, DICOM)
get simulated single-coil k-space ``F x``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ambientmri.errors import InputError
from ambientmri.operators.fft import fft2c_np

FASTMRI_SUFFIXES = (".h5", ".hdf5")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class SourceVolume:
    """One raw volume.

    Attributes:
        name: a file-system-safe unique name (file stem), used for seeding and the store file.
        seed_name: the name fastMRI seeds per-volume masks with (the file's base name).
        source: the file or folder it came from.
        subject: the subject identifier found in the input (pseudonymised before storing).
        num_slices: how many slices.
        coils: number of coils (1: single coil).
        shape: k-space matrix ``(H, W)``.
        mask: the file's own 1-D mask (test/challenge files), else ``None``.
        is_image: the source holds magnitude images (k-space is simulated).
        images: the magnitude images ``(S, H, W)`` of an image source.
        spacing: voxel spacing ``(slice, row, col)`` in mm of an image source.
        affine: its 4x4 voxel-to-world affine (NIfTI convention).
    """

    name: str
    seed_name: str
    source: Path
    subject: str
    num_slices: int
    coils: int
    shape: tuple[int, int]
    mask: np.ndarray | None
    is_image: bool
    images: np.ndarray | None = None
    spacing: tuple[float, float, float] | None = None
    affine: np.ndarray | None = None

    def kspace(self, i: int) -> np.ndarray:
        """Slice ``i`` as k-space ``(C, H, W)`` complex64 (already masked for test files)."""
        if self.is_image:
            return fft2c_np(self.image(i).astype(np.complex64))[None]
        from ambientmri.data.fastmri import FastMRIFile

        with FastMRIFile(self.source) as f:
            return f.kspace(i)

    def image(self, i: int) -> np.ndarray:
        """Slice ``i`` as a magnitude image (image sources only)."""
        if not self.is_image:
            raise TypeError("image() is only for NIfTI/DICOM sources")
        assert self.images is not None
        return self.images[i]


def _is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def _is_fastmri(path: Path) -> bool:
    return path.suffix in FASTMRI_SUFFIXES


def discover(src: Path, kind: str) -> list[Path]:
    """The input files/folders under ``src`` for a data ``kind`` (fastmri, nifti, dicom, synthetic)."""
    src = Path(src)
    if not src.exists():
        raise InputError(src, "no such file or folder")
    if kind in ("fastmri", "synthetic", "nifti"):
        match = _is_nifti if kind == "nifti" else _is_fastmri
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file() and match(p))
    elif kind == "dicom":
        if src.is_file():
            raise InputError(src, "DICOM input must be a folder of series (one folder per series)")
        from ambientmri.data.medical import has_dicom_preamble, is_directory_record

        # a series folder is one that holds DICOM files; READMEs, DICOMDIRs' neighbours etc. are ignored
        folders = {
            p.parent
            for p in src.rglob("*")
            if p.is_file() and not is_directory_record(p) and has_dicom_preamble(p)
        }
        files = sorted(folders)
    else:
        raise ValueError(f"unknown data kind {kind!r}")
    if not files:
        raise InputError(src, f"no {kind} inputs found")
    return files


def open_sources(src: Path, kind: str) -> list[SourceVolume]:
    """Open and validate every input under ``src`` (headers only for fastMRI files).

    Raises:
        InputError: the first unreadable or malformed input, naming it.
    """
    volumes: list[SourceVolume] = []
    for path in discover(src, kind):
        volumes.append(open_source(path, kind))
    names = [v.name for v in volumes]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        raise InputError(src, f"two inputs share the name {dup!r}; names must be unique")
    return volumes


def open_source(path: Path, kind: str) -> SourceVolume:
    """Open one input file or series (``kind``: fastmri, synthetic, nifti or dicom) as a :class:`SourceVolume`."""
    if kind in ("fastmri", "synthetic"):
        from ambientmri.data.fastmri import FastMRIFile

        with FastMRIFile(path) as f:
            info = f.info
            subject = f.patient_id
        h, w = info.shape
        return SourceVolume(
            name=path.stem,
            seed_name=path.name,
            source=path,
            subject=str(subject),
            num_slices=int(info.num_slices),
            coils=int(info.num_coils),
            shape=(int(h), int(w)),
            mask=None if info.mask is None else np.asarray(info.mask, np.float32),
            is_image=False,
        )
    from ambientmri.data.medical import read_dicom_series, read_nifti

    series = read_nifti(path) if kind == "nifti" else read_dicom_series(path)
    images = np.asarray(series.images, np.float32)
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    vol = SourceVolume(
        name=name,
        seed_name=path.name,
        source=path,
        subject=str(series.subject),
        num_slices=int(images.shape[0]),
        coils=1,
        shape=(int(images.shape[1]), int(images.shape[2])),
        mask=None,
        is_image=True,
        images=images,
        spacing=tuple(float(v) for v in series.spacing),
        affine=np.asarray(series.affine, np.float64),
    )
    return vol


def iter_slices(volume: SourceVolume) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, kspace (C, H, W))`` for every slice of ``volume``."""
    if volume.is_image:
        for i in range(volume.num_slices):
            yield i, volume.kspace(i)
        return
    from ambientmri.data.fastmri import FastMRIFile

    with FastMRIFile(volume.source) as f:
        for i in range(volume.num_slices):
            yield i, f.kspace(i)

_open_one = open_source  # the former private name, kept for existing callers


def target_grid(crop: Sequence[int] | None, shape: tuple[int, int]) -> tuple[int, int]:
    """The image grid a volume of image size ``shape`` is trained on: the recipe's ``data.crop`` if set."""
    return (int(crop[0]), int(crop[1])) if crop else (int(shape[0]), int(shape[1]))


def recipe_grid(data: Any, shape: tuple[int, int] | None = None) -> tuple[int, int]:
    """The image grid of a recipe's ``data`` section: ``shape`` if given, else ``data.crop``, else the
    synthetic matrix or the first source volume's image size.

    Raises:
        ValueError: the size cannot be told without data (one line).
    """
    if shape:
        return (int(shape[0]), int(shape[1]))
    if data.crop:
        return target_grid(data.crop, (0, 0))
    if data.kind == "synthetic":
        return (int(data.matrix[0]), int(data.matrix[1]))
    if data.path is not None:
        return open_sources(Path(data.path), data.kind)[0].shape
    raise ValueError("cannot tell the image size from the recipe: pass --shape H W or set data.crop")
