"""Pixel-space similarities for the memorization audit (no pretrained weights needed).

- :func:`ncc_max`: normalised cross-correlation of every query with every reference, maximised over
  all integer circular shifts (one FFT product per pair) and over left-right flips. Two variants:

  * magnitude (default): ``|x|`` with its mean removed, ``NCC = ⟨q, r⟩ / (‖q‖ ‖r‖)`` in ``[−1, 1]``;
  * complex (``complex_phase=True``): ``|⟨q, r⟩| / (‖q‖ ‖r‖)`` in ``[0, 1]``, invariant to a global
    phase factor ``e^{iφ}`` of either image (no mean removal: the phase-invariant inner product).

- :func:`measurement_similarity`: similarity of generated images to the *corrupted* training set
  itself, ``|⟨A_i g, y_i⟩| / (‖A_i g‖ ‖y_i‖)`` on the measured entries of slice ``i``.
- :func:`relative_l2`: Carlini et al.'s ratio ``‖q − r_1‖ / (α · mean_{j ≤ n} ‖q − r_j‖)``.
- :func:`ssim_rerank`: SSIM of one query against its top candidates (a re-ranker, not a search).

Images are ``(N, H, W)`` numpy arrays or torch tensors, real or complex. Scores are torch tensors
on the inputs' device (the first argument's if it is a tensor, else the CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

if TYPE_CHECKING:
    from ambientmri.data.store import CorruptedStore

__all__ = [
    "NCCResult",
    "as_images",
    "measurement_similarity",
    "ncc_max",
    "relative_l2",
    "ssim_rerank",
]

_EPS = 1e-12


class NCCResult(NamedTuple):
    """Output of :func:`ncc_max`.

    Attributes:
        scores: ``(Q, R)`` best normalised correlation per pair.
        shifts: ``(Q, R, 2)`` int64 circular shift ``(dy, dx)`` in ``[−H/2, H/2) × [−W/2, W/2)`` at
            the best score: ``q ≈ roll(r, (dy, dx))`` (or ``flip(q) ≈ roll(r, (dy, dx))`` when
            ``flipped``); all zeros when shifts are not searched.
        flipped: ``(Q, R)`` bool, whether the best score was reached with the query flipped
            left-right.
    """

    scores: torch.Tensor
    shifts: torch.Tensor
    flipped: torch.Tensor


def as_images(x: Any, *, device: torch.device | str | None = None) -> torch.Tensor:
    """``x`` as an ``(N, H, W)`` tensor (a single ``(H, W)`` image gets a batch axis).

    Raises:
        ValueError: ``x`` is not 2-D or 3-D.
    """
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(x))
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise ValueError(f"expected images shaped (N, H, W) or (H, W), got shape {tuple(t.shape)}")
    if device is not None:
        t = t.to(device)
    return t


def _prepare(x: torch.Tensor, complex_phase: bool) -> torch.Tensor:
    """Per-image preprocessing: magnitude minus its mean (float), or the complex image as is."""
    if complex_phase:
        return x.to(torch.complex128) if x.dtype == torch.complex128 else x.to(torch.complex64)
    m = x.abs() if x.is_complex() else x
    m = m.to(torch.float64 if m.dtype == torch.float64 else torch.float32)
    return m - m.mean(dim=(-2, -1), keepdim=True)


def _norms(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x, dim=(-2, -1))


def _signed_shift(idx: torch.Tensor, size: int) -> torch.Tensor:
    return torch.where(idx >= (size + 1) // 2, idx - size, idx) if size > 1 else torch.zeros_like(idx)


def _best_over_shifts(
    q: torch.Tensor, r: torch.Tensor, complex_phase: bool, shifts: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised best correlation ``(Q, R)`` and the flat index of the best shift."""
    if not shifts:
        inner = torch.einsum("qhw,rhw->qr", q, r.conj() if complex_phase else r)
        score = inner.abs() if complex_phase else inner
        return score.real if score.is_complex() else score, torch.zeros(score.shape, dtype=torch.long, device=q.device)
    h, w = q.shape[-2:]
    if complex_phase:
        fq, fr = torch.fft.fft2(q), torch.fft.fft2(r)
        corr = torch.fft.ifft2(fq[:, None] * fr[None].conj()).abs()
    else:
        fq, fr = torch.fft.rfft2(q), torch.fft.rfft2(r)
        corr = torch.fft.irfft2(fq[:, None] * fr[None].conj(), s=(h, w))
    best, arg = corr.reshape(*corr.shape[:2], h * w).max(dim=-1)
    return best, arg


