"""Chunked top-k nearest-neighbour search for the memorization audit.

:func:`topk_neighbours` scores every query against every reference with
:func:`~ambientmri.audit.similarity.ncc_max` (clean reference images) or
:func:`~ambientmri.audit.similarity.measurement_similarity` (a corrupted store), one block of
``query_chunk × chunk`` pairs at a time, and keeps a running top-k per query. The result is exact
(the same as scoring all pairs at once) whatever the chunk sizes. With ``method="candidates"`` it
scores exactly only the best candidates of a matrix-product search
(:mod:`ambientmri.audit.candidates`), which is much faster for large sets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ambientmri.audit.similarity import as_images, measurement_similarity, ncc_max

__all__ = ["METHODS", "ProgressFn", "brute_force_topk", "group_ids", "is_measurement_set", "topk_neighbours"]

#: ``progress(pairs_done, pairs_total)`` after every block.
ProgressFn = Callable[[int, int], None]

SIMILARITIES = ("ncc", "complex")
#: ``topk_neighbours(method=...)``: score every pair, or only a candidate search's best candidates.
METHODS = ("exhaustive", "candidates")


def is_measurement_set(references: Any) -> bool:
    """Whether ``references`` is a corrupted store (or quacks like one: ``grid``, ``operator``, items)."""
    from ambientmri.data.store import CorruptedStore

    if isinstance(references, CorruptedStore):
        return True
    return all(hasattr(references, a) for a in ("grid", "operator", "corruption", "__getitem__", "__len__"))


def group_ids(labels: Sequence[Any]) -> torch.Tensor:
    """Integer ids ``(N,)`` for hashable labels (e.g. subject pseudonyms), equal labels equal ids."""
    table: dict[Any, int] = {}
    return torch.tensor([table.setdefault(lab, len(table)) for lab in labels], dtype=torch.long)


def _label(v: Any) -> Any:
    return v.item() if isinstance(v, torch.Tensor | np.generic) else v


def _merge(
    best_s: torch.Tensor, best_i: torch.Tensor, s: torch.Tensor, i: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of the union of two candidate sets; ties go to the lower reference index."""
    cs = torch.cat([best_s, s], dim=1)
    ci = torch.cat([best_i, i], dim=1)
    order = torch.argsort(ci, dim=1, stable=True)  # by index first ...
    cs, ci = cs.gather(1, order), ci.gather(1, order)
    order = torch.argsort(cs, dim=1, descending=True, stable=True)[:, :k]  # ... then by score
    return cs.gather(1, order), ci.gather(1, order)


