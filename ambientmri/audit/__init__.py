"""Memorization audit: do generated scans copy training scans? (docs/theory.md §6)

- :mod:`~ambientmri.audit.similarity`: pixel-space similarities (shift/flip-maximised NCC, similarity
  to the corrupted training measurements, Carlini's relative ℓ2, SSIM re-ranking).
- :mod:`~ambientmri.audit.search`: exact chunked top-k neighbour search.
- :mod:`~ambientmri.audit.calibration`: threshold from subject-disjoint held-out scans, train
  background, memorized fraction with an exact (Clopper–Pearson) CI, Mann–Whitney test, training
  coverage.
- :mod:`~ambientmri.audit.controls`: positive controls (empirical optimal denoiser, perturbed copies).

The package itself is callable: ``ambientmri.audit(samples, train, heldout, out, ...)`` (``am.audit``
in the Python API, docs/api.md) is :func:`ambientmri.audit.run.run_audit`, with ``ambientmri
audit``'s defaults; :func:`ambientmri.api.audit` is the same call with its signature spelt out.
"""

import sys
import types
from typing import Any

from ambientmri.audit.calibration import (
    check_subject_disjoint,
    clopper_pearson,
    mann_whitney,
    memorized_fraction,
    threshold_from_heldout,
    train_background,
    training_coverage,
)
from ambientmri.audit.controls import empirical_optimal_denoiser, perturbed_copies, positive_control_samples
from ambientmri.audit.search import topk_neighbours
from ambientmri.audit.similarity import measurement_similarity, ncc_max, relative_l2, ssim_rerank

__all__ = [
    "check_subject_disjoint",
    "clopper_pearson",
    "empirical_optimal_denoiser",
    "mann_whitney",
    "measurement_similarity",
    "memorized_fraction",
    "ncc_max",
    "perturbed_copies",
    "positive_control_samples",
    "relative_l2",
    "ssim_rerank",
    "threshold_from_heldout",
    "topk_neighbours",
    "train_background",
    "training_coverage",
]


class _CallablePackage(types.ModuleType):
    """This package's module type: calling it runs the audit (``import ambientmri as am; am.audit(...)``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from ambientmri.audit.run import run_audit

        return run_audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
