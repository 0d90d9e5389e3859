"""Attack probe: can the model rebuild a training scan from a small part of it? (issue 5, §2)

A memorizing model that sees 10% of a training scan's k-space (or a fraction of its pixels) can
complete it from memory; for a scan it never saw it can only guess. :func:`attack_probe` treats
training scans and subject-disjoint held-out scans identically (same masks, same seeds, same
reconstruction), scores each reconstruction against its own source scan and reports the gap.

Procedure, per image ``t`` (training set, then held-out set, image ``i`` of both sets sharing one
mask and one noise seed, ``stable_seed(seed, "probe", i) mod 2³²``):

1. Normalise: ``t ← t / s`` with ``s`` the ``scale_percentile``-th percentile (the run's
   ``prepare.scale_percentile``, 99 by default) of ``|t|``: the units the store and the model use.
   NCC is scale-invariant, so this only sets the model's input level.
2. Observe: ``keep="kspace"``: a Cartesian fastMRI ``random`` mask keeping about ``fraction`` of
   the phase-encode columns, half of them a fully sampled centre
   (``CartesianCorruption("random", (fraction/2,), (1/fraction,))``), ``y = M F t`` (single coil);
   ``keep="pixels"``: each pixel kept with probability ``fraction``
   (``InpaintingCorruption(p=1 − fraction)``), ``y = M t``.
3. Reconstruct: ``method="a_os"`` (the default for ambient runs): one evaluation of the ambient
   model on ``Aᴴ y`` with ``M`` as condition (:func:`~ambientmri.sampling.restoration.a_os`,
   told noise level ``sigma``); ``method="dps"`` (the default for clean/naive runs): DPS with the
   model as a clean denoiser, ``steps`` (50) EDM ancestral steps, ``zeta`` (1.0, the fixed-length
   step). Or any ``reconstruct_fn(y, A) -> x`` (``method="custom"``).
4. Score: :func:`~ambientmri.audit.similarity.ncc_max` (complex, global-phase invariant, shift
   search, no flips) between the reconstruction and its own normalised source, in ``[0, 1]``. The
   zero-filled image ``Aᴴ y`` is scored the same way as a baseline.

Reading the result: ``gap = mean(train) − mean(held-out)``. A model that generalises reconstructs
both sets equally well (gap ≈ 0, ``mann_whitney_p`` large); a memorizing model completes training
scans better (positive gap, small p). The zero-filled baseline has no model in it, so its own gap
measures how different the two sets are to begin with: subtract it mentally. The probe works for a
model trained with any corruption, but the observation is out of the training distribution when
its domain (k-space vs pixels) or its sampling rate differs from the training corruption's; the
absolute scores then mean little and only the train/held-out comparison is informative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from ambientmri.audit.calibration import mann_whitney
from ambientmri.audit.similarity import as_images, ncc_max
from ambientmri.models.objectives import get_objective
from ambientmri.operators.corruptions import CartesianCorruption, Corruption, InpaintingCorruption
from ambientmri.operators.linear import MaskedOperator
from ambientmri.sampling.denoisers import clean_denoiser
from ambientmri.sampling.restoration import A_OS_SIGMA, a_os, dps
from ambientmri.utils import stable_seed

__all__ = ["DPS_STEPS", "attack_probe", "probe_corruption"]

#: DPS steps used for clean/naive runs (NFE per scan).
DPS_STEPS = 50

ReconstructFn = Callable[[torch.Tensor, MaskedOperator], torch.Tensor]
_CHUNK = 16


def probe_corruption(keep: str, fraction: float) -> Corruption:
    """The corruption family the probe observes through.

    Raises:
        ValueError: ``keep`` is not ``"kspace"``/``"pixels"`` or ``fraction`` is not in ``(0, 1)``.
    """
    if not isinstance(fraction, int | float) or not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"attack probe: fraction must be in (0, 1), got {fraction!r}")
    fraction = float(fraction)
    if keep == "kspace":
        return CartesianCorruption("random", (fraction / 2.0,), (1.0 / fraction,))
    if keep == "pixels":
        return InpaintingCorruption(p=1.0 - fraction, delta=0.0)
    raise ValueError(f"attack probe: keep must be 'kspace' or 'pixels', got {keep!r}")


def _normalise(images: Any, shape: tuple[int, ...], percentile: float, name: str) -> torch.Tensor:
    """``(N, H, W)`` complex64 images, each divided by its ``percentile``-th magnitude percentile."""
    x = as_images(images, device="cpu").to(torch.complex64)
    if x.ndim != 3 or tuple(x.shape[-2:]) != tuple(shape) or x.shape[0] == 0:
        raise ValueError(
            f"attack probe: {name} images must be (N, {shape[0]}, {shape[1]}) with N ≥ 1, got {tuple(x.shape)}"
        )
    mag = x.abs().reshape(x.shape[0], -1).numpy()
    if not np.isfinite(mag).all():
        raise ValueError(f"attack probe: {name} images hold non-finite values")
    scale = np.percentile(mag, percentile, axis=1)
    if (scale <= 0).any():
        raise ValueError(f"attack probe: {name} image {int(np.argmin(scale))} is (nearly) all zero")
    return x / torch.from_numpy(scale.astype(np.float32)).reshape(-1, 1, 1)


def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _summary(scores: np.ndarray) -> dict[str, Any]:
    return {"mean": float(np.mean(scores)), "median": float(np.median(scores)), "scores": [float(s) for s in scores]}


def _pair_ncc(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """NCC of ``a[i]`` with ``b[i]`` (complex, phase-invariant, shift search, no flips)."""
    res = ncc_max(a, b, flips=False, complex_phase=True)
    return res.scores.diagonal().double().cpu().numpy()


class _ProbeSetup(NamedTuple):
    """How the probe observes and reconstructs (fixed for the training and the held-out scans)."""

    corruption: Any
    shape: tuple[int, ...]
    seed: int
    chosen: str
    run: Any
    sigma: float
    steps: int
    zeta: float
    reconstruct_fn: ReconstructFn | None
    device: torch.device


def _probe_scores(images: torch.Tensor, setup: _ProbeSetup) -> tuple[np.ndarray, np.ndarray]:
    """Each scan's similarity to its reconstruction from the probe's observation, and to the zero-filled image."""
    corruption, shape, seed, chosen, run = setup.corruption, setup.shape, setup.seed, setup.chosen, setup.run
    sigma, steps, zeta, reconstruct_fn, device = (setup.sigma, setup.steps, setup.zeta, setup.reconstruct_fn,
                                                   setup.device)
    model_scores, zf_scores = [], []
    for start in range(0, images.shape[0], _CHUNK):
        t = images[start : start + _CHUNK].to(device)
        idx = range(start, start + t.shape[0])
        masks = np.stack([corruption.sample_mask(shape, stable_seed(seed, "probe", i) % 2**32) for i in idx])
        A = corruption.operator(torch.from_numpy(masks.astype(np.float32)).to(device), shape)
        y = A.forward(t)
        zf = A.adjoint(y).reshape(t.shape)
        if chosen == "custom":
            x = reconstruct_fn(y, A)
        elif chosen == "a_os":
            x = a_os(run.model, y, A, sigma=sigma, image_shape=shape).x
        else:
            gens = [torch.Generator(device=device).manual_seed(stable_seed(seed, "probe-dps", i)) for i in idx]
            x = dps(
                clean_denoiser(run.model, shape),
                y,
                A,
                steps=int(steps),
                zeta=zeta,
                dc_step="fixed",  # the probe's measured setting (docs/audit.md), not reconstruct's default
                generator=gens,
                image_shape=shape,
            ).x
        x = torch.as_tensor(x).detach().reshape(t.shape).to(torch.complex64)
        model_scores.append(_pair_ncc(x.cpu(), t.cpu()))
        zf_scores.append(_pair_ncc(zf.detach().cpu(), t.cpu()))
    return np.concatenate(model_scores), np.concatenate(zf_scores)


def attack_probe(
    run: Any,
    train_images: Any,
    heldout_images: Any,
    *,
    keep: Literal["kspace", "pixels"] = "kspace",
    fraction: float = 0.1,
    method: Literal["auto", "a_os", "dps"] = "auto",
    sigma: float = A_OS_SIGMA,
    seed: int = 0,
    steps: int = DPS_STEPS,
    zeta: float = 1.0,
    reconstruct_fn: ReconstructFn | None = None,
) -> dict[str, Any]:
    """Reconstruct training and held-out scans from partial observations and compare how close each gets.

    See the module docstring for the procedure and how to read the result.

    Args:
        run: a :class:`~ambientmri.sampling.runs.LoadedRun` (or any object with ``model``,
            ``image_shape``, ``objective`` and optionally ``recipe``); only ``image_shape`` is used
            when ``reconstruct_fn`` is given (then ``run`` may also be ``None`` if the images'
            grid is taken as is).
        train_images: ``(N, H, W)`` complex (or real) training scans on the model's grid.
        heldout_images: ``(M, H, W)`` subject-disjoint held-out scans, same grid.
        keep: observe a fraction of k-space columns (``"kspace"``) or of pixels (``"pixels"``).
        fraction: the fraction kept, in ``(0, 1)``.
        method: ``"a_os"``, ``"dps"`` or ``"auto"`` (``a_os`` for ambient runs, ``dps`` otherwise).
        sigma: the noise level ``a_os`` tells the network.
        seed: the probe seed (masks and DPS noise).
        steps, zeta: DPS steps and step size.
        reconstruct_fn: ``f(y, A) -> x (B, H, W)`` replacing the model (``method`` is then reported
            as ``"custom"``).

    Returns:
        ``{"keep", "fraction", "method", "seed", "n_train", "n_heldout", "train": {"mean", "median",
        "scores"}, "heldout": {...}, "zero_filled": {"train", "heldout"}, "gap", "zero_filled_gap",
        "mann_whitney_p"}`` (plain floats and lists, JSON-ready). ``gap`` = train mean − held-out mean.

    Raises:
        ValueError: a bad ``keep``, ``fraction``, ``method``, ``sigma``, ``steps`` or image shape.
    """
    corruption = probe_corruption(keep, fraction)
    if method not in ("auto", "a_os", "dps"):
        raise ValueError(f"attack probe: method must be 'auto', 'a_os' or 'dps', got {method!r}")
    if not sigma > 0:
        raise ValueError(f"attack probe: sigma must be positive, got {sigma!r}")
    if int(steps) < 1:
        raise ValueError(f"attack probe: steps must be ≥ 1, got {steps!r}")
    if reconstruct_fn is None and run is None:
        raise ValueError("attack probe: needs a run (or a reconstruct_fn)")
    if run is not None:
        shape = tuple(int(s) for s in run.image_shape)
    else:
        shape = tuple(as_images(train_images).shape[-2:])
    if len(shape) != 2:
        raise ValueError(f"attack probe: needs a 2D image grid, the run has {shape}")
    recipe = getattr(run, "recipe", None)
    percentile = float(getattr(getattr(recipe, "prepare", None), "scale_percentile", 99.0))
    train = _normalise(train_images, shape, percentile, "training")
    heldout = _normalise(heldout_images, shape, percentile, "held-out")

    if reconstruct_fn is not None:
        chosen = "custom"
    elif method == "auto":
        chosen = "a_os" if get_objective(str(run.objective)).sees_further else "dps"
    else:
        chosen = method
    device = _model_device(run.model) if reconstruct_fn is None else torch.device("cpu")
    setup = _ProbeSetup(corruption, shape, seed, chosen, run, sigma, int(steps), zeta, reconstruct_fn, device)

    train_scores, train_zf = _probe_scores(train, setup)
    held_scores, held_zf = _probe_scores(heldout, setup)
    if not (np.isfinite(train_scores).all() and np.isfinite(held_scores).all()):
        raise ValueError("attack probe: the reconstruction produced non-finite values")
    _, p = mann_whitney(train_scores, held_scores)
    return {
        "keep": keep,
        "fraction": float(fraction),
        "method": chosen,
        "seed": int(seed),
        "n_train": int(train.shape[0]),
        "n_heldout": int(heldout.shape[0]),
        "train": _summary(train_scores),
        "heldout": _summary(held_scores),
        "zero_filled": {"train": float(train_zf.mean()), "heldout": float(held_zf.mean())},
        "gap": float(train_scores.mean() - held_scores.mean()),
        "zero_filled_gap": float(train_zf.mean() - held_zf.mean()),
        "mann_whitney_p": float(p),
    }