def _group_ids(query_groups: Any, reference_groups: Any, nq: int, n_ref: int
               ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Integer ids of the query and reference labels (shared numbering), or ``(None, None)``."""
    if (query_groups is None) != (reference_groups is None):
        raise ValueError("pass both query_groups and reference_groups, or neither")
    if query_groups is None or reference_groups is None:
        return None, None
    qlab, rlab = list(query_groups), list(reference_groups)
    if len(qlab) != nq or len(rlab) != n_ref:
        raise ValueError(
            f"got {len(qlab)} query and {len(rlab)} reference groups for {nq} queries and {n_ref} references"
        )
    both = group_ids([*(_label(v) for v in qlab), *(_label(v) for v in rlab)])
    return both[:nq], both[nq:]


def topk_neighbours(
    queries: Any,
    references: Any,
    k: int = 5,
    *,
    chunk: int = 256,
    query_chunk: int = 64,
    similarity: str = "ncc",
    flips: bool = True,
    shifts: bool = True,
    query_groups: Sequence[Any] | torch.Tensor | None = None,
    reference_groups: Sequence[Any] | torch.Tensor | None = None,
    reference_indices: Sequence[int] | None = None,
    progress: ProgressFn | None = None,
    device: torch.device | str | None = None,
    method: str = "exhaustive",
    candidates: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k most similar references of every query, in bounded memory (exact by default).

    Memory bound: one block holds ``query_chunk · chunk · H · W`` complex64 correlation values
    (plus two temporaries of the same order), i.e. about ``24 · query_chunk · chunk · H · W``
    bytes; with the defaults (64 × 256) at 320 × 320 that is about 40 GB, at 64 × 64 about
    1.6 GB (reduce the chunks on a CPU). Against a store (``references`` a
    :class:`~ambientmri.data.store.CorruptedStore`) a block holds ``query_chunk · chunk`` operator
    outputs (one slice's measurements each) instead. The running top-k adds ``2 · Q · k`` numbers.

    Args:
        queries: ``(Q, H, W)`` images (e.g. generated samples), numpy or torch.
        references: ``(R, H, W)`` clean images, or a corrupted store (then the score is
            :func:`~ambientmri.audit.similarity.measurement_similarity`, flips optional, no shifts).
        k: neighbours per query (capped at the number of references).
        chunk: references per block (store slices per block for a store).
        query_chunk: queries per block.
        similarity: ``"ncc"`` (magnitude NCC, default) or ``"complex"`` (phase-invariant complex);
            ignored for a store.
        flips: also try left-right flips.
        shifts: search all circular shifts (images only).
        query_groups, reference_groups: optional labels (e.g. subject pseudonyms); a pair whose
            labels are equal is never a neighbour (score ``−inf``, index −1 if nothing else is left).
        reference_indices: for a store, the slices to search (default all); returned indices are
            store indices.
        progress: ``progress(pairs_done, pairs_total)`` after every block.
        device: where to compute (default: the queries' device; a CUDA device speeds this up a lot).
        method: ``"exhaustive"`` (default) scores every pair; ``"candidates"`` ranks every pair by
            a cheap matrix-product score and scores exactly only the best ``candidates`` per query
            (:func:`~ambientmri.audit.candidates.candidate_topk`; the chunk sizes and ``progress``
            apply to the exhaustive method only). With ``candidates`` at least the number of
            references both methods are the same search.
        candidates: references per query scored exactly by ``method="candidates"`` (at least ``k``).

    Returns:
        ``(scores, indices)``: ``(Q, k)`` float scores, best first, and ``(Q, k)`` int64 reference
        indices (ties: lower index first), on the CPU.

    Raises:
        ValueError: a bad ``k``, ``similarity``, ``method`` or chunk size, or groups of the wrong length.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if int(candidates) < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {', '.join(SIMILARITIES)}, got {similarity!r}")
    if int(k) < 1 or int(chunk) < 1 or int(query_chunk) < 1:
        raise ValueError(f"k, chunk and query_chunk must be >= 1, got {k}, {chunk}, {query_chunk}")
    q = as_images(queries, device=device)
    is_store = is_measurement_set(references)
    if is_store:
        ref_ids = list(range(len(references))) if reference_indices is None else [int(i) for i in reference_indices]
        ref_index = torch.tensor(ref_ids, dtype=torch.long)
        n_ref = len(ref_ids)
        r = None
    else:
        r = as_images(references, device=q.device)
        n_ref = r.shape[0]
        ref_index = torch.arange(n_ref)
        ref_ids = []
    nq = q.shape[0]
    k = min(int(k), n_ref)
    qg, rg = _group_ids(query_groups, reference_groups, nq, n_ref)
    if method == "candidates" and n_ref > max(int(candidates), k) and nq > 0:
        from ambientmri.audit.candidates import candidate_topk

        s, pos = candidate_topk(q, references if is_store else r, k, candidates=candidates, measurement=is_store,
                                ref_ids=ref_ids, similarity=similarity, flips=flips,
                                shifts=shifts, qg=qg, rg=rg)
        if progress is not None:
            progress(nq * n_ref, nq * n_ref)
        idx = torch.where(pos >= 0, ref_index[pos.clamp(min=0)], torch.full_like(pos, -1))
        return s, idx
    best_s = torch.full((nq, k), -torch.inf, dtype=torch.float64)
    best_i = torch.full((nq, k), -1, dtype=torch.long)
    total, done = nq * n_ref, 0
    for r0 in range(0, n_ref, int(chunk)):
        r1 = min(r0 + int(chunk), n_ref)
        for q0 in range(0, nq, int(query_chunk)):
            q1 = min(q0 + int(query_chunk), nq)
            if is_store:
                s = measurement_similarity(q[q0:q1], references, ref_ids[r0:r1], flips=flips, batch=r1 - r0)
            else:
                assert r is not None
                s = ncc_max(
                    q[q0:q1], r[r0:r1], flips=flips, complex_phase=similarity == "complex", shifts=shifts
                ).scores
            s = s.detach().to("cpu", torch.float64)
            if qg is not None and rg is not None:
                s = s.masked_fill(qg[q0:q1, None] == rg[None, r0:r1], -torch.inf)
            idx = ref_index[r0:r1].expand(q1 - q0, -1)
            best_s[q0:q1], best_i[q0:q1] = _merge(best_s[q0:q1], best_i[q0:q1], s, idx, k)
            done += (q1 - q0) * (r1 - r0)
            if progress is not None:
                progress(done, total)
    best_i = torch.where(torch.isfinite(best_s), best_i, torch.full_like(best_i, -1))
    return best_s, best_i


def brute_force_topk(scores: np.ndarray | torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of a full ``(Q, R)`` score matrix with the same tie rule (lower index first), for checks."""
    s = torch.as_tensor(np.asarray(scores) if not isinstance(scores, torch.Tensor) else scores).to(torch.float64)
    idx = torch.arange(s.shape[1]).expand_as(s)
    return _merge(s[:, :0], idx[:, :0], s, idx, min(k, s.shape[1]))
