"""Clean references for evaluation: a separate API that training code never calls.

A corrupted store holds no clean image. Where a clean reference exists (synthetic data, held-out
fully sampled scans), evaluation reads it here, from the *source* files the store records, processed
exactly as ``prepare`` processed them (crop, coil combination) and divided by the slice's scale so
it is in the units of the stored measurements.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ambientmri.data.coils import coil_combine, compress_coils
from ambientmri.data.sources import open_source
from ambientmri.data.store import CorruptedStore, source_image
from ambientmri.errors import InputError
from ambientmri.operators.fft import crop_kspace, ifft2c_np
from ambientmri.recipes import Recipe


def clean_reference(store: CorruptedStore, index: int, *, source_root: str | Path | None = None) -> np.ndarray:
    """The clean complex image ``x0 / scale`` of store slice ``index``, shape ``(H, W)`` complex64.

    For multi-coil k-space corruptions ``x0 = Σ_c conj(S_c) F⁻¹ k_c`` with the store's own coil
    maps, the image that ``A = M F S`` models; for image-domain corruptions the image ``prepare``
    masked.

    Args:
        store: the corrupted store.
        index: slice index in the store.
        source_root: where the source files are (default: the folder ``prepare`` read).

    Raises:
        InputError: the source file is gone or holds only undersampled k-space.
    """
    prov = store.provenance(index)
    if source_root is not None:
        root = Path(source_root)
    else:
        relative = store.path / store.manifest.get("source_root_relative", "\0")
        root = relative if relative.exists() else Path(store.manifest["source_root"])
    path = root / prov["source"] if root.is_dir() else root
    kind = store.manifest["recipe"]["data"]["kind"]
    if not path.exists():
        raise InputError(path, "source file of the store is not available for a clean reference")
    vol = open_source(path, "fastmri" if kind == "synthetic" else kind)
    if vol.mask is not None:
        raise InputError(path, "holds undersampled k-space only; there is no clean reference")
    grid = store.grid
    k = vol.kspace(prov["slice"])
    if k.shape[-2:] != tuple(grid):
        k = crop_kspace(k, grid)
    sample = store[index]
    if store.corruption.domain == "kspace":
        if vol.coils > 1:
            compression = store.coil_compression(index)
            if compression is not None:
                k = compress_coils(k, compression)
            maps = sample.maps.numpy()
            x0 = coil_combine(maps, k)
        else:
            x0 = ifft2c_np(k)[0]
    else:
        recipe = Recipe.model_validate(store.manifest["recipe"])
        x0 = source_image(vol, prov["slice"], k, recipe)
    return (x0 / np.float32(sample.scale)).astype(np.complex64)
