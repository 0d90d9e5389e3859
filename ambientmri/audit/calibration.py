"""Threshold calibration and statistics of the memorization audit.

The threshold ``τ`` is the ``q``-quantile of held-out real scans' top-1 similarity to the training
set (:func:`threshold_from_heldout`); the held-out scans must come from subjects that are not in
training (:func:`check_subject_disjoint`), otherwise adjacent slices of a training subject set ``τ``
near 1. With ``q = 0.99`` about 1% of fresh real scans are flagged by construction (the false
positive rate). A generated scan is *flagged* when its top-1 similarity is strictly above ``τ``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ambientmri.audit.search import topk_neighbours

__all__ = [
    "check_subject_disjoint",
    "clopper_pearson",
    "expected_false_positive_rate",
    "mann_whitney",
    "memorized_fraction",
    "minimum_scans",
    "threshold_from_heldout",
    "train_background",
    "training_coverage",
]


def _scores(x: Any) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    a = a.astype(np.float64).reshape(-1)
    return a


def threshold_from_heldout(heldout_top1: Any, q: float = 0.99) -> float:
    """``τ``: the ``q``-quantile of the held-out scans' top-1 similarities (non-finite values dropped).

    Raises:
        ValueError: ``q`` outside ``(0, 1)`` or no finite score.
    """
    if not 0.0 < float(q) < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    s = _scores(heldout_top1)
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("no finite held-out score to calibrate the threshold on")
    return float(np.quantile(s, float(q)))


def check_subject_disjoint(train_subjects: Sequence[str], heldout_subjects: Sequence[str]) -> None:
    """Refuse held-out scans from training subjects.

    Raises:
        ValueError: one line naming the number of shared pseudonyms and the first few.
    """
    shared = sorted(set(map(str, train_subjects)) & set(map(str, heldout_subjects)))
    if shared:
        few = ", ".join(shared[:5]) + (", ..." if len(shared) > 5 else "")
        raise ValueError(
            f"held-out scans must come from subjects not in training, but {len(shared)} subject(s) are in both: {few}"
        )


def train_background(
    train_images: Any,
    subjects: Sequence[str],
    *,
    similarity: str = "ncc",
    flips: bool = True,
    shifts: bool = True,
    chunk: int = 256,
    query_chunk: int = 64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each training slice's top-1 similarity to the other training slices of OTHER subjects.

    Every slice of the same subject is excluded (adjacent slices are near-identical, so including
    them would measure the slice spacing, not memorization). The distribution is the train-vs-train
    background the generated scans' scores are compared with.

    Args:
        train_images: ``(N, H, W)`` training images.
        subjects: ``N`` subject pseudonyms, one per slice.
        similarity, flips, shifts, chunk, query_chunk, device: as
            :func:`~ambientmri.audit.search.topk_neighbours`.

    Returns:
        ``(scores, indices)``: ``(N,)`` float64 top-1 scores and ``(N,)`` neighbour indices.

    Raises:
        ValueError: the lengths differ or there are fewer than two subjects.
    """
    labels = [str(s) for s in subjects]
    n = len(train_images)
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} subjects for {n} training slices")
    if len(set(labels)) < 2:
        raise ValueError("the train background needs slices of at least two subjects")
    s, i = topk_neighbours(
        train_images, train_images, 1, similarity=similarity, flips=flips, shifts=shifts, chunk=chunk,
        query_chunk=query_chunk, query_groups=labels, reference_groups=labels, device=device,
    )
    return s[:, 0], i[:, 0]


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper–Pearson) ``level`` interval of a binomial proportion ``k / n``.

    ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``: 0 of 8 gives 0–36.9%, not 0–0%.

    Raises:
        ValueError: ``n < 1``, ``k`` outside ``[0, n]`` or ``level`` outside ``(0, 1)``.
    """
    from scipy.stats import binomtest

    if int(n) < 1 or not 0 <= int(k) <= int(n) or not 0.0 < level < 1.0:
        raise ValueError(f"clopper_pearson needs 0 <= k <= n, n >= 1 and level in (0, 1), got {k!r}, {n!r}, {level!r}")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def memorized_fraction(gen_top1: Any, tau: float, *, level: float = 0.95) -> tuple[float, float, float]:
    """Fraction of generated scans flagged (top-1 > ``τ``) with its exact Clopper–Pearson interval.

    Non-finite scores (blank samples) count as not flagged.

    Returns:
        ``(fraction, ci_low, ci_high)``.

    Raises:
        ValueError: no scores or ``level`` outside ``(0, 1)``.
    """
    s = _scores(gen_top1)
    if s.size == 0:
        raise ValueError("no generated scores")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    k = int((s > float(tau)).sum())
    lo, hi = clopper_pearson(k, s.size, level)
    return k / s.size, lo, hi


def expected_false_positive_rate(n_calibration: int, q: float) -> float:
    """The rate at which a fresh real scan exceeds ``τ`` calibrated on ``n_calibration`` scans at ``q``.

    ``τ`` is numpy's linearly interpolated ``q``-quantile, at order-statistic position ``h = q (n − 1)``;
    a fresh score exceeds the ``k``-th of ``n`` order statistics with probability ``(n − k + 1)/(n + 1)``,
    so the rate is about ``(n − h) / (n + 1)``: ``1 − q`` for large ``n``, more for small ``n``
    (11.9% for 8 scans at ``q = 0.99``).

    Raises:
        ValueError: ``n_calibration < 1`` or ``q`` outside ``(0, 1)``.
    """
    n = int(n_calibration)
    if n < 1 or not 0.0 < float(q) < 1.0:
        raise ValueError(f"n_calibration must be >= 1 and q in (0, 1), got {n_calibration!r}, {q!r}")
    return float((n - float(q) * (n - 1)) / (n + 1))


def minimum_scans(q: float) -> int:
    """The fewest scans for which a ``q``-quantile is resolved: ``⌈1 / (1 − q)⌉`` (100 at ``q = 0.99``).

    Fewer held-out scans cannot put one scan above ``τ`` on average, and fewer samples cannot tell a
    memorized fraction from the false-positive rate ``1 − q``.
    """
    return int(np.ceil(1.0 / (1.0 - float(q)) - 1e-9))


def mann_whitney(gen_top1: Any, heldout_top1: Any) -> tuple[float, float]:
    """One-sided Mann–Whitney U test that generated top-1 scores are stochastically greater than held-out's.

    Returns:
        ``(U statistic, p-value)`` of :func:`scipy.stats.mannwhitneyu` with ``alternative="greater"``.
    """
    from scipy.stats import mannwhitneyu

    g, h = _scores(gen_top1), _scores(heldout_top1)
    res = mannwhitneyu(g[np.isfinite(g)], h[np.isfinite(h)], alternative="greater")
    return float(res.statistic), float(res.pvalue)


def training_coverage(top1_indices: Any, top1_scores: Any, tau: float, n_train: int) -> float:
    """Fraction of the ``n_train`` training scans matched (top-1 > ``τ``) by at least one generated scan."""
    if int(n_train) < 1:
        raise ValueError(f"n_train must be >= 1, got {n_train!r}")
    idx = _scores(top1_indices).astype(np.int64)
    s = _scores(top1_scores)
    if idx.shape != s.shape:
        raise ValueError(f"got {idx.size} indices for {s.size} scores")
    hit = np.unique(idx[(s > float(tau)) & (idx >= 0)])
    return float(hit.size / int(n_train))
