"""Read and write magnitude image series as NIfTI files and DICOM folders.

Axis convention: a :class:`MedicalSeries` holds ``images`` as ``(S, H, W)`` float32 -- slices,
rows, columns -- and ``spacing`` as ``(slice, row, col)`` in mm. Its ``affine`` follows NIfTI: it
maps a voxel index ``(row, col, slice)`` (the NIfTI data array is ``images.transpose(1, 2, 0)``)
to RAS+ world millimetres.

- NIfTI: voxel axis ``i`` -> rows, ``j`` -> columns, ``k`` -> slices (no reorientation; the affine
  keeps the geometry), so ``write_nifti(read_nifti(p).images, affine=...)`` reproduces the file.
- DICOM: ``PixelSpacing`` is (row spacing, column spacing); slices are ordered by
  ``ImagePositionPatient`` projected on the slice normal (direction chosen so that
  ``InstanceNumber`` increases), else by ``InstanceNumber``, else by file name; the LPS patient
  coordinates are converted to RAS for the affine.

The DICOM writer takes no input dataset: it copies nothing from any acquisition, writes
placeholder patient name and id, and fresh UIDs for study, series, frame of reference and every
instance.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from ambientmri.errors import InputError, one_line
from ambientmri.utils import atomic_dir, atomic_path

__all__ = [
    "MedicalSeries",
    "read_dicom_series",
    "read_nifti",
    "read_series",
    "write_dicom_series",
    "write_nifti",
]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UINT16_MAX = 65535


@dataclasses.dataclass(eq=False)
class MedicalSeries:
    """One magnitude image series.

    Attributes:
        images: ``(S, H, W)`` float32 magnitude.
        spacing: ``(slice, row, col)`` voxel spacing in mm.
        affine: ``(4, 4)`` float64, voxel ``(row, col, slice)`` -> RAS+ mm (NIfTI convention).
        source: the file or folder read.
        subject: DICOM ``PatientID``; for NIfTI (or a DICOM without one) the file or folder stem.
        description: NIfTI ``descrip`` or DICOM ``SeriesDescription``.
    """

    images: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    source: Path
    subject: str
    description: str = ""


# --------------------------------------------------------------------------------------------
# NIfTI
# --------------------------------------------------------------------------------------------


def _nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_nifti_name(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def read_nifti(path: str | Path) -> MedicalSeries:
    """Read a ``.nii`` / ``.nii.gz`` magnitude volume.

    A 3-D volume ``(X, Y, Z)`` becomes ``Z`` slices of ``(X, Y)`` (voxel ``i`` -> rows, ``j`` ->
    columns); a 2-D image is one slice; a 4-D file with a single volume is accepted.

    Raises:
        InputError: missing, not NIfTI, truncated, complex, 4-D with several volumes, NaN/Inf.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for foreign/corrupt files
        raise InputError(path, f"not a readable NIfTI file ({one_line(exc)})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(path, f"not a NIfTI image ({type(img).__name__})")
    dtype = np.dtype(img.get_data_dtype())
    if dtype.kind == "c":
        raise InputError(path, "complex NIfTI data; expected a magnitude image")
    if dtype.kind not in "biuf":  # RGB / RGBA (structured) or other non-numeric voxels
        kind = "colour (RGB) NIfTI data" if dtype.names else f"NIfTI data of type {dtype}"
        raise InputError(path, f"{kind}; expected a greyscale magnitude image")
    shape = tuple(int(v) for v in img.header.get_data_shape())
    if 0 in shape:
        raise InputError(path, f"NIfTI data has shape {shape}, with no voxels; expected one 2-D or 3-D volume")
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise InputError(path, f"truncated or corrupt NIfTI data ({one_line(exc)})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise InputError(path, f"NIfTI data has shape {shape}; expected one 2-D or 3-D volume")
    if np.iscomplexobj(data):
        raise InputError(path, "complex NIfTI data; expected a magnitude image")
    if not np.isfinite(data).all():
        raise InputError(path, "NIfTI data contains NaN or Inf")
    zooms = (*(float(z) for z in img.header.get_zooms()[:3]), 1.0, 1.0, 1.0)
    descrip = img.header.get("descrip")
    description = _text(descrip[()] if descrip is not None else b"")
    return MedicalSeries(
        images=np.ascontiguousarray(data.transpose(2, 0, 1), dtype=np.float32),
        spacing=(zooms[2], zooms[0], zooms[1]),
        affine=np.asarray(img.affine, dtype=np.float64),
        source=path,
        subject=_nifti_stem(path),
        description=description,
    )


def write_nifti(
    path: str | Path,
    volume: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    affine: np.ndarray | None = None,
    description: str = "",
    overwrite: bool = False,
) -> Path:
    """Write ``(S, H, W)`` (or ``(H, W)``) as a float32 NIfTI-1 file, atomically.

    Args:
        path: ``.nii`` or ``.nii.gz`` (gzip-compressed).
        volume: magnitude images; stored as ``volume.transpose(1, 2, 0)``.
        spacing: ``(slice, row, col)`` mm, used when ``affine`` is None
            (affine ``diag(row, col, slice, 1)``).
        affine: voxel ``(row, col, slice)`` -> RAS+ mm; overrides ``spacing``.
        description: the header's ``descrip`` (at most 79 characters kept).
        overwrite: replace an existing file; without it an existing ``path`` raises
            :class:`FileExistsError` and nothing is written.

    Returns:
        The written path.
    """
    path = Path(path)
    if not _is_nifti_name(path):
        raise ValueError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it (nothing was changed)")
    vol = _as_volume(volume)
    if affine is None:
        affine = _spacing_affine(spacing)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {affine.shape}")
    img = nib.Nifti1Image(np.ascontiguousarray(vol.transpose(1, 2, 0)), affine)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = description.encode("ascii", errors="replace")[:79]
    payload = img.to_bytes()
    if path.name.lower().endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return path


def _spacing_affine(spacing: Sequence[float]) -> np.ndarray:
    s_slice, s_row, s_col = _spacing3(spacing)
    return np.diag([s_row, s_col, s_slice, 1.0])


def _spacing3(spacing: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(np.isfinite(values)) or min(values) <= 0:
        raise ValueError(f"spacing must be 3 positive mm values (slice, row, col), got {spacing}")
    return values  # type: ignore[return-value]


def _as_volume(volume: np.ndarray) -> np.ndarray:
    vol = np.asarray(volume)
    if np.iscomplexobj(vol):
        raise ValueError("volume must be real (magnitude); take np.abs of complex images first")
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3 or 0 in vol.shape:
        raise ValueError(f"volume must be (S, H, W) or (H, W), got shape {vol.shape}")
    vol = vol.astype(np.float32)
    if not np.isfinite(vol).all():
        raise ValueError("volume contains NaN or Inf")
    return vol


# --------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------


def read_dicom_series(folder: str | Path) -> MedicalSeries:
    """Read one DICOM series from the files of ``folder`` that parse as DICOM.

    Non-DICOM files (no ``DICM`` preamble) are skipped; subfolders and hidden files are ignored.
    Pixel values are ``stored * RescaleSlope + RescaleIntercept``.

    Raises:
        InputError: no DICOM file; a file without pixel data (named); several series; slices of
            different sizes; multi-frame or colour images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    datasets = []
    for file in files:
        try:
            ds = pydicom.dcmread(file)
        except InvalidDicomError:
            continue
        except Exception as exc:  # a DICOM-looking file that pydicom cannot parse
            raise InputError(file, f"corrupt DICOM file ({one_line(exc)})") from None
        if is_directory_record(file, ds):
            continue
        datasets.append((file, ds))
    if not datasets:
        raise InputError(folder, "no DICOM files in the folder")
    return _series_from_datasets(datasets, folder)


def _series_from_datasets(datasets: list[tuple[Path, pydicom.Dataset]], source: Path) -> MedicalSeries:
    series_uids = {str(ds.get("SeriesInstanceUID", "")) for _, ds in datasets}
    if len(series_uids) > 1:
        raise InputError(source, f"holds {len(series_uids)} DICOM series; put one series per folder")
    slices = []
    for file, ds in datasets:
        if not any(tag in ds for tag in _PIXEL_TAGS):
            raise InputError(file, "DICOM file has no pixel data")
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            raise InputError(file, "colour DICOM image; expected a greyscale MR image")
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise InputError(file, "multi-frame DICOM is not supported; export single frames")
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # missing decoder, truncated pixel data, ...
            raise InputError(file, f"cannot decode DICOM pixel data ({one_line(exc)})") from None
        if pixels.ndim != 2:
            raise InputError(file, f"DICOM pixel data has shape {pixels.shape}; expected 2-D")
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        slices.append((file, ds, pixels.astype(np.float64) * slope + intercept))

    first_file, first_ds, first_pixels = slices[0]
    for file, _, pixels in slices[1:]:
        if pixels.shape != first_pixels.shape:
            raise InputError(
                source,
                f"slices have different sizes: {_size(first_pixels)} ({first_file.name}) and "
                f"{_size(pixels)} ({file.name})",
            )

    geometry = all("ImagePositionPatient" in ds and "ImageOrientationPatient" in ds for _, ds, _ in slices)
    numbers = [ds.get("InstanceNumber") for _, ds, _ in slices]
    has_numbers = all(n is not None and str(n) != "" for n in numbers)
    positions = None
    if geometry:
        iop = np.array([float(x) for x in first_ds.ImageOrientationPatient], dtype=np.float64)
        normal = np.cross(iop[:3], iop[3:])
        ipps = [np.array([float(x) for x in ds.ImagePositionPatient]) for _, ds, _ in slices]
        proj = [float(ipp @ normal) for ipp in ipps]
        order = sorted(range(len(slices)), key=lambda i: (proj[i], _number(numbers[i])))
        if has_numbers and len(order) > 1 and _number(numbers[order[0]]) > _number(numbers[order[-1]]):
            order.reverse()  # keep the stack running the way InstanceNumber does
        positions = [ipps[i] for i in order]
    elif has_numbers:
        order = sorted(range(len(slices)), key=lambda i: _number(numbers[i]))
    else:
        order = list(range(len(slices)))
    images = np.stack([slices[i][2] for i in order]).astype(np.float32)

    row_mm, col_mm = _pixel_spacing(first_ds)
    fallback = float(first_ds.get("SpacingBetweenSlices") or first_ds.get("SliceThickness") or 1.0)
    if geometry:
        steps = np.abs(np.diff([p @ normal for p in positions]))
        slice_mm = float(np.median(steps)) if len(steps) else 0.0
        if slice_mm > 0:
            slice_vec = (positions[-1] - positions[0]) / (len(positions) - 1)
        else:  # one slice (or all at one position): step along the normal
            slice_mm = fallback
            slice_vec = normal * slice_mm
        affine_lps = np.eye(4)
        affine_lps[:3, 0] = iop[3:] * row_mm  # down the rows: the column direction cosine
        affine_lps[:3, 1] = iop[:3] * col_mm  # along a row: the row direction cosine
        affine_lps[:3, 2] = slice_vec
        affine_lps[:3, 3] = positions[0]
        affine = _LPS_TO_RAS @ affine_lps
    else:
        slice_mm = fallback
        affine = np.diag([row_mm, col_mm, slice_mm, 1.0])
    subject = str(first_ds.get("PatientID", "") or "").strip() or source.stem
    return MedicalSeries(
        images=images,
        spacing=(slice_mm, row_mm, col_mm),
        affine=affine,
        source=source,
        subject=subject,
        description=str(first_ds.get("SeriesDescription", "") or ""),
    )


def _pixel_spacing(ds: pydicom.Dataset) -> tuple[float, float]:
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(key)
        if value is not None and len(value) == 2:
            return float(value[0]), float(value[1])
    return 1.0, 1.0


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _size(pixels: np.ndarray) -> str:
    return f"{pixels.shape[0]}x{pixels.shape[1]}"


def _own_dicom_series(folder: Path) -> bool:
    """A folder holding only a series :func:`write_dicom_series` wrote."""
    if not folder.is_dir() or folder.is_symlink():
        return False
    files = sorted(folder.iterdir())
    if not files or not all(re.fullmatch(r"IM\d{4,}\.dcm", p.name) and p.is_file() for p in files):
        return False
    try:
        return str(pydicom.dcmread(files[0], stop_before_pixels=True).get("Manufacturer", "")) == "ambientmri"
    except (InvalidDicomError, OSError, ValueError):
        return False


def write_dicom_series(
    folder: str | Path,
    volume: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    affine: np.ndarray | None = None,
    series_description: str = "ambientmri",
    patient_name: str = "ANONYMOUS",
    patient_id: str | None = None,
    series_number: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write ``(S, H, W)`` float images as an MR Image Storage series, atomically.

    One file per slice (``IM0001.dcm``...), 16-bit unsigned pixels with one ``RescaleSlope`` /
    ``RescaleIntercept`` for the series so that ``stored * slope + intercept`` gives the values
    back within ``(max - min) / 131070``. Nothing is copied from any input: patient name and id
    are placeholders, and study, series, frame-of-reference and instance UIDs are fresh.

    Args:
        folder: output folder; written beside it under a temporary name and renamed. An existing
            folder is replaced only if it is empty or a series this function wrote (``IMnnnn.dcm``
            files by the manufacturer ``ambientmri``); anything else raises
            :class:`FileExistsError` unless ``overwrite``.
        volume: ``(S, H, W)`` (or ``(H, W)``) real values.
        spacing: ``(slice, row, col)`` mm; used with a standard axial orientation when ``affine``
            is None.
        affine: voxel ``(row, col, slice)`` -> RAS+ mm (e.g. from :func:`read_nifti`); sets
            orientation, positions and spacing.
        series_description: ``SeriesDescription``.
        patient_name: placeholder ``PatientName``.
        patient_id: placeholder ``PatientID``; default empty (a type 2 attribute), so that
            :func:`read_dicom_series` names the subject after the folder rather than lumping every
            series written here into one "ANONYMOUS" subject.
        series_number: ``SeriesNumber``.

    Returns:
        The folder.
    """
    folder = Path(folder)
    vol = _as_volume(volume).astype(np.float64)
    num_slices = vol.shape[0]
    affine_lps = _series_affine_lps(vol.shape, spacing, affine)
    low, high = float(vol.min()), float(vol.max())
    slope_text = _ds((high - low) / _UINT16_MAX) if high > low else "1"
    intercept_text = _ds(low)
    slope, intercept = float(slope_text), float(intercept_text)
    stored = np.clip(np.rint((vol - intercept) / slope), 0, _UINT16_MAX).astype("<u2")
    series = {
        "study_uid": generate_uid(), "series_uid": generate_uid(), "frame_uid": generate_uid(),
        "description": series_description[:64], "patient_name": patient_name,
        "patient_id": "" if patient_id is None else patient_id, "number": int(series_number),
        "window": (_ds((low + high) / 2), _ds(max(high - low, 1e-6))), "rescale": (intercept_text, slope_text),
    }
    with atomic_dir(folder, replace=overwrite or _own_dicom_series(Path(folder))) as tmp:
        for k in range(num_slices):
            ds = _slice_dataset(series, affine_lps, k, stored[k])
            ds.save_as(tmp / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
    return folder


def _series_affine_lps(shape: tuple[int, ...], spacing: Sequence[float], affine: np.ndarray | None) -> np.ndarray:
    """Voxel ``(row, col, slice)`` -> LPS mm of a series: from ``affine`` (RAS+), or a standard axial
    orientation centred on the origin with ``spacing``."""
    num_slices, rows, cols = shape
    if affine is None:
        s_slice, s_row, s_col = _spacing3(spacing)
        # standard axial (IOP 1,0,0,0,1,0): along a row +x (L), down a column +y (P), slices +z (S)
        affine_lps = np.eye(4)
        affine_lps[:3, 0] = (0.0, s_row, 0.0)
        affine_lps[:3, 1] = (s_col, 0.0, 0.0)
        affine_lps[:3, 2] = (0.0, 0.0, s_slice)
        affine_lps[:3, 3] = (-(cols - 1) / 2 * s_col, -(rows - 1) / 2 * s_row, -(num_slices - 1) / 2 * s_slice)
    else:
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        affine_lps = _LPS_TO_RAS @ affine  # the flip is its own inverse
    if min(float(np.linalg.norm(affine_lps[:3, i])) for i in range(3)) <= 0:
        raise ValueError("affine has a zero-length voxel axis")
    return affine_lps


def _slice_dataset(series: dict[str, Any], affine_lps: np.ndarray, k: int, pixels: np.ndarray) -> FileDataset:
    """Slice ``k`` of a series as an MR Image Storage dataset (fresh instance UID, no identifiers)."""
    row_mm, col_mm, slice_mm = (float(np.linalg.norm(affine_lps[:3, i])) for i in range(3))
    col_cos = affine_lps[:3, 0] / row_mm
    row_cos = affine_lps[:3, 1] / col_mm
    position = affine_lps[:3, 3] + k * affine_lps[:3, 2]
    instance_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = instance_uid
    ds.StudyDate = ds.StudyTime = ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.Manufacturer = "ambientmri"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = series["description"]
    ds.PatientName = series["patient_name"]
    ds.PatientID = series["patient_id"]
    ds.PatientBirthDate = ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "ambientmri: derived images, no identifiers copied"
    ds.ScanningSequence = "RM"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = ds.SpacingBetweenSlices = _ds(slice_mm)
    ds.StudyInstanceUID = series["study_uid"]
    ds.SeriesInstanceUID = series["series_uid"]
    ds.StudyID = ""
    ds.SeriesNumber = series["number"]
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [_ds(x) for x in position]
    ds.ImageOrientationPatient = [_ds(x) for x in (*row_cos, *col_cos)]
    ds.FrameOfReferenceUID = series["frame_uid"]
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = _ds(float(position @ np.cross(row_cos, col_cos)))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [_ds(row_mm), _ds(col_mm)]
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth = series["window"]
    ds.RescaleIntercept, ds.RescaleSlope = series["rescale"]
    ds.PixelData = pixels.tobytes()
    return ds


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters) for ``value``."""
    value = float(value)
    if abs(value) < 1e-30:
        return "0"
    for digits in (12, 10, 8, 6):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"cannot format {value} as a DICOM decimal string")


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


def read_series(path: str | Path) -> MedicalSeries:
    """Read a NIfTI file (``.nii``/``.nii.gz``), a single DICOM file or a folder of DICOM files."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if _is_nifti_name(path):
        return read_nifti(path)
    if has_dicom_preamble(path):
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:
            raise InputError(path, f"corrupt DICOM file ({one_line(exc)})") from None
        return _series_from_datasets([(path, ds)], path)
    raise InputError(path, "unsupported file type; expected .nii, .nii.gz, a DICOM file or a DICOM folder")


MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


def is_directory_record(path: Path, ds: pydicom.Dataset | None = None) -> bool:
    """Whether ``path`` (or its parsed ``ds``) is a DICOMDIR: a media index, not an image."""
    if path.name.upper() == "DICOMDIR":
        return True
    meta = getattr(ds, "file_meta", None)
    return meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY


def has_dicom_preamble(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


def _text(value: object) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()
    return str(value).strip()

