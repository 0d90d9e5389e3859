"""The on-disk layouts of a store's volume files: version 1 (dense) and version 2 (compact).

Both versions hold the same content (docs/data.md, "The corrupted store"); they differ in how:

- **Version 1** keeps every per-slice array dense: ``y`` zero-filled on the full grid and the coil
  maps as full-size complex64.
- **Version 2** keeps only what carries information: the measured entries of ``y`` (for a
  Cartesian mask the measured columns, for a 2-D or image mask the measured pixels, for a Gaussian
  mask the measured rows), flattened per slice; the coil maps as a bit-packed support (where any
  coil's map is non-zero; ESPIRiT's ``crop`` zeroes the rest) and the values on it in half
  precision (complex float16, relative error about 1e-4 in ``A x``); 2-D masks compressed with lzf,
  chunked by slice. Every other dataset (``scale``, ``coil_compression``, ``matrix_seed``) is as
  in version 1.

:class:`VolumeReader` rebuilds exactly the arrays version 1 stores (``y`` bit for bit, the maps up
to their half-precision rounding), so everything that reads a store sees the same tensors.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

#: Volume-file layouts this version reads; new stores are written in the last one.
FORMAT_VERSIONS = (1, 2)
#: The dtype of the stored coil-map values (real and imaginary parts) in version 2.
MAPS_DTYPE: Any = np.float16
_HALF_MAX = 60000.0  # maps beyond float16's range (never ESPIRiT's, whose |S| <= 1) stay float32

#: Datasets of a version-1 volume file (one row per slice) and their dtypes.
DENSE_DTYPES = {
    "y": np.complex64,  # measurements, zero wherever A measures nothing
    "mask": np.uint8,  # A
    "further_mask": np.uint8,  # Ã ⊆ A
    "scale": np.float32,
    "maps": np.complex64,  # ESPIRiT coil maps (multi-coil k-space)
    "coil_compression": np.complex64,  # (V, C) SVD coil compression (optional)
    "matrix_seed": np.int64,  # Gaussian sensing matrix seed
}


def volume_version(f: h5py.File) -> int:
    """The layout version of an open volume file (files without the attribute are version 1)."""
    return int(f.attrs.get("store_version", 1))


def write_volume(f: h5py.File, columns: dict[str, list[Any]], version: int) -> None:
    """Write one volume's per-slice arrays (``columns[name][slice]``, the dense version-1 arrays)."""
    if version not in FORMAT_VERSIONS:
        raise ValueError(f"store version must be one of {FORMAT_VERSIONS}, got {version}")
    f.attrs["store_version"] = version
    if version == 1:
        for key, values in columns.items():
            f.create_dataset(key, data=np.stack(values).astype(DENSE_DTYPES[key]))
        return
    masks = np.stack(columns["mask"]).astype(np.uint8)
    for key, values in columns.items():
        if key in ("y", "maps"):
            continue
        data = np.stack(values).astype(DENSE_DTYPES[key])
        if key in ("mask", "further_mask") and data.ndim >= 3 and data.shape[-2] > 1:  # 2-D masks
            f.create_dataset(key, data=data, chunks=(1, *data.shape[1:]), compression="lzf")
        else:
            f.create_dataset(key, data=data)
    _write_measured(f, columns["y"], masks)
    if "maps" in columns:
        _write_maps(f, columns["maps"])


