"""Read and write fastMRI HDF5 files, and compute their reconstruction targets.

Layout of a fastMRI file (facebookresearch/fastMRI, ``fastmri/data/mri_data.py``):

- ``kspace``: complex64, ``(S, H, W)`` singlecoil or ``(S, C, H, W)`` multicoil; ``H`` is the
  readout (640 in the public data, 2x oversampled), ``W`` the phase encode.
- ``reconstruction_rss`` (multicoil) or ``reconstruction_esc`` + ``reconstruction_rss``
  (singlecoil): float32 ``(S, h, w)`` magnitude targets, the center ``(h, w)`` crop of the image.
- ``mask`` (test/challenge files only): 1-D, length ``W``; the k-space is zero in unmeasured columns.
- ``ismrmrd_header``: XML bytes with the encoded and recon matrix sizes and the phase-encode limits.
- attrs: ``acquisition``, ``max``, ``norm``, ``patient_id``; test files add ``acceleration`` and
  ``num_low_frequency``.

Axis conventions used throughout ambientmri: k-space slices are ``(C, H, W)`` (a coil axis always,
``C = 1`` for singlecoil), images ``(H, W)`` with rows = readout, columns = phase encode, exactly as
stored by fastMRI; the header's ``x`` is ``H`` and ``y`` is ``W``.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import torch

from ambientmri.errors import InputError, one_line
from ambientmri.operators.fft import center_crop, ifft2c_np
from ambientmri.utils import atomic_path

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
TARGET_NAMES = ("reconstruction_esc", "reconstruction_rss")


def target_name(challenge: str | None, present: Sequence[str]) -> str | None:
    """The target a fastMRI file is scored against, of the target datasets ``present``.

    fastMRI's convention (its ``evaluate.py``): ``reconstruction_esc`` for single-coil data,
    ``reconstruction_rss`` for multi-coil; when the preferred one is missing, the other. ``None``
    when the file has no target (a test or challenge file). The one choice every reader uses.
    """
    preferred = ("reconstruction_esc", "reconstruction_rss") if challenge == "singlecoil" else (
        "reconstruction_rss", "reconstruction_esc")
    return next((name for name in preferred if name in present), None)
# fastMRI's test files call it ``num_low_frequency``; ambientmri also accepts the plural spelling.
_NUM_LOW_ATTR = "num_low_frequency"
_NUM_LOW_ALIAS = "num_low_frequencies"

__all__ = [
    "ISMRMRD_NAMESPACE",
    "TARGET_NAMES",
    "FastMRIFile",
    "FastMRIInfo",
    "build_ismrmrd_header",
    "default_recon_size",
    "parse_ismrmrd_header",
    "rss",
    "target_from_kspace",
    "target_name",
    "write_fastmri",
]


# --------------------------------------------------------------------------------------------
# ISMRMRD header
# --------------------------------------------------------------------------------------------


def default_recon_size(height: int, width: int) -> tuple[int, int]:
    """The recon FOV ambientmri assumes when none is given: ``(H // 2, min(W, H // 2))``.

    ``H`` includes fastMRI's 2x readout oversampling, so this is fastMRI's 320x320 for the public
    640x368 (knee) and 640x320 (brain) k-space.
    """
    return height // 2, min(width, height // 2)


def build_ismrmrd_header(
    encoded: tuple[int, int, int],
    recon: tuple[int, int, int],
    center: int,
    maximum: int,
    *,
    pixel_mm: float = 1.0,
    slice_thickness_mm: float = 3.0,
) -> bytes:
    """A minimal ISMRMRD XML header that fastMRI's ``SliceDataset`` can parse.

    Args:
        encoded: encoded matrix size ``(x, y, z)`` = ``(H, W, 1)`` of the k-space.
        recon: recon matrix size ``(x, y, z)``, e.g. ``(320, 320, 1)``.
        center: ``kspace_encoding_step_1`` center (fastMRI files: ``W // 2``).
        maximum: ``kspace_encoding_step_1`` maximum (fastMRI files: ``W - 1``).
        pixel_mm: in-plane pixel size used for the ``fieldOfView_mm`` entries.
        slice_thickness_mm: the ``fieldOfView_mm/z`` entry.

    Returns:
        UTF-8 XML bytes in the ``http://www.ismrm.org/ISMRMRD`` namespace.
    """
    ET.register_namespace("", ISMRMRD_NAMESPACE)

    def sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ISMRMRD_NAMESPACE}}}{tag}")
        if text is not None:
            el.text = str(text)
        return el

    def space(parent: ET.Element, tag: str, size: tuple[int, int, int]) -> None:
        node = sub(parent, tag)
        matrix = sub(node, "matrixSize")
        for axis, n in zip("xyz", size, strict=True):
            sub(matrix, axis, int(n))
        fov = sub(node, "fieldOfView_mm")
        for axis, mm in zip("xyz", (size[0] * pixel_mm, size[1] * pixel_mm, slice_thickness_mm), strict=True):
            sub(fov, axis, f"{float(mm):g}")

    encoded = _triple(encoded, "encoded")
    recon = _triple(recon, "recon")
    root = ET.Element(f"{{{ISMRMRD_NAMESPACE}}}ismrmrdHeader")
    encoding = sub(root, "encoding")
    space(encoding, "encodedSpace", encoded)
    space(encoding, "reconSpace", recon)
    limits = sub(encoding, "encodingLimits")
    step1 = sub(limits, "kspace_encoding_step_1")
    sub(step1, "minimum", 0)
    sub(step1, "maximum", int(maximum))
    sub(step1, "center", int(center))
    for name in ("kspace_encoding_step_2", "slice"):
        node = sub(limits, name)
        for field in ("minimum", "maximum", "center"):
            sub(node, field, 0)
    sub(encoding, "trajectory", "cartesian")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def parse_ismrmrd_header(xml: bytes | str, *, source: str | Path = "ismrmrd_header") -> dict:
    """Parse the fields of an ISMRMRD header that fastMRI uses.

    Args:
        xml: the header XML.
        source: what to name in an error (the file holding the header).

    Returns:
        ``{"encoded_size": (x, y, z), "recon_size": (x, y, z), "center", "maximum",
        "padding_left", "padding_right"}`` with ``padding_left = encoded_y // 2 - center`` and
        ``padding_right = padding_left + maximum + 1``, as ``SliceDataset`` derives them.

    Raises:
        InputError: malformed XML or a missing element.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InputError(source, f"malformed ismrmrd_header XML ({exc})") from None

    def get(*tags: str) -> int:
        query = "." + "".join(f"//{{{ISMRMRD_NAMESPACE}}}{tag}" for tag in tags)
        el = root.find(query)
        if el is None or el.text is None:
            raise InputError(source, f"ismrmrd_header lacks {'/'.join(tags)}")
        try:
            return int(float(el.text.strip()))
        except ValueError:
            raise InputError(source, f"ismrmrd_header {'/'.join(tags)} is not a number: {el.text.strip()!r}") from None

    enc = ("encoding", "encodedSpace", "matrixSize")
    rec = ("encoding", "reconSpace", "matrixSize")
    lims = ("encoding", "encodingLimits", "kspace_encoding_step_1")
    encoded_size = tuple(get(*enc, a) for a in "xyz")
    recon_size = tuple(get(*rec, a) for a in "xyz")
    center = get(*lims, "center")
    maximum = get(*lims, "maximum")
    padding_left = encoded_size[1] // 2 - center
    return {
        "encoded_size": encoded_size,
        "recon_size": recon_size,
        "center": center,
        "maximum": maximum,
        "padding_left": padding_left,
        "padding_right": padding_left + maximum + 1,
    }


def _triple(size: tuple[int, ...], what: str) -> tuple[int, int, int]:
    size = tuple(int(s) for s in size)
    if len(size) == 2:
        size = (*size, 1)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"{what} matrix size must be 3 positive ints (x, y, z), got {size}")
    return size  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


def rss(coil_images: np.ndarray | torch.Tensor, axis: int = 0) -> np.ndarray | torch.Tensor:
    """Root sum of squares over the coil axis: ``sqrt(sum_c |x_c|^2)`` (real output)."""
    if isinstance(coil_images, torch.Tensor):
        return torch.sqrt((coil_images.abs() ** 2).sum(dim=axis))
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=axis))


