"""Batches of store samples: collate (padding coil counts) and move to a device.

Used by training, sampling, reconstruction and the audit alike, so it lives with the store.
"""

from __future__ import annotations

from typing import Any

import torch

from ambientmri.data.store import AmbientSample

__all__ = ["collate", "to_device"]


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor field of a NamedTuple batch to ``device``."""
    non_blocking = device.type == "cuda"
    return type(batch)(
        *(f.to(device, non_blocking=non_blocking) if isinstance(f, torch.Tensor) else f for f in batch)
    )


def _pad_coils(t: torch.Tensor, coils: int) -> torch.Tensor:
    if t.ndim < 3 or t.shape[-3] == coils:
        return t
    pad = torch.zeros((coils - t.shape[-3], *t.shape[-2:]), dtype=t.dtype)
    return torch.cat([t, pad], dim=-3)


def _batch_view(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    """The batch tensor whose consecutive rows ``tensors`` are (as
    :meth:`~ambientmri.data.store.CorruptedStore.__getitems__` returns them), or None."""
    first = tensors[0]
    storage = first.untyped_storage()
    n = first.numel()
    if first.storage_offset() != 0 or storage.nbytes() != len(tensors) * n * first.element_size():
        return None
    for j, t in enumerate(tensors):
        if (t.untyped_storage().data_ptr() != storage.data_ptr() or t.storage_offset() != j * n
                or t.shape != first.shape or not t.is_contiguous()):
            return None
    return torch.empty(0, dtype=first.dtype).set_(storage, 0, (len(tensors), *first.shape))


def collate(samples: list[Any]) -> Any:
    """Collate store samples (or clean batches) into one batch.

    Multi-coil slices with different coil counts (fastMRI brain volumes have 4 to 20+ coils) are
    padded with zero coils: a zero coil map and zero measurements add nothing to ``A x``, ``Aᴴ y``
    or the loss, so the padded batch computes exactly what the slices would one by one. Samples
    that are consecutive rows of one batch buffer (a store's ``__getitems__``) are taken as that
    buffer, without a copy.
    """
    if isinstance(samples[0], AmbientSample):
        big = {}
        for field in ("y", "maps"):
            tensors = [getattr(s, field) for s in samples]
            if tensors[0].numel() and (view := _batch_view(tensors)) is not None:
                big[field] = view
        if big:
            rest = torch.utils.data.default_collate([s._replace(**dict.fromkeys(big, torch.zeros(0))) for s in samples])
            return rest._replace(**big)
        if samples[0].maps.numel():
            coils = max(s.maps.shape[-3] for s in samples)
            samples = [s._replace(y=_pad_coils(s.y, coils), maps=_pad_coils(s.maps, coils)) for s in samples]
    return torch.utils.data.default_collate(samples)