def _measured_index(mask: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    """Flat indices (row-major over ``spatial``) of the entries a compact mask measures."""
    return np.flatnonzero(np.broadcast_to(np.asarray(mask) != 0, spatial))


def _spatial(y_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """The grid the mask lives on (the last ``mask.ndim`` axes of ``y``) and the leading (coil) size."""
    spatial = tuple(y_shape[len(y_shape) - len(mask_shape):])
    return spatial, math.prod(y_shape[: len(y_shape) - len(mask_shape)])


def _write_measured(f: h5py.File, ys: list[np.ndarray], masks: np.ndarray) -> None:
    y_shape = tuple(np.shape(ys[0]))
    spatial, lead = _spatial(y_shape, masks.shape[1:])
    values, offsets = [], [0]
    for y, mask in zip(ys, masks, strict=True):
        flat = np.asarray(y, np.complex64).reshape(lead, -1)
        index = _measured_index(mask, spatial)
        outside = np.ones(flat.shape[1], bool)
        outside[index] = False
        if np.any(flat[:, outside]):
            raise RuntimeError("measurements outside A's mask: the compact store cannot hold them")
        values.append(flat[:, index].T)
        offsets.append(offsets[-1] + index.size)
    f.create_dataset("y_values", data=np.concatenate(values).astype(np.complex64))
    f.create_dataset("y_offsets", data=np.asarray(offsets, np.int64))
    f.attrs["y_shape"] = np.asarray(y_shape, np.int64)


def _write_maps(f: h5py.File, all_maps: list[np.ndarray]) -> None:
    maps = np.stack(all_maps).astype(np.complex64)  # (S, C, H, W)
    support = np.any(maps != 0, axis=1)  # (S, H, W)
    big = not np.all(np.isfinite(maps)) or float(np.abs(maps).max(initial=0.0)) > _HALF_MAX
    dtype = np.float32 if big else MAPS_DTYPE
    values, offsets = [], [0]
    for m, sup in zip(maps, support, strict=True):
        v = m.reshape(m.shape[0], -1)[:, np.flatnonzero(sup)].T  # (n, C)
        values.append(np.stack([v.real, v.imag], axis=-1).astype(dtype))
        offsets.append(offsets[-1] + v.shape[0])
    f.create_dataset("maps_support", data=np.packbits(support, axis=-1))
    f.create_dataset("maps_values", data=np.concatenate(values))
    f.create_dataset("maps_offsets", data=np.asarray(offsets, np.int64))
    f.attrs["maps_shape"] = np.asarray(maps.shape[1:], np.int64)


def _divided(values: np.ndarray, scale: float) -> np.ndarray:
    """``values / scale`` for complex64 ``values``: both parts times the float32 reciprocal, which
    is what NumPy computes for a complex array over a real scalar, bit for bit, at a fraction of
    the time."""
    parts = np.ascontiguousarray(values, np.complex64).view(np.float32)
    return (parts * (np.float32(1) / np.float32(scale))).view(np.complex64)


class VolumeReader:
    """One open volume file of either version: the arrays of one slice, as version 1 stores them.

    Opened lazily by each process that reads (every DataLoader worker opens its own).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.file = h5py.File(self.path, "r")
        self.version = volume_version(self.file)
        if self.version not in FORMAT_VERSIONS:
            self.file.close()
            raise ValueError(f"volume layout {self.version}")
        f = self.file
        #: the small per-slice datasets, read once: (S,) scales and seeds, (S, *mask_shape) masks
        self.small = {k: np.asarray(f[k][()]) for k in ("scale", "mask", "further_mask", "matrix_seed") if k in f}
        # dataset objects looked up once (each lookup costs about as much as a small read)
        self._datasets = {k: f[k] for k in ("y", "maps", "y_values", "maps_values") if k in f}
        if self.version == 2:
            self.y_shape = tuple(int(n) for n in f.attrs["y_shape"])
            self._y_offsets = np.asarray(f["y_offsets"][()])
            if "maps_values" in f:
                self.maps_shape = tuple(int(n) for n in f.attrs["maps_shape"])
                self._maps_offsets = np.asarray(f["maps_offsets"][()])
                self._support = np.asarray(f["maps_support"][()])  # (S, H, W/8): small
        else:
            self.y_shape = tuple(f["y"].shape[1:])
            if "maps" in f:
                self.maps_shape = tuple(f["maps"].shape[1:])
        self.has_maps = "maps" in f or "maps_values" in f

    def __contains__(self, name: str) -> bool:
        return name in self.file

    def __getitem__(self, name: str) -> h5py.Dataset:
        return self.file[name]

    def scaled_y(self, s: int, mask: np.ndarray, scale: float, out: np.ndarray | None = None) -> np.ndarray:
        """Slice ``s``'s measurements divided by ``scale``: complex64, zero where ``mask`` is 0.

        ``out``: a zero-filled, C-contiguous complex64 array of shape ``y_shape`` to decode into.
        """
        if out is None:
            out = np.zeros(self.y_shape, np.complex64)
        if self.version == 1:
            out[...] = _divided(self._datasets["y"][s], scale)
            return out
        lo, hi = int(self._y_offsets[s]), int(self._y_offsets[s + 1])
        values = _divided(self._datasets["y_values"][lo:hi], scale)  # (n, C)
        spatial, lead = _spatial(self.y_shape, np.shape(mask))
        out.reshape(lead, math.prod(spatial))[:, _measured_index(mask, spatial)] = values.T
        return out

    def maps(self, s: int, out: np.ndarray | None = None) -> np.ndarray:
        """Slice ``s``'s coil maps ``(C, H, W)`` complex64 (``out``: a zero-filled array to decode into)."""
        if out is None:
            out = np.zeros(self.maps_shape, np.complex64)
        if self.version == 1:
            self._datasets["maps"].read_direct(out, np.s_[s])
            return out
        c, h, w = self.maps_shape
        support = np.flatnonzero(np.unpackbits(self._support[s], axis=-1, count=w))
        lo, hi = int(self._maps_offsets[s]), int(self._maps_offsets[s + 1])
        # (n, C, 2); torch converts half precision faster than numpy
        parts = torch.from_numpy(np.asarray(self._datasets["maps_values"][lo:hi])).float().numpy()
        out.reshape(c, h * w)[:, support] = parts.view(np.complex64)[..., 0].T
        return out

    def dense(self) -> dict[str, np.ndarray]:
        """Every per-slice dataset of the volume as version 1 stores it (for conversion and checks)."""
        f, n = self.file, int(self.file["scale"].shape[0])
        out = {k: np.asarray(f[k][()]) for k in DENSE_DTYPES if k in f and k not in ("y", "maps")}
        out["y"] = np.stack([self.scaled_y(s, out["mask"][s], 1.0) for s in range(n)]) if n else np.zeros(0)
        if self.has_maps:
            out["maps"] = np.stack([self.maps(s) for s in range(n)])
        return out

    def close(self) -> None:
        self.file.close()


__all__ = ["DENSE_DTYPES", "FORMAT_VERSIONS", "MAPS_DTYPE", "VolumeReader", "volume_version", "write_volume"]