def target_from_kspace(kspace: np.ndarray, recon_size: tuple[int, ...]) -> np.ndarray:
    """The fastMRI target of one slice: ifft2c, center crop to ``recon_size``, RSS over coils.

    Args:
        kspace: ``(C, H, W)`` multicoil, or ``(H, W)`` / ``(1, H, W)`` singlecoil; complex.
        recon_size: ``(h, w)`` or the header's ``(x, y, z)``; only the first two are used.

    Returns:
        ``(h, w)`` float32: the RSS image (multicoil) or the magnitude, i.e. ESC (singlecoil,
        computed as ``abs`` so it is bit-identical whichever of the two layouts is passed).
        Cropping uses fastMRI's ``center_crop`` offsets ``(size - crop) // 2``.
    """
    kspace = np.asarray(kspace)
    if kspace.ndim not in (2, 3):
        raise ValueError(f"kspace must be (C, H, W) or (H, W), got shape {kspace.shape}")
    image = center_crop(ifft2c_np(kspace.astype(np.complex64, copy=False)), tuple(recon_size[:2]))
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 2:
        return np.abs(image).astype(np.float32)
    return rss(image, axis=0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class FastMRIInfo:
    """What a fastMRI file holds (read once from the metadata; no k-space is loaded).

    Attributes:
        path: the file.
        challenge: ``"singlecoil"`` (k-space ndim 3) or ``"multicoil"`` (ndim 4).
        num_slices: ``S``.
        num_coils: ``C`` (1 for singlecoil).
        shape: k-space ``(H, W)``.
        header: :func:`parse_ismrmrd_header` of ``ismrmrd_header``, or None if absent.
        attrs: the file's attributes as plain Python values; ``num_low_frequency`` is also given
            as ``num_low_frequencies``.
        mask: 1-D float32 ``(W,)`` for test/challenge files, else None.
        targets: names of the target datasets present (subset of :data:`TARGET_NAMES`).
        target_shape: ``(h, w)`` of the targets, or None when there is none.
    """

    path: Path
    challenge: str
    num_slices: int
    num_coils: int
    shape: tuple[int, int]
    header: dict | None
    attrs: dict[str, Any]
    mask: np.ndarray | None
    targets: tuple[str, ...]
    target_shape: tuple[int, int] | None = None

    @property
    def is_undersampled(self) -> bool:
        """True for test/challenge files (they carry a ``mask``)."""
        return self.mask is not None

    @property
    def recon_size(self) -> tuple[int, int]:
        """``(h, w)`` of the target: the targets' shape, else the header's, else the default."""
        if self.target_shape is not None:
            return self.target_shape
        if self.header is not None:
            return tuple(self.header["recon_size"][:2])  # type: ignore[return-value]
        return default_recon_size(*self.shape)


class FastMRIFile:
    """A fastMRI HDF5 file, opened lazily and validated on first access.

    Use as a context manager (or call :meth:`close`)::

        with FastMRIFile(path) as f:
            k = f.kspace(0)          # (C, H, W) complex64
            t = f.target(0)          # (h, w) float32

    Every problem with the file raises :class:`InputError` naming the file. The object can be
    pickled (e.g. into DataLoader workers); the HDF5 handle is reopened on demand.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._info: FastMRIInfo | None = None

    # -- life cycle ---------------------------------------------------------------------------
    def __enter__(self) -> FastMRIFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HDF5 handle (reading again reopens it)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "_file": None, "_info": self._info}

    def __repr__(self) -> str:
        return f"FastMRIFile({str(self.path)!r})"

    def _h5(self) -> h5py.File:
        if self._file is None:
            if not self.path.exists():
                raise InputError(self.path, "no such file")
            if self.path.is_dir():
                raise InputError(self.path, "is a folder, not a fastMRI HDF5 file")
            try:
                is_hdf5 = h5py.is_hdf5(self.path)
            except OSError:
                is_hdf5 = False
            if not is_hdf5:
                raise InputError(self.path, "not an HDF5 file")
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise InputError(self.path, f"cannot open HDF5 file, truncated or corrupt ({one_line(exc)})") from None
        return self._file

    # -- metadata -----------------------------------------------------------------------------
    @property
    def info(self) -> FastMRIInfo:
        """The file's :class:`FastMRIInfo` (validated on first access)."""
        if self._info is None:
            self._info = self._read_info()
        return self._info

    def __len__(self) -> int:
        return self.info.num_slices

    @property
    def patient_id(self) -> str:
        """The ``patient_id`` attribute, or the file stem when the file has none."""
        value = self.info.attrs.get("patient_id")
        return str(value) if value not in (None, "") else self.path.stem

    def _read_info(self) -> FastMRIInfo:
        f = self._h5()
        try:
            ds = f.get("kspace")
            if not isinstance(ds, h5py.Dataset):
                raise InputError(self.path, "no 'kspace' dataset (not a fastMRI file)")
            if ds.ndim not in (3, 4):
                raise InputError(
                    self.path,
                    f"'kspace' has {ds.ndim} dimensions {ds.shape}; expected 3 (slices, H, W) "
                    "singlecoil or 4 (slices, coils, H, W) multicoil",
                )
            if ds.dtype.kind != "c":
                raise InputError(self.path, f"'kspace' has dtype {ds.dtype}; expected complex")
            if ds.shape[0] == 0 or min(ds.shape) == 0:
                raise InputError(self.path, f"'kspace' is empty, shape {ds.shape}")
            challenge = "singlecoil" if ds.ndim == 3 else "multicoil"
            num_coils = 1 if ds.ndim == 3 else int(ds.shape[1])
            height, width = int(ds.shape[-2]), int(ds.shape[-1])
            num_slices = int(ds.shape[0])

            mask = None
            if "mask" in f:
                mask = np.asarray(f["mask"][()]).astype(np.float32)
                if mask.ndim != 1 or mask.shape[0] != width:
                    raise InputError(
                        self.path,
                        f"'mask' has shape {mask.shape}; expected ({width},), the k-space width",
                    )

            targets = tuple(name for name in TARGET_NAMES if name in f)
            target_shape = None
            for name in targets:
                tshape = f[name].shape
                if len(tshape) != 3 or tshape[0] != num_slices:
                    raise InputError(
                        self.path,
                        f"'{name}' has shape {tshape}; expected ({num_slices}, h, w)",
                    )
                target_shape = (int(tshape[1]), int(tshape[2]))

            header = None
            if "ismrmrd_header" in f:
                header = parse_ismrmrd_header(f["ismrmrd_header"][()], source=self.path)
            attrs = {key: _plain(value) for key, value in f.attrs.items()}
            if _NUM_LOW_ATTR in attrs:
                attrs.setdefault(_NUM_LOW_ALIAS, attrs[_NUM_LOW_ATTR])
        except OSError as exc:
            raise InputError(self.path, f"corrupt HDF5 file ({one_line(exc)})") from None
        return FastMRIInfo(
            path=self.path,
            challenge=challenge,
            num_slices=num_slices,
            num_coils=num_coils,
            shape=(height, width),
            header=header,
            attrs=attrs,
            mask=mask,
            targets=targets,
            target_shape=target_shape,
        )

    # -- data ---------------------------------------------------------------------------------
    def _slice_index(self, i: int) -> int:
        n = self.info.num_slices
        index = int(i)
        if not -n <= index < n:
            raise IndexError(f"{self.path}: slice {i} out of range for {n} slices")
        return index % n

    def _read(self, name: str, index: Any) -> np.ndarray:
        try:
            return np.asarray(self._h5()[name][index])
        except OSError as exc:
            raise InputError(self.path, f"cannot read '{name}', truncated or corrupt ({one_line(exc)})") from None

    def kspace(self, i: int) -> np.ndarray:
        """Slice ``i`` of the k-space as ``(C, H, W)`` complex64 (``C = 1`` for singlecoil).

        Raises:
            InputError: the slice holds NaN or Inf.
        """
        index = self._slice_index(i)
        k = self._read("kspace", index).astype(np.complex64, copy=False)
        if not np.isfinite(k).all():
            raise InputError(self.path, f"k-space slice {index} contains NaN or Inf")
        return k[None] if k.ndim == 2 else k

    def kspace_all(self) -> np.ndarray:
        """The whole k-space as ``(S, C, H, W)`` complex64 (``C = 1`` for singlecoil)."""
        self.info  # noqa: B018  (validate the layout first)
        k = self._read("kspace", ()).astype(np.complex64, copy=False)
        finite = np.isfinite(k).reshape(k.shape[0], -1).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise InputError(self.path, f"k-space slice {bad} contains NaN or Inf")
        return k[:, None] if k.ndim == 3 else k

    def _target_name(self, name: str | None) -> str:
        info = self.info
        if not info.targets:
            raise InputError(self.path, "has no reconstruction target (a test/challenge file)")
        if name is None:
            return str(target_name(info.challenge, info.targets))
        if name not in info.targets:
            raise InputError(self.path, f"has no '{name}' dataset; targets: {list(info.targets)}")
        return name

    def target(self, i: int, name: str | None = None) -> np.ndarray:
        """Target slice ``i`` as ``(h, w)`` float32.

        Args:
            i: slice index.
            name: ``reconstruction_esc`` / ``reconstruction_rss``; default: ESC for singlecoil
                when present, else RSS.
        """
        key = self._target_name(name)
        index = self._slice_index(i)
        t = self._read(key, index).astype(np.float32, copy=False)
        if not np.isfinite(t).all():
            raise InputError(self.path, f"'{key}' slice {index} contains NaN or Inf")
        return t

    def target_all(self, name: str | None = None) -> np.ndarray:
        """The whole target volume ``(S, h, w)`` float32 (same default as :meth:`target`)."""
        key = self._target_name(name)
        t = self._read(key, ()).astype(np.float32, copy=False)
        if not np.isfinite(t).all():
            raise InputError(self.path, f"'{key}' contains NaN or Inf")
        return t



def _plain(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (str, int, float, bool or list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value[()])
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def write_fastmri(
    path: str | Path,
    kspace: np.ndarray,
    *,
    targets: Mapping[str, np.ndarray] | None = None,
    mask: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
    header: bytes | None = None,
) -> Path:
    """Write a fastMRI-format HDF5 file atomically (temp file + rename).

    Args:
        path: destination ``.h5``.
        kspace: ``(S, H, W)`` singlecoil or ``(S, C, H, W)`` multicoil; stored as complex64.
        targets: ``{name: (S, h, w)}`` stored as float32 (e.g. ``reconstruction_rss``).
        mask: 1-D ``(W,)`` sampling mask for a test/challenge file; stored as given when bool,
            else float32. Columns where it is 0 are set to exactly ``+0`` in the stored k-space.
        attrs: file attributes (``acquisition``, ``max``, ``norm``, ``patient_id``,
            ``acceleration``, ``num_low_frequency``...); None values are skipped and
            ``num_low_frequencies`` is stored under fastMRI's name ``num_low_frequency``.
        header: ``ismrmrd_header`` XML; default built from the shapes: encoded ``(H, W, 1)``,
            recon = the targets' ``(h, w, 1)`` (else :func:`default_recon_size`),
            center ``W // 2``, maximum ``W - 1``.

    Returns:
        The written path.

    Raises:
        ValueError: inconsistent shapes or non-finite k-space.
    """
    path = Path(path)
    k = np.array(kspace, dtype=np.complex64, copy=True)
    if k.ndim not in (3, 4):
        raise ValueError(f"kspace must be (S, H, W) singlecoil or (S, C, H, W) multicoil, got {k.shape}")
    if not np.isfinite(k).all():
        raise ValueError("kspace contains NaN or Inf")
    num_slices, height, width = k.shape[0], k.shape[-2], k.shape[-1]

    mask_out = None
    if mask is not None:
        mask_arr = np.asarray(mask)
        if mask_arr.ndim != 1 or mask_arr.shape[0] != width:
            raise ValueError(f"mask must be 1-D of length W={width}, got shape {mask_arr.shape}")
        mask_out = mask_arr if mask_arr.dtype == np.bool_ else mask_arr.astype(np.float32)
        k[..., mask_arr == 0] = 0
    # -0.0 and +0.0 compare equal, but fastMRI's files hold +0: normalise both parts.
    parts = k.view(np.float32)
    parts[parts == 0] = 0.0

    target_arrays: dict[str, np.ndarray] = {}
    for name, value in (targets or {}).items():
        t = np.asarray(value, dtype=np.float32)
        if t.ndim != 3 or t.shape[0] != num_slices:
            raise ValueError(f"target {name!r} must be ({num_slices}, h, w), got {t.shape}")
        target_arrays[name] = t

    if header is None:
        if target_arrays:
            recon = next(iter(target_arrays.values())).shape[1:]
        else:
            recon = default_recon_size(height, width)
        header = build_ismrmrd_header((height, width, 1), (*recon, 1), width // 2, width - 1)

    plain_attrs = {}
    for key, value in (attrs or {}).items():
        if value is None:
            continue
        plain_attrs[_NUM_LOW_ATTR if key == _NUM_LOW_ALIAS else key] = value

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("ismrmrd_header", data=header)
        f.create_dataset("kspace", data=k)
        for name, t in target_arrays.items():
            f.create_dataset(name, data=t)
        if mask_out is not None:
            f.create_dataset("mask", data=mask_out)
        for key, value in plain_attrs.items():
            f.attrs[key] = value
    return path
