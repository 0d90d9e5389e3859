"""Two-stage nearest-neighbour search: a matrix-product candidate search, then the exact score.

The exact audit scores cost one FFT product (image space) or one operator application per coil
(measurement space) for every (query, reference) pair. :func:`candidate_topk` first ranks every pair
with a cheap *candidate score*, a matrix product of small embeddings, keeps the ``candidates`` best
references per query, and computes the exact score on those only:

- **image space** (:func:`~ambientmri.audit.similarity.ncc_max`, magnitude NCC maximised over
  circular shifts and left-right flips): every magnitude image is rolled to a canonical position
  (its circular centroid, from the phase of its first Fourier harmonics along each axis), which is
  exactly equivariant to integer circular shifts: a shifted copy lands on the same pixels as its
  original. The canonical image, mean removed, area-pooled to at most ``embed_size`` pixels a side
  and normalised, is the embedding; the candidate score is the best inner product over the query
  and its flip (each canonicalised on its own) and a few low-resolution shifts around the
  canonical position (near-copies whose centroids differ by a pixel or two).
- **measurement space** (:func:`~ambientmri.audit.similarity.measurement_similarity`,
  ``|⟨A_i g, y_i⟩| / (‖A_i g‖ ‖y_i‖)``): the numerator is ``|⟨g, A_iᴴ y_i⟩|``, an inner product
  with the slice's zero-filled image ``z_i = A_iᴴ y_i``, so all numerators are one complex matrix
  product (computed on the central ``embed_size × embed_size`` frequencies of ``g`` and ``z_i`` on
  larger grids, by Parseval). ``‖y_i‖`` is stored. Only ``‖A_i g‖`` depends on the pair through the
  operator; it is estimated by the energy of ``g`` where slice ``i`` measures (``⟨|T g|², M_i⟩``,
  exact for pixel masks and single-coil k-space, ``T`` the shared transform), times the fraction of
  ``g``'s energy inside the slice's coil sensitivity ``Σ_c |S_{i,c}|²`` for multi-coil stores, and
  ``‖g‖² · |M_i| / m`` for the Gaussian sensing matrix.

The result keeps the exhaustive search's contract (scores best first, ties to the lower index, the
same exact score for every pair it reports); it differs only where the true top-k is not among the
candidates. With at least as many candidates as references it *is* the exhaustive search. Its
recall against the exhaustive search is measured by ``benchmarks/audit.py --search`` (docs/audit.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ambientmri.audit.similarity import as_images, measurement_similarity, ncc_max
from ambientmri.operators.fft import fft2c

__all__ = [
    "DEFAULT_CANDIDATES",
    "MeasurementEmbedding",
    "candidate_topk",
    "canonical_roll",
    "image_embedding",
    "measurement_embedding",
]

#: Candidates per query scored exactly in the second stage.
DEFAULT_CANDIDATES = 64
#: The embeddings' side length (pixels of the pooled image, or central frequencies).
DEFAULT_EMBED = 64
_SHIFT_WINDOW = 1  # low-resolution shifts tried around the canonical position, each way
_EPS = 1e-12  # norms below this count as zero (as in ambientmri.audit.similarity)


# ----------------------------------------------------------------------------------------------
# image space
# ----------------------------------------------------------------------------------------------
def _centroid_shift(m: torch.Tensor, axis: int) -> torch.Tensor:
    """Integer circular centroid of non-negative images ``(N, H, W)`` along ``axis`` (-2 or -1)."""
    n = m.shape[axis]
    profile = m.sum(dim=-1 if axis == -2 else -2).to(torch.float64)  # (N, n)
    k = torch.arange(n, dtype=torch.float64, device=m.device)
    phasor = (profile * torch.exp(-2j * torch.pi * k / n)).sum(dim=-1)
    pos = -torch.angle(phasor) * n / (2 * torch.pi)
    return torch.round(pos).to(torch.long) % n


def canonical_roll(x: torch.Tensor) -> torch.Tensor:
    """Roll each image of ``(N, H, W)`` so that its magnitude's circular centroid is at pixel (0, 0).

    For an integer circular shift ``s``, ``canonical_roll(roll(x, s)) == canonical_roll(x)``
    exactly (the centroid's phase moves by exactly ``2πs/n``). Images whose first harmonic
    vanishes (e.g. constant) keep some fixed position.
    """
    if x.shape[0] == 0:
        return x
    m = x.abs()
    dy, dx = _centroid_shift(m, -2), _centroid_shift(m, -1)
    h, w = x.shape[-2:]
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None]) % h  # (N, H)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None]) % w  # (N, W)
    out = torch.take_along_dim(x, rows[:, :, None].expand(-1, -1, w), dim=-2)
    return torch.take_along_dim(out, cols[:, None, :].expand(-1, h, -1), dim=-1)


def _pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-pool ``(N, H, W)`` (real or complex) to at most ``size`` pixels a side (mean per cell)."""
    h, w = x.shape[-2:]
    out = (min(h, size), min(w, size))
    if out == (h, w):
        return x
    if x.is_complex():
        return torch.complex(_pool(x.real, size), _pool(x.imag, size))
    return F.adaptive_avg_pool2d(x.unsqueeze(1), out).squeeze(1)


def _unit_rows(e: torch.Tensor) -> torch.Tensor:
    flat = e.reshape(e.shape[0], -1)
    norm = torch.linalg.vector_norm(flat, dim=-1, keepdim=True)
    return flat / torch.where(norm > _EPS, norm, torch.ones_like(norm))


def image_embedding(
    x: Any, *, size: int = DEFAULT_EMBED, shifts: bool = True, complex_phase: bool = False
) -> torch.Tensor:
    """``(N, D)`` unit-norm embeddings of images for the image-space candidate score.

    Magnitude images (``complex_phase=False``) as :func:`~ambientmri.audit.similarity.ncc_max` sees
    them (``|x|`` minus its mean); complex images as they are. With ``shifts`` each image is first
    rolled to its canonical position (:func:`canonical_roll`). Then area-pooled to at most ``size``
    pixels a side (D ≤ ``size²``) and normalised; the embedding of a zero image is zero.
    """
    t = as_images(x)
    if complex_phase:
        t = t.to(torch.complex64)
    else:
        t = (t.abs() if t.is_complex() else t).to(torch.float32)
    if shifts:
        t = canonical_roll(t)
    if not complex_phase:
        t = t - t.mean(dim=(-2, -1), keepdim=True)
    h, w = t.shape[-2:]
    return _unit_rows(_pool(t, size)).reshape(t.shape[0], min(h, size), min(w, size))


def _shifted_variants(e: torch.Tensor, window: int) -> list[torch.Tensor]:
    """The query embeddings ``(Q, h, w)`` circularly rolled by every offset within ``window``."""
    return [torch.roll(e, (dy, dx), dims=(-2, -1)) for dy in range(-window, window + 1)
            for dx in range(-window, window + 1)]


def _image_candidate_fn(
    q: torch.Tensor, r: torch.Tensor, *, size: int, shifts: bool, complex_phase: bool, flips: bool,
    cache: dict[tuple[int, int], torch.Tensor] | None = None,
) -> tuple[Any, Any]:
    """``(score(r0, r1) -> (Q, r1 − r0), None)`` for the image space; reference embeddings go to ``cache``."""
    variants = [q, torch.flip(q, dims=(-1,))] if flips else [q]
    embedded = [image_embedding(v, size=size, shifts=shifts, complex_phase=complex_phase) for v in variants]
    window = _SHIFT_WINDOW if shifts else 0
    rows = [s.reshape(s.shape[0], -1) for e in embedded for s in _shifted_variants(e, window)]
    query_rows = torch.stack(rows)  # (V, Q, D)

    def score(r0: int, r1: int) -> torch.Tensor:
        ref = cache.get((r0, r1)) if cache is not None else None
        if ref is None:
            ref = image_embedding(r[r0:r1], size=size, shifts=shifts, complex_phase=complex_phase)
            ref = ref.reshape(ref.shape[0], -1)
            if cache is not None:
                cache[(r0, r1)] = ref
        prod = query_rows @ (ref.conj().T if ref.is_complex() else ref.T)  # (V, Q, chunk)
        return (prod.abs() if prod.is_complex() else prod).amax(dim=0)

    return score, None


# ----------------------------------------------------------------------------------------------
# measurement space
# ----------------------------------------------------------------------------------------------
@dataclass
class MeasurementEmbedding:
    """The store side of the measurement-space candidate score, one row per searched slice.

    Attributes:
        z: ``(R, D)`` complex zero-filled images ``A_iᴴ y_i`` (their central frequencies on grids
            larger than the embedding).
        y_norm: ``(R,)`` ``‖y_i‖``.
        energy: ``(R, P)`` the mask ``M_i`` on the energy cells (see :func:`measurement_embedding`).
        coil_weight: ``(R, P2)`` pooled ``Σ_c |S_{i,c}|²`` (multi-coil), or None.
        domain: ``"image"``, ``"kspace"`` or ``"matrix"`` (where the mask lives).
        cells: how query energies are pooled to match ``energy``: ``(rows, cols)`` of the grid.
        kspace_crop: the central frequencies ``(h, w)`` of the numerator, or None (pixels).
    """

    z: torch.Tensor
    y_norm: torch.Tensor
    energy: torch.Tensor
    coil_weight: torch.Tensor | None
    domain: str
    cells: tuple[int, int]
    kspace_crop: tuple[int, int] | None


def _center_crop2(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - shape[0]) // 2, (w - shape[1]) // 2
    return x[..., top : top + shape[0], left : left + shape[1]]


def _numerator_rows(x: torch.Tensor, crop: tuple[int, int] | None) -> torch.Tensor:
    """``(N, H, W)`` complex images as numerator rows (pixels, or central orthonormal frequencies)."""
    if crop is not None:
        x = _center_crop2(fft2c(x), crop)
    return x.reshape(x.shape[0], -1)


def _energy_cells(grid: tuple[int, int], mask_rows: int, size: int) -> tuple[int, int]:
    """Cells of the energy embedding: one row for column masks, else at most ``size`` a side."""
    h, w = grid
    return (1 if mask_rows == 1 else min(h, size), w if mask_rows == 1 and w <= 4 * size else min(w, size))


def _pool_sum(e: torch.Tensor, cells: tuple[int, int]) -> torch.Tensor:
    """Pool a non-negative ``(N, H, W)`` energy map to ``cells`` keeping its sum per cell."""
    h, w = e.shape[-2:]
    pooled = F.adaptive_avg_pool2d(e.unsqueeze(1).to(torch.float32), cells).squeeze(1)
    return pooled * (h * w / (cells[0] * cells[1]))


def measurement_embedding(
    store: Any,
    indices: Sequence[int],
    *,
    size: int = DEFAULT_EMBED,
    batch: int = 64,
    device: torch.device | str | None = None,
) -> MeasurementEmbedding:
    """Read every searched slice once and build the store side of the candidate score.

    Args:
        store: a corrupted store (or an object with its ``__getitem__``, ``operator`` and ``grid``).
        indices: the slices to embed.
        size: numerator frequencies and energy cells per side (grids up to ``size × size`` are
            embedded exactly).
        batch: slices per operator application.
        device: where to keep the embedding.
    """
    from ambientmri.data.batch import collate, to_device

    grid = tuple(int(n) for n in store.grid)
    crop = None if grid[0] * grid[1] <= size * size else (min(grid[0], size), min(grid[1], size))
    domain = getattr(store.corruption, "domain", "matrix")
    if domain not in ("image", "kspace"):
        domain = "matrix"
    dev = torch.device(device) if device is not None else torch.device("cpu")
    zs, norms, energies, weights = [], [], [], []
    cells: tuple[int, int] | None = None
    for start in range(0, len(indices), max(1, int(batch))):
        chunk = [int(i) for i in indices[start : start + max(1, int(batch))]]
        samples = to_device(collate([store[i] for i in chunk]), dev)
        op = store.operator(samples)
        y = samples.y
        b = y.shape[0]
        zs.append(_numerator_rows(op.adjoint(y).reshape(b, *grid).to(torch.complex64), crop))
        norms.append(torch.linalg.vector_norm(y.reshape(b, -1), dim=-1).to(torch.float32))
        mask = samples.mask.to(torch.float32)
        if domain == "matrix":
            energies.append(mask.reshape(b, -1).mean(dim=-1, keepdim=True))
        else:
            m = mask.reshape(b, *mask.shape[-2:])
            cells = cells or _energy_cells(grid, m.shape[-2], size)
            full = torch.broadcast_to(m, (b, *grid))
            energies.append(F.adaptive_avg_pool2d(full.unsqueeze(1), cells).squeeze(1).reshape(b, -1))
        if samples.maps.numel():
            w = (samples.maps.abs() ** 2).sum(dim=-3).to(torch.float32)  # (B, H, W)
            weights.append(_pool(w, size // 2).reshape(b, -1))
    z = torch.cat(zs) if zs else torch.zeros((0, 0), dtype=torch.complex64)
    return MeasurementEmbedding(
        z=z,
        y_norm=torch.cat(norms) if norms else torch.zeros(0),
        energy=torch.cat(energies) if energies else torch.zeros((0, 1)),
        coil_weight=torch.cat(weights) if weights else None,
        domain=domain,
        cells=cells or (1, 1),
        kspace_crop=crop,
    )


def _query_measurement_rows(g: torch.Tensor, emb: MeasurementEmbedding, size: int) -> tuple[torch.Tensor, ...]:
    """Numerator rows, energy rows, coil-weight rows and ``‖g‖²`` of queries ``(Q, H, W)``."""
    g = g.to(torch.complex64)
    num = _numerator_rows(g, emb.kspace_crop)
    power = g.abs() ** 2
    total = power.sum(dim=(-2, -1))
    if emb.domain == "matrix":
        energy = total[:, None]
    else:
        e = power if emb.domain == "image" else fft2c(g).abs() ** 2
        energy = _pool_sum(e, emb.cells).reshape(g.shape[0], -1)
    h, w = g.shape[-2:]
    weight = _pool_sum(power, (min(h, size // 2), min(w, size // 2))).reshape(g.shape[0], -1)
    return num, energy, weight, total


def _measurement_candidate_fn(
    g: torch.Tensor, store: Any, ref_ids: list[int], *, size: int, flips: bool, device: torch.device,
    emb: MeasurementEmbedding | None = None,
) -> tuple[Any, MeasurementEmbedding]:
    """``(score(r0, r1) -> (Q, r1 − r0), the store's embedding)`` (read from the store unless given)."""
    if emb is None:
        emb = measurement_embedding(store, ref_ids, size=size, device=device)
    variants = [g, torch.flip(g, dims=(-1,))] if flips else [g]
    rows = [_query_measurement_rows(v.to(device), emb, size) for v in variants]

    def score(r0: int, r1: int) -> torch.Tensor:
        best = None
        for num, energy, weight, total in rows:
            inner = (num @ emb.z[r0:r1].conj().T).abs()  # (Q, chunk)
            den2 = energy @ emb.energy[r0:r1].T
            if emb.coil_weight is not None:
                den2 = den2 * (weight @ emb.coil_weight[r0:r1].T) / torch.clamp(total[:, None], min=_EPS)
            den = torch.sqrt(torch.clamp(den2, min=0.0)) * emb.y_norm[None, r0:r1]
            s = torch.where(den > _EPS, inner / torch.where(den > _EPS, den, 1.0), 0.0)
            best = s if best is None else torch.maximum(best, s)
        assert best is not None
        return best

    return score, emb


# ----------------------------------------------------------------------------------------------
# the two-stage search
# ----------------------------------------------------------------------------------------------
def _stage_one(
    score: Any, nq: int, n_ref: int, c: int, chunk: int,
    qg: torch.Tensor | None, rg: torch.Tensor | None,
) -> torch.Tensor:
    """``(Q, c)`` positions (into the searched references) of the best candidate scores; −1 pads."""
    best_s = torch.full((nq, 0), -torch.inf)
    best_i = torch.full((nq, 0), -1, dtype=torch.long)
    for r0 in range(0, n_ref, chunk):
        r1 = min(r0 + chunk, n_ref)
        s = score(r0, r1).to("cpu", torch.float32)
        if qg is not None and rg is not None:
            s = s.masked_fill(qg[:, None] == rg[None, r0:r1], -torch.inf)
        s = torch.cat([best_s, s], dim=1)
        i = torch.cat([best_i, torch.arange(r0, r1).expand(nq, -1)], dim=1)
        top = torch.topk(s, min(c, s.shape[1]), dim=1)
        best_s, best_i = top.values, i.gather(1, top.indices)
    return torch.where(torch.isfinite(best_s), best_i, torch.full_like(best_i, -1))


def candidate_topk(
    queries: torch.Tensor,
    references: Any,
    k: int,
    *,
    candidates: int = DEFAULT_CANDIDATES,
    embed_size: int = DEFAULT_EMBED,
    measurement: bool = False,
    ref_ids: list[int] | None = None,
    similarity: str = "ncc",
    flips: bool = True,
    shifts: bool = True,
    qg: torch.Tensor | None = None,
    rg: torch.Tensor | None = None,
    chunk: int = 2048,
    query_block: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k by the candidate score's best ``candidates`` references, re-scored exactly.

    Called by :func:`~ambientmri.audit.search.topk_neighbours` with ``method="candidates"`` (which
    validates the arguments and turns groups into ids); returns ``(Q, k)`` scores and positions
    into the searched references (−1 where fewer than ``k`` were allowed), best first. Memory: the
    store's embedding (``R`` rows of at most ``embed_size²`` complex numbers, read once) or the
    references' embeddings (kept when they take at most 512 MB), plus blocks of ``query_block``
    queries × ``chunk`` references.
    """
    nq = queries.shape[0]
    n_ref = len(ref_ids) if measurement and ref_ids is not None else (0 if measurement else references.shape[0])
    c = max(int(candidates), k)
    pixels = int(queries.shape[-2]) * int(queries.shape[-1])
    chunk = max(64, min(int(chunk), (1 << 23) // max(1, pixels)))  # references embedded at once: ~32 MB each
    emb = None
    if measurement and nq and n_ref:
        assert ref_ids is not None
        emb = measurement_embedding(references, ref_ids, size=embed_size, device=queries.device)
    cache: dict[tuple[int, int], torch.Tensor] | None = {} if n_ref * min(pixels, embed_size**2) <= 1 << 27 else None
    blocks = []
    for q0 in range(0, nq if n_ref else 0, query_block):
        q1 = min(q0 + query_block, nq)
        if measurement:
            score, _ = _measurement_candidate_fn(queries[q0:q1], references, ref_ids or [], size=embed_size,
                                                 flips=flips, device=queries.device, emb=emb)
        else:
            score, _ = _image_candidate_fn(queries[q0:q1], references, size=embed_size, shifts=shifts,
                                           complex_phase=similarity == "complex", flips=flips, cache=cache)
        blocks.append(_stage_one(score, q1 - q0, n_ref, c, chunk, None if qg is None else qg[q0:q1], rg))
    cand = torch.cat(blocks) if blocks else torch.full((nq, 0), -1, dtype=torch.long)
    exact = torch.full(cand.shape, -torch.inf, dtype=torch.float64)
    if measurement:
        _exact_measurement(queries, references, ref_ids or [], cand, exact, flips)
    else:
        for j in range(nq):
            ok = cand[j] >= 0
            if ok.any():
                res = ncc_max(queries[j : j + 1], references[cand[j][ok]], flips=flips,
                              complex_phase=similarity == "complex", shifts=shifts)
                exact[j, ok] = res.scores[0].to("cpu", torch.float64)
    return _final_topk(exact, cand, k)


def _exact_measurement(
    g: torch.Tensor, store: Any, ref_ids: list[int], cand: torch.Tensor, exact: torch.Tensor, flips: bool
) -> None:
    """Fill ``exact`` with measurement similarities of every (query, candidate) pair, one slice at a time."""
    rows, cols = torch.nonzero(cand >= 0, as_tuple=True)
    if rows.numel() == 0:
        return
    pos = cand[rows, cols]
    order = torch.argsort(pos, stable=True)
    rows, cols, pos = rows[order], cols[order], pos[order]
    uniq, counts = torch.unique_consecutive(pos, return_counts=True)
    start = 0
    for p, n in zip(uniq.tolist(), counts.tolist(), strict=True):
        qs, cs = rows[start : start + n], cols[start : start + n]
        s = measurement_similarity(g[qs], store, [ref_ids[p]], flips=flips, batch=1)
        exact[qs, cs] = s[:, 0].to("cpu", torch.float64)
        start += n


def _final_topk(exact: torch.Tensor, cand: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``k`` of the exactly scored candidates; ties to the lower reference position."""
    nq = exact.shape[0]
    if cand.shape[1] == 0:
        return torch.full((nq, k), -torch.inf, dtype=torch.float64), torch.full((nq, k), -1, dtype=torch.long)
    key = torch.where(cand >= 0, cand, torch.full_like(cand, torch.iinfo(torch.long).max))
    order = torch.argsort(key, dim=1, stable=True)
    s, i = exact.gather(1, order), cand.gather(1, order)
    order = torch.argsort(s, dim=1, descending=True, stable=True)[:, :k]
    s, i = s.gather(1, order), i.gather(1, order)
    if s.shape[1] < k:
        pad = k - s.shape[1]
        s = torch.cat([s, torch.full((nq, pad), -torch.inf, dtype=s.dtype)], dim=1)
        i = torch.cat([i, torch.full((nq, pad), -1, dtype=i.dtype)], dim=1)
    i = torch.where(torch.isfinite(s), i, torch.full_like(i, -1))
    return s, i
