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


def collate(samples: list[Any]) -> Any:
    """Collate store samples (or clean batches) into one batch.

    Multi-coil slices with different coil counts (fastMRI brain volumes have 4 to 20+ coils) are
    padded with zero coils: a zero coil map and zero measurements add nothing to ``A x``, ``Aᴴ y``
    or the loss, so the padded batch computes exactly what the slices would one by one.
    """
    if isinstance(samples[0], AmbientSample) and samples[0].maps.numel():
        coils = max(s.maps.shape[-3] for s in samples)
        samples = [s._replace(y=_pad_coils(s.y, coils), maps=_pad_coils(s.maps, coils)) for s in samples]
    return torch.utils.data.default_collate(samples)
