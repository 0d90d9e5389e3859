"""Batches, the deterministic step-indexed sampler, and the clean-reference dataset of the oracle.

The ambient training batch is a collated :class:`~ambientmri.data.store.AmbientSample`: it has no
field for a clean image. The clean oracle's batch, :class:`CleanBatch`, is a different type read
through the evaluation API (:func:`~ambientmri.data.references.clean_reference`), and only the
``clean`` objective ever builds one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

from ambientmri.data.batch import collate, to_device  # re-exported: their old home
from ambientmri.data.store import AmbientSample, CorruptedStore
from ambientmri.utils import stable_seed

__all__ = ["AmbientBatch", "CleanBatch", "CleanReferences", "StepBatchSampler", "collate", "to_device"]

AmbientBatch = AmbientSample
"""A collated batch of store samples (every field gains a leading batch axis)."""


class CleanBatch(NamedTuple):
    """A batch of clean reference images (oracle training only)."""

    x0: torch.Tensor
    index: torch.Tensor


class CleanReferences(torch.utils.data.Dataset):
    """Clean images ``x0 / scale`` of a store's slices, read from the store's source files.

    For the ``clean`` oracle objective only (synthetic data, fully sampled sources).
    """

    def __init__(self, store: CorruptedStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> CleanBatch:
        from ambientmri.data.references import clean_reference

        x0 = torch.from_numpy(clean_reference(self.store, int(index)))
        return CleanBatch(x0=x0, index=torch.tensor(int(index)))


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Index lists for steps ``start, start+1, …, stop-1`` of one process, a pure function of the step.

    The global sample stream is the concatenation of per-epoch permutations of ``range(n)`` (each
    seeded by ``(seed, epoch)``); global step ``s`` takes stream positions ``[s·B, (s+1)·B)`` and
    process ``rank`` of ``world`` takes every ``world``-th of them. Resuming at step ``k`` therefore
    needs no sampler state, and a run split over K processes sees exactly the samples of a
    single-process run.
    """

    def __init__(self, n: int, global_batch: int, *, world: int = 1, rank: int = 0, seed: int = 0,
                 start: int = 0, stop: int) -> None:
        if n < 1:
            raise ValueError("the training set is empty")
        if global_batch % world:
            raise ValueError(f"training.batch_size={global_batch} must be a multiple of the {world} processes")
        self.n, self.batch, self.world, self.rank = n, global_batch, world, rank
        self.seed, self.start, self.stop = seed, start, stop
        self._perm: dict[int, torch.Tensor] = {}

    def _epoch(self, e: int) -> torch.Tensor:
        perm = self._perm.get(e)
        if perm is None:
            g = torch.Generator().manual_seed(stable_seed("epoch", self.seed, e))
            perm = torch.randperm(self.n, generator=g)
            self._perm = {e: perm}  # keep one epoch cached
        return perm

    def step_indices(self, step: int) -> list[int]:
        """The global batch of ``step`` (all processes)."""
        out = []
        for pos in range(step * self.batch, (step + 1) * self.batch):
            out.append(int(self._epoch(pos // self.n)[pos % self.n]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield self.step_indices(step)[self.rank :: self.world]

    def __len__(self) -> int:
        return max(0, self.stop - self.start)