def ncc_max(
    queries: Any,
    references: Any,
    *,
    flips: bool = True,
    complex_phase: bool = False,
    shifts: bool = True,
) -> NCCResult:
    """Normalised cross-correlation of each query with each reference, maximised over shifts and flips.

    The correlation over all integer circular shifts of a pair is one FFT product,
    ``c = IFFT(FFT(q) · conj(FFT(r)))``, ``c[s] = Σ_n q[n] conj(r[n − s])``, divided by
    ``‖q‖ ‖r‖``. Magnitude images (``complex_phase=False``; complex inputs use ``|x|``) have their
    mean removed first and the score is ``max_s c[s]`` in ``[−1, 1]``; complex images keep their
    phase and the score is ``max_s |c[s]|`` in ``[0, 1]``, invariant to a global phase. With
    ``flips`` the query flipped left-right is tried too and the better score kept. Images with zero
    norm (after mean removal) score 0.

    Memory: about ``Q · R · H · W`` complex numbers at once (use
    :func:`~ambientmri.audit.search.topk_neighbours` to bound it for large sets).

    Args:
        queries: ``(Q, H, W)`` (or one ``(H, W)`` image), real or complex.
        references: ``(R, H, W)``, same grid.
        flips: also try each query flipped left-right.
        complex_phase: the phase-invariant complex similarity instead of the magnitude NCC.
        shifts: search all circular shifts (default); False compares the images as they are.

    Returns:
        :class:`NCCResult` ``(scores, shifts, flipped)`` on the queries' device.

    Raises:
        ValueError: the grids differ.
    """
    q = as_images(queries)
    r = as_images(references, device=q.device)
    if q.shape[-2:] != r.shape[-2:]:
        raise ValueError(f"queries are {tuple(q.shape[-2:])} images but references are {tuple(r.shape[-2:])}")
    h, w = q.shape[-2:]
    qp, rp = _prepare(q, complex_phase), _prepare(r, complex_phase)
    if qp.is_complex() != rp.is_complex() or qp.dtype != rp.dtype:
        common = torch.promote_types(qp.dtype, rp.dtype)
        qp, rp = qp.to(common), rp.to(common)
    denom = _norms(qp)[:, None] * _norms(rp)[None, :]
    valid = denom > _EPS
    denom = torch.where(valid, denom, torch.ones_like(denom))
    best, arg = _best_over_shifts(qp, rp, complex_phase, shifts)
    flipped = torch.zeros(best.shape, dtype=torch.bool, device=best.device)
    if flips:
        best_f, arg_f = _best_over_shifts(torch.flip(qp, dims=(-1,)), rp, complex_phase, shifts)
        flipped = best_f > best
        best = torch.where(flipped, best_f, best)
        arg = torch.where(flipped, arg_f, arg)
    scores = torch.where(valid, best / denom, torch.zeros_like(best)).to(denom.dtype)
    lo = -1.0 if not complex_phase else 0.0
    scores = scores.clamp(lo, 1.0)
    arg = arg.to(scores.device)
    shift = torch.stack([_signed_shift(arg // w, h), _signed_shift(arg % w, w)], dim=-1)
    return NCCResult(scores, shift, flipped)


# ----------------------------------------------------------------------------------------------
# similarity to the corrupted training set
# ----------------------------------------------------------------------------------------------
def _flat_inner(a: torch.Tensor, b: torch.Tensor, ndim: int) -> torch.Tensor:
    """``Σ conj(a) b`` over the last ``ndim`` axes."""
    dims = tuple(range(-ndim, 0))
    return (a.conj() * b).sum(dim=dims)


def measurement_similarity(
    generated: Any,
    store: CorruptedStore,
    indices: Sequence[int] | None = None,
    *,
    flips: bool = True,
    batch: int = 16,
) -> torch.Tensor:
    """Similarity of generated images to the corrupted training slices, on their measured entries.

    For slice ``i`` with operator ``A_i`` and stored measurements ``y_i`` (``A_i x0 / scale``,
    zero-filled), the score of a generated image ``g`` is

    ``s(g, i) = |⟨A_i g, y_i⟩| / (‖A_i g‖ ‖y_i‖)`` in ``[0, 1]``,

    invariant to a global phase of ``g`` and to the slice's scale. With ``flips`` the score is the
    better of ``g`` and ``g`` flipped left-right. Shifts are NOT searched: a shift does not commute
    with a mask (the shifted image meets a different set of measurements), and a shift search would
    need one operator application per shift and pair. When ``A_i`` keeps everything (identity
    transform, mask of ones) this is exactly the complex similarity of :func:`ncc_max` with
    ``complex_phase=True, shifts=False`` against the clean image ``x0``; under real undersampling
    it remains maximal (1) for ``g = c · x0``.

    Memory: about ``batch · G`` times the size of one slice's measurements (complex).

    Args:
        generated: ``(G, H, W)`` complex images on the store's grid (for Gaussian corruptions the
            image is flattened to the operator's input).
        store: the corrupted training store.
        indices: store slices to compare with (default: all).
        flips: also try each generated image flipped left-right.
        batch: store slices per operator application.

    Returns:
        ``(G, len(indices))`` float scores on the CPU (or the generated tensor's device).

    Raises:
        ValueError: the generated images are not on the store's grid.
    """
    from ambientmri.data.batch import collate, to_device

    g = as_images(generated)
    if tuple(g.shape[-2:]) != tuple(store.grid):
        raise ValueError(f"generated images are {tuple(g.shape[-2:])} but the store's grid is {tuple(store.grid)}")
    g = g.to(torch.complex64)
    idx = list(range(len(store))) if indices is None else [int(i) for i in indices]
    variants = [g, torch.flip(g, dims=(-1,))] if flips else [g]
    out = torch.zeros((g.shape[0], len(idx)), dtype=torch.float32, device=g.device)
    for start in range(0, len(idx), max(1, int(batch))):
        chunk = idx[start : start + max(1, int(batch))]
        samples = collate([store[i] for i in chunk])
        samples = to_device(samples, g.device)
        op = store.operator(samples)
        y = samples.y  # (B, *out)
        nd = len(op.out_shape)
        y_norm = torch.linalg.vector_norm(y.reshape(y.shape[0], -1), dim=-1)  # (B,)
        best = torch.zeros((g.shape[0], len(chunk)), dtype=torch.float32, device=g.device)
        for v in variants:
            x = v.reshape(v.shape[0], 1, *op.in_shape)  # (G, 1, *in) broadcasts against (B, ...)
            ag = op.forward(x)  # (G, B, *out)
            inner = _flat_inner(ag, y.unsqueeze(0), nd).abs()
            ag_norm = torch.linalg.vector_norm(ag.reshape(*ag.shape[:2], -1), dim=-1)
            denom = ag_norm * y_norm[None, :]
            s = torch.where(denom > _EPS, inner / torch.where(denom > _EPS, denom, 1.0), 0.0)
            best = torch.maximum(best, s.to(torch.float32))
        out[:, start : start + len(chunk)] = best.clamp(0.0, 1.0)
    return out


# ----------------------------------------------------------------------------------------------
# Carlini's relative l2 and SSIM
# ----------------------------------------------------------------------------------------------
def relative_l2(
    queries: Any,
    references: Any,
    *,
    alpha: float = 0.5,
    n: int = 50,
    magnitude: bool = True,
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Carlini et al.'s relative ℓ2: nearest distance over ``α`` times the mean distance to the ``n`` nearest.

    ``ℓ(q) = ‖q − r_(1)‖ / (α · (1/n) Σ_{j ≤ n} ‖q − r_(j)‖)`` with ``r_(j)`` the ``j``-th nearest
    reference (the nearest included in the mean). Small means memorized: a query much closer to
    one reference than to its other neighbours (Carlini et al. flag ``ℓ < 1`` with ``α = 0.5``).
    No shift or flip search.

    Args:
        queries: ``(Q, H, W)``.
        references: ``(R, H, W)``.
        alpha: the scale ``α`` of the mean distance.
        n: neighbours in the mean (capped at ``R``).
        magnitude: compare magnitudes ``|x|`` (default: generated images have an arbitrary global
            phase); False compares the raw (complex) pixels.
        chunk: references per distance block (memory ``Q · chunk``).

    Returns:
        ``(ratio, nearest)``: ``(Q,)`` float64 ratios and ``(Q,)`` int64 index of the nearest reference.
    """
    if alpha <= 0 or n < 1:
        raise ValueError(f"alpha must be > 0 and n >= 1, got alpha={alpha!r}, n={n!r}")
    q = as_images(queries)
    r = as_images(references, device=q.device)
    if magnitude:
        q, r = q.abs(), r.abs()
    qf = torch.view_as_real(q.to(torch.complex128)).reshape(q.shape[0], -1)
    rf = torch.view_as_real(r.to(torch.complex128)).reshape(r.shape[0], -1)
    n = min(int(n), rf.shape[0])
    d = torch.cat([torch.cdist(qf, rf[s : s + chunk]) for s in range(0, rf.shape[0], max(1, chunk))], dim=1)
    nearest_d, nearest_i = torch.topk(d, n, dim=1, largest=False)
    mean = nearest_d.mean(dim=1)
    ratio = torch.where(mean > 0, nearest_d[:, 0] / (alpha * torch.where(mean > 0, mean, 1.0)), 0.0)
    return ratio, nearest_i[:, 0]


def _unit_magnitude(x: np.ndarray) -> np.ndarray:
    m = np.abs(x).astype(np.float64)
    top = m.max()
    return m / top if top > 0 else m


def ssim_rerank(
    query: Any,
    candidates: Any,
    *,
    align: bool = True,
) -> np.ndarray:
    """SSIM of one query against each candidate (magnitudes, each normalised to a maximum of 1).

    Uses :func:`skimage.metrics.structural_similarity` with ``data_range=1``. SSIM is not shift
    invariant, so with ``align`` each candidate is first moved onto the query by the circular shift
    and flip that maximise :func:`ncc_max` (magnitude variant).

    Args:
        query: ``(H, W)`` image (or ``(1, H, W)``).
        candidates: ``(K, H, W)`` images, e.g. the query's top-k neighbours.
        align: align each candidate to the query by the best shift/flip first.

    Returns:
        ``(K,)`` float64 SSIM values in ``[−1, 1]``.
    """
    from skimage.metrics import structural_similarity

    q = as_images(query)
    if q.shape[0] != 1:
        raise ValueError(f"ssim_rerank takes one query image, got {q.shape[0]}")
    c = as_images(candidates, device=q.device)
    if align:
        res = ncc_max(q, c, flips=True)
        aligned = []
        for k in range(c.shape[0]):
            dy, dx = (int(v) for v in res.shifts[0, k])
            moved = torch.roll(c[k], shifts=(dy, dx), dims=(-2, -1))
            # flip(q) ≈ roll(c, s)  ⇔  q ≈ flip(roll(c, s))
            aligned.append(torch.flip(moved, dims=(-1,)) if bool(res.flipped[0, k]) else moved)
        c = torch.stack(aligned) if aligned else c
    qn = _unit_magnitude(q[0].detach().cpu().numpy())
    return np.array(
        [structural_similarity(qn, _unit_magnitude(ck.detach().cpu().numpy()), data_range=1.0) for ck in c],
        dtype=np.float64,
    )
