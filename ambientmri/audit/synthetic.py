"""Synthetic training sets for measuring the audit's search: phantoms, an in-memory store, near-copies.

Used by ``benchmarks/audit.py --search`` and the search tests. :class:`MemoryStore` behaves like a
:class:`~ambientmri.data.store.CorruptedStore` for the audit (``len``, items, ``operator``,
``grid``, ``corruption``, ``subjects``) but holds phantom images and computes each slice's
measurements ``y = A x`` when the slice is read, so that 10⁴ multi-coil slices fit in memory and
need no ``prepare`` (which runs at a few slices per second on a CPU, mostly ESPIRiT). Coil maps are
the synthetic birdcage maps of :func:`ambientmri.data.synth.coil_maps` (one set per subject), not
ESPIRiT estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ambientmri.data.store import AmbientSample
from ambientmri.data.synth import coil_maps, draw_subject, render
from ambientmri.operators.corruptions import Corruption
from ambientmri.operators.linear import MaskedOperator

__all__ = ["MemoryStore", "near_copies", "phantom_slices"]


def phantom_slices(
    subjects: int, slices: int, shape: tuple[int, int], seed: int, anatomy: str = "brain"
) -> tuple[np.ndarray, list[str]]:
    """``(subjects · slices, H, W)`` complex64 phantom slices and one subject label per slice."""
    rng = np.random.default_rng(seed)
    images = np.empty((subjects * slices, *shape), np.complex64)
    labels: list[str] = []
    for s in range(subjects):
        sub = draw_subject(anatomy, rng)
        for j, z in enumerate(sub.slice_positions(slices)):
            images[s * slices + j] = render(sub, shape, float(z), fov=shape)[0]
        labels += [f"sub-{seed}-{s}"] * slices
    return images, labels


def near_copies(
    images: np.ndarray, n: int, seed: int, *, max_shift: int = 4, noise: float = 0.02, shift: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` near-copies of random ``images``: circularly shifted (up to ``max_shift`` px, if ``shift``),
    flipped left-right with probability 1/2, with complex Gaussian noise of ``noise`` times the RMS.

    Returns:
        ``(copies, sources)``: ``(n, H, W)`` complex64 and the ``(n,)`` index of each one's original.
    """
    rng = np.random.default_rng(seed)
    src = rng.choice(images.shape[0], size=n, replace=n > images.shape[0])
    out = np.empty((n, *images.shape[1:]), np.complex64)
    for j, i in enumerate(src):
        x = images[i]
        if shift:
            x = np.roll(x, tuple(rng.integers(-max_shift, max_shift + 1, size=2)), axis=(-2, -1))
        if rng.random() < 0.5:
            x = x[..., ::-1]
        rms = float(np.sqrt((np.abs(x) ** 2).mean()))
        x = x + noise * rms * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)) / np.sqrt(2)
        out[j] = x
    return out, src


class MemoryStore:
    """Phantom slices behind a corruption, read like a corrupted store (measurements made on reading).

    Args:
        images: ``(R, H, W)`` complex clean slices (they never leave this object except as ``y``).
        corruption: the corruption family (pixel, block, Cartesian or 2-D k-space).
        subjects: one label per slice.
        coils: coil count for k-space corruptions (0: single coil). Each subject gets its own maps.
        seed: seed of the masks (slice ``i`` draws ``(seed, i)``).
    """

    def __init__(
        self,
        images: np.ndarray,
        corruption: Corruption,
        subjects: Sequence[str],
        *,
        coils: int = 0,
        seed: int = 0,
    ) -> None:
        if corruption.domain not in ("image", "kspace"):
            raise ValueError(f"MemoryStore supports image and k-space corruptions, not {corruption.kind}")
        self.images = torch.from_numpy(np.ascontiguousarray(images, np.complex64))
        self.corruption = corruption
        self._subjects = [str(s) for s in subjects]
        self.grid = tuple(int(n) for n in self.images.shape[-2:])
        self.masks = [torch.from_numpy(corruption.sample_mask(self.grid, (seed, i)).astype(np.float32))
                      for i in range(len(self._subjects))]
        names = sorted(set(self._subjects))
        self._map_of = {s: j for j, s in enumerate(names)}
        self.maps = None
        if coils and corruption.domain == "kspace":
            rng = np.random.default_rng(seed)
            self.maps = torch.from_numpy(np.stack([
                coil_maps(coils, self.grid, fov=self.grid, rotation=float(rng.uniform(0, 2 * np.pi)))
                for _ in names]))

    def __len__(self) -> int:
        return self.images.shape[0]

    def subjects(self) -> list[str]:
        return list(self._subjects)

    def __getitem__(self, index: int) -> AmbientSample:
        i = int(index) % len(self)
        maps = self.maps[self._map_of[self._subjects[i]]] if self.maps is not None else torch.zeros(0)
        mask = self.masks[i]
        op = self.corruption.operator(mask, self.grid, maps=maps if maps.numel() else None)
        y = op.forward(self.images[i])
        return AmbientSample(y=y, mask=mask, further_mask=mask, maps=maps, matrix_seed=-1, scale=1.0, index=i)

    def operator(self, sample: AmbientSample, *, further: bool = False) -> MaskedOperator:
        """``A`` of a sample or a collated batch (as :meth:`CorruptedStore.operator`)."""
        maps = sample.maps if sample.maps.numel() else None
        return self.corruption.operator(sample.further_mask if further else sample.mask, self.grid, maps=maps)

    def close(self) -> None:  # the store interface
        return None

    def __getattr__(self, name: str) -> Any:  # pragma: no cover - a clear error for store-only features
        raise AttributeError(f"MemoryStore has no {name!r} (it is not a store on disk)")
