"""The memorization audit end to end: load the scan sets, score, calibrate, run controls, report.

:func:`run_audit` is what ``ambientmri audit`` calls. It compares generated scans with the training
set, calibrates the threshold ``τ`` on subject-disjoint held-out scans (docs/theory.md §6), runs the
positive and negative controls, and writes ``summary.json`` and a self-contained ``report.html``
into the output folder (atomically: the folder appears complete or not at all).

Comparison spaces:

- ``"image"``: magnitude normalised cross-correlation maximised over circular shifts and
  left-right flips, against clean training images (fastMRI targets, NIfTI/DICOM images, or the
  clean references of a corrupted store whose fully sampled source files are still there).
- ``"measurement"``: against a corrupted store itself, ``|⟨A_i g, y_i⟩| / (‖A_i g‖ ‖y_i‖)`` on the
  measured entries of each training slice (flips searched, no shifts).

With a store as the training set the measurement space is the primary one (it is what the model
saw); the image space is added when clean references exist. Training scans are reported by index and
subject pseudonym only, never by a tag read from an input file.

The verdict (``summary["verdict"]``) is conclusive only when every check passed: enough samples and
held-out scans for the quantile, both positive controls caught, the negative control at its expected
rate. Otherwise it is ``inconclusive`` and the failed checks are named with their values and targets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ambientmri.audit.calibration import (
    check_subject_disjoint,
    clopper_pearson,
    expected_false_positive_rate,
    mann_whitney,
    memorized_fraction,
    minimum_scans,
    threshold_from_heldout,
    training_coverage,
)
from ambientmri.audit.controls import perturbed_copies, positive_control_samples
from ambientmri.audit.search import topk_neighbours
from ambientmri.audit.similarity import ncc_max, relative_l2, ssim_rerank
from ambientmri.errors import InputError
from ambientmri.operators.fft import center_crop

__all__ = ["SEARCHES", "VERDICTS", "ScanSet", "load_scan_set", "resolve_search", "run_audit", "zero_filled_images"]

#: ``progress(stage, done, total)``.
AuditProgress = Callable[[str, int, int], None]

SPACE_LABELS = {
    "measurement": "corrupted store (measurement space)",
    "image": "clean images (magnitude NCC, shifts and flips)",
}
POSITIVE_TARGET = 0.95
TOP_MATCHES = 8
#: ``summary["verdict"]``: the audit's conclusion, one of these.
VERDICTS = ("no_evidence_of_memorization", "memorization_detected", "inconclusive")
#: ``run_audit(search=...)``: how neighbours are searched (docs/audit.md, "Search at scale").
SEARCHES = ("auto", "exhaustive", "candidates")
#: ``search="auto"`` uses the two-stage candidate search above this many training slices (per space).
AUTO_CANDIDATES_ABOVE = {"image": 2000, "measurement": 256}
#: candidates per query scored exactly by the two-stage search.
SEARCH_CANDIDATES = 64


def resolve_search(search: str, space: str, n_train: int) -> str:
    """``exhaustive`` or ``candidates`` for ``search`` in ``space`` against ``n_train`` training slices.

    ``auto`` is exhaustive up to :data:`AUTO_CANDIDATES_ABOVE` slices (where it takes seconds to a
    minute) and the two-stage search above; the same method serves every query set of one space
    (samples, held-out, background, controls), so τ and the samples are scored alike.
    """
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    if search != "auto":
        return search
    return "candidates" if n_train > AUTO_CANDIDATES_ABOVE[space] else "exhaustive"


@dataclass
class ScanSet:
    """One input set of scans.

    Attributes:
        path: the file or folder given.
        kind: ``samples``, ``store``, ``fastmri``, ``nifti`` or ``dicom``.
        images: ``(N, H, W)`` images (complex or real) or None (a store without clean references
            still has its zero-filled images here, see ``image_source``).
        subjects: one subject pseudonym per slice, or None (generated samples).
        store: the corrupted store, for ``kind == "store"``.
        image_source: what ``images`` are, in words.
        clean: whether ``images`` are clean scans (not zero-filled ``Aᴴy``).
        notes: remarks for the report.
    """

    path: Path
    kind: str
    images: np.ndarray
    subjects: list[str] | None
    store: Any = None
    image_source: str = ""
    clean: bool = True
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------
def _check_images(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0 or min(arr.shape[1:]) < 2:
        raise InputError(path, f"expected images shaped (N, H, W), got shape {tuple(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.iscomplexobj(arr)):
        raise InputError(path, f"expected float or complex images, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise InputError(path, "contains NaN or Inf")
    return arr.astype(np.complex64) if np.iscomplexobj(arr) else arr.astype(np.float32)


def _common_crop(arrays: list[np.ndarray]) -> list[np.ndarray]:
    shape = min(a.shape[-2] for a in arrays), min(a.shape[-1] for a in arrays)
    return [np.ascontiguousarray(center_crop(a, shape)) for a in arrays]


def _load_npy(path: Path) -> ScanSet:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable .npy file ({type(exc).__name__})") from None
    return ScanSet(path, "samples", _check_images(np.asarray(arr), path), None, image_source="generated samples")


def zero_filled_images(store: Any) -> np.ndarray:
    """``Aᴴy`` of every store slice on the store's grid (complex64)."""
    from ambientmri.data.batch import collate

    out = np.empty((len(store), *store.grid), np.complex64)
    for start in range(0, len(store), 16):
        batch = collate([store[i] for i in range(start, min(start + 16, len(store)))])
        op = store.operator(batch)
        x = op.adjoint(batch.y)
        out[start : start + x.shape[0]] = x.reshape(x.shape[0], *store.grid).numpy()
    return out


def _load_store(path: Path) -> ScanSet:
    from ambientmri.data.references import clean_reference
    from ambientmri.data.store import CorruptedStore

    store = CorruptedStore(path)
    if len(store) == 0:
        raise InputError(path, "the store holds no slices")
    subjects = [str(s) for s in store.subjects()]
    try:
        images = np.stack([clean_reference(store, i) for i in range(len(store))])
        return ScanSet(path, "store", images, subjects, store, "clean references from the store's source files")
    except (InputError, OSError, KeyError) as exc:
        note = f"no clean references ({' '.join(str(exc).split())[:160]}); zero-filled Aᴴy images used instead"
        images = zero_filled_images(store)
        return ScanSet(path, "store", images, subjects, store, "zero-filled Aᴴy images", False, [note])


def _load_fastmri(path: Path, files: list[Path]) -> ScanSet:
    from ambientmri.data.fastmri import FastMRIFile
    from ambientmri.utils import pseudonym

    images, subjects = [], []
    for f in files:
        try:
            with FastMRIFile(f) as h:
                t = h.target_all()
                subject = pseudonym(h.patient_id)
        except OSError:
            raise InputError(f, "not a readable fastMRI HDF5 file") from None
        images.append(_check_images(np.asarray(t), f))
        subjects += [subject] * t.shape[0]
    return ScanSet(path, "fastmri", np.concatenate(_common_crop(images)), subjects,
                   image_source="fastMRI targets (reconstruction_esc/_rss magnitudes)")


def _load_medical(path: Path, kind: str) -> ScanSet:
    from ambientmri.data.sources import open_sources
    from ambientmri.utils import pseudonym

    vols = open_sources(path, kind)
    images, subjects = [], []
    for v in vols:
        imgs = np.stack([v.image(i) for i in range(v.num_slices)])
        images.append(_check_images(imgs, v.source))
        subjects += [pseudonym(v.subject)] * v.num_slices
    return ScanSet(path, kind, np.concatenate(_common_crop(images)), subjects, image_source=f"{kind} magnitude images")


def load_scan_set(path: str | Path) -> ScanSet:
    """Open a samples folder/.npy, a corrupted store, a fastMRI file/folder, NIfTI or DICOM input.

    Raises:
        InputError: the path does not exist or holds none of these, naming it.
    """
    from ambientmri.data.sources import FASTMRI_SUFFIXES, NIFTI_SUFFIXES

    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or folder")
    if p.is_file():
        if p.suffix == ".npy":
            return _load_npy(p)
        if p.suffix in FASTMRI_SUFFIXES:
            return _load_fastmri(p, [p])
        if p.name.endswith(NIFTI_SUFFIXES):
            return _load_medical(p, "nifti")
        raise InputError(p, "not a .npy, fastMRI .h5 or NIfTI file")
    if (p / "manifest.json").is_file():
        return _load_store(p)
    if (p / "samples.npy").is_file():
        s = _load_npy(p / "samples.npy")
        s.path = p
        return s
    h5 = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in FASTMRI_SUFFIXES)
    if h5:
        return _load_fastmri(p, h5)
    if any(f.is_file() and f.name.endswith(NIFTI_SUFFIXES) for f in p.rglob("*")):
        return _load_medical(p, "nifti")
    try:
        return _load_medical(p, "dicom")
    except InputError:
        raise InputError(p, "holds no samples.npy, store manifest, fastMRI, NIfTI or DICOM scans") from None


# ----------------------------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------------------------
@dataclass
class _Space:
    """How queries are scored in one comparison space."""

    name: str
    train: ScanSet
    shape: tuple[int, int]
    magnitude: bool  # measurement space: compare magnitudes (some query set has no phase)
    chunk: int = 64
    query_chunk: int = 16
    method: str = "exhaustive"  # or "candidates" (resolve_search)

    def prep(self, images: np.ndarray, what: str, path: Path) -> np.ndarray:
        """Queries as this space needs them: cropped to its grid (magnitude where required)."""
        h, w = self.shape
        if images.shape[-2] < h or images.shape[-1] < w:
            raise InputError(
                path, f"{what} are {images.shape[-2]}x{images.shape[-1]} images, smaller than the {h}x{w} training grid"
            )
        x = np.ascontiguousarray(center_crop(images, self.shape))
        if self.name == "measurement":
            x = np.abs(x).astype(np.complex64) if self.magnitude else x.astype(np.complex64)
        return x

    def references(self) -> Any:
        if self.name == "measurement":
            return self.train.store
        return np.ascontiguousarray(center_crop(self.train.images, self.shape))

    def topk(self, queries: np.ndarray, k: int, groups: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        kw: dict[str, Any] = {}
        if groups is not None:
            kw = {"query_groups": groups, "reference_groups": self.train.subjects}
        s, i = topk_neighbours(queries, self.references(), k, chunk=self.chunk, query_chunk=self.query_chunk,
                               similarity="ncc", method=self.method, candidates=SEARCH_CANDIDATES, **kw)
        return s.numpy(), i.numpy()


def _rms_normalised(x: np.ndarray) -> np.ndarray:
    m = np.abs(x).astype(np.float64)
    rms = np.sqrt((m**2).mean(axis=(-2, -1), keepdims=True))
    return (m / np.where(rms > 0, rms, 1.0)).astype(np.float32)


def _flag_rate(scores: np.ndarray, tau: float) -> float:
    s = scores[np.isfinite(scores)]
    return float((s > tau).mean()) if s.size else float("nan")


def _split_half_negative(held: np.ndarray, subjects: list[str], q: float) -> dict[str, Any] | None:
    """Held-out flag rate with ``τ`` calibrated on the OTHER half of the held-out subjects.

    Returns:
        ``rate``, ``flagged`` and ``n`` (the scans scored, both halves) and ``n_calibration`` (the mean
        size of the calibrating half), or None with fewer than two held-out subjects.
    """
    uniq = sorted(set(subjects))
    if len(uniq) < 2:
        return None
    half = {s for j, s in enumerate(uniq) if j % 2 == 0}
    a = np.array([s in half for s in subjects])
    flagged, scored, cal_sizes = 0, 0, []
    for cal, test in ((a, ~a), (~a, a)):
        tau = threshold_from_heldout(held[cal], q)
        s = held[test][np.isfinite(held[test])]
        flagged += int((s > tau).sum())
        scored += int(s.size)
        cal_sizes.append(int(np.isfinite(held[cal]).sum()))
    if scored == 0:
        return None
    return {"rate": flagged / scored, "flagged": flagged, "n": scored, "n_calibration": float(np.mean(cal_sizes))}


def _score_space(
    space: _Space,
    gen: np.ndarray,
    held: ScanSet,
    samples_path: Path,
    *,
    quantile: float,
    k: int,
    controls: bool,
    seed: int,
    progress: AuditProgress | None,
) -> dict[str, Any]:
    """All numbers of one comparison space (scores are kept as numpy arrays under ``_arrays``)."""
    train = space.train
    n_train = len(train)
    tick = (lambda stage: progress(f"{space.name}: {stage}", 0, 1)) if progress else (lambda stage: None)
    tick("samples")
    gq = space.prep(gen, "the samples", samples_path)
    g_s, g_i = space.topk(gq, k)
    tick("held-out")
    hq = space.prep(held.images, "the held-out scans", held.path)
    h_s, _ = space.topk(hq, 1)
    h_top1 = h_s[:, 0]
    tau = threshold_from_heldout(h_top1, quantile)
    tick("train background")
    bg = np.full(n_train, np.nan)
    bg_note = None
    if len(set(train.subjects or [])) >= 2:
        b_s, _ = space.topk(space.prep(train.images, "the training scans", train.path), 1, groups=train.subjects)
        bg = b_s[:, 0]
    else:
        bg_note = "the training set has one subject: no train-vs-train background"
    g_top1 = g_s[:, 0]
    frac, lo, hi = memorized_fraction(g_top1, tau)
    u, p = mann_whitney(g_top1, h_top1)
    result: dict[str, Any] = {
        "space": space.name,
        "label": SPACE_LABELS[space.name],
        "threshold": tau,
        "memorized_fraction": frac,
        "ci95": [lo, hi],
        "n_flagged": int((g_top1 > tau).sum()),
        "mann_whitney_u": u,
        "p_value": p,
        "training_coverage": training_coverage(g_i[:, 0], g_top1, tau, n_train),
        "generated_top1": _describe(g_top1),
        "heldout_top1": _describe(h_top1),
        "train_background_top1": _describe(bg),
        "train_background_above_tau": _flag_rate(bg, tau),
        "search": {"method": space.method,
                   "candidates": SEARCH_CANDIDATES if space.method == "candidates" else None},
        "notes": [bg_note] if bg_note else [],
        "_arrays": {"gen_s": g_s, "gen_i": g_i, "held": h_top1, "bg": bg},
    }
    if space.method == "candidates":
        result["notes"].append(
            f"two-stage search: a matrix-product candidate search, then the exact score on the {SEARCH_CANDIDATES} "
            "best candidates per query (recall against the exhaustive search: docs/audit.md)")
    if space.name == "measurement":
        result["notes"].append("shifts are not searched in measurement space (a shift does not commute with a mask)")
        if space.magnitude:
            result["notes"].append("some query set has no phase: all queries compared by magnitude")
    if controls:
        tick("controls")
        result["controls"] = _controls(space, held, h_top1, tau, quantile=quantile, seed=seed)
    return result


def _describe(s: np.ndarray) -> dict[str, float | int]:
    f = s[np.isfinite(s)]
    if f.size == 0:
        return {"n": 0}
    return {"n": int(f.size), "mean": float(f.mean()), "median": float(np.median(f)), "max": float(f.max())}


def _controls(
    space: _Space, held: ScanSet, h_top1: np.ndarray, tau: float, *, quantile: float, seed: int
) -> dict[str, Any]:
    """Positive controls (empirical optimal denoiser samples, perturbed copies) and the negative control."""
    train = space.train
    ctrl = np.ascontiguousarray(center_crop(train.images, space.shape))
    source = train.image_source if train.clean else "zero-filled Aᴴy images (no clean training images available)"
    n = int(min(64, max(16, len(train))))
    # the denoiser works at the scale of EDM's sigma_data (0.5); NCC does not care about the scale
    scale = float(np.sqrt(np.mean(np.abs(ctrl) ** 2))) or 1.0
    eod = positive_control_samples(ctrl / (2.0 * scale), n, seed=seed) * (2.0 * scale)
    shift = 0 if space.name == "measurement" else 4
    copies, _ = perturbed_copies(ctrl, n, seed=seed + 1, max_shift=shift)
    rows: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {"heldout_negative": h_top1}
    for name, imgs in (("empirical_optimal_denoiser", eod), ("perturbed_copies", copies)):
        s, _ = space.topk(space.prep(np.asarray(imgs), name, train.path), 1)
        rate = _flag_rate(s[:, 0], tau)
        arrays[name] = s[:, 0]
        rows[name] = {"n": n, "flagged": rate, "target": f">= {POSITIVE_TARGET:.0%}", "passed": rate >= POSITIVE_TARGET}
    rows["perturbed_copies"]["perturbation"] = (
        f"circular shift up to {shift} px, random left-right flip, 2% noise"
    )
    split = _split_half_negative(h_top1, held.subjects or [], quantile)
    negative: dict[str, Any] = {
        "n": int(h_top1.size),
        "flagged": _flag_rate(h_top1, tau),
        "flagged_split_half": split["rate"] if split else None,
        "note": "in-sample rate is about 1 - q by construction (at least one scan of n is above the q-quantile "
        "when n < 1/(1 - q)); the split-half rate calibrates τ on one half of the held-out subjects and scores the "
        "other half, an honest estimate of the false-positive rate; it passes unless its exact 95% interval lies "
        "entirely above the rate expected for τ calibrated on that many scans",
    }
    if split is None:
        negative.update(target="needs held-out scans of at least two subjects", passed=False)
    else:
        expected = expected_false_positive_rate(max(1, round(split["n_calibration"])), quantile)
        lo, hi = clopper_pearson(split["flagged"], split["n"])
        negative.update(
            split_half_flagged=split["flagged"], split_half_n=split["n"], split_half_ci95=[lo, hi],
            expected_rate=expected,
            target=f"about {expected:.1%} (the rate expected for τ calibrated on {split['n_calibration']:.0f} scans "
            f"at q = {quantile:g})",
            passed=bool(lo <= expected),
        )
    rows["heldout_negative"] = negative
    return {"positive_source": source, **rows, "_arrays": arrays}


def _neighbours(
    primary: dict[str, Any], gen: np.ndarray, train: ScanSet, shape: tuple[int, int], k: int
) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """Per-sample top-k neighbours with SSIM re-ranking; Carlini's relative ℓ2 as a second score."""
    g_s, g_i = primary["_arrays"]["gen_s"], primary["_arrays"]["gen_i"]
    tau = primary["threshold"]
    gq = np.ascontiguousarray(center_crop(gen, shape))
    tr = np.ascontiguousarray(center_crop(train.images, shape))
    ratio, _ = relative_l2(_rms_normalised(gq), _rms_normalised(tr), n=min(50, len(tr)))
    ratio = ratio.numpy()
    subjects = train.subjects or ["?"] * len(tr)
    out = []
    for j in range(gq.shape[0]):
        idx = [int(i) for i in g_i[j] if i >= 0]
        ssim = ssim_rerank(gq[j], tr[idx]) if idx else np.zeros(0)
        nbrs = [
            {"index": i, "subject": subjects[i], "score": float(g_s[j, r]), "ssim": float(ssim[r])}
            for r, i in enumerate(idx)
        ]
        order = sorted(range(len(nbrs)), key=lambda r: -nbrs[r]["ssim"])
        out.append({
            "sample": j,
            "top1": float(g_s[j, 0]),
            "flagged": bool(g_s[j, 0] > tau),
            "relative_l2": float(ratio[j]),
            "neighbours": nbrs,
            "ssim_rerank": [nbrs[r]["index"] for r in order],
        })
    return out, ratio


def _match_pairs(
    neighbours: list[dict[str, Any]], gen: np.ndarray, train: ScanSet, shape: tuple[int, int]
) -> list[dict[str, Any]]:
    """The top matches as aligned magnitude pairs for the report (sample, neighbour, difference)."""
    ranked = sorted(neighbours, key=lambda r: -r["top1"])[:TOP_MATCHES]
    pairs = []
    for r in ranked:
        if not r["neighbours"]:
            continue
        nb = r["neighbours"][0]
        g = np.abs(center_crop(gen[r["sample"]], shape)).astype(np.float64)
        t = np.abs(center_crop(train.images[nb["index"]], shape)).astype(np.float64)
        res = ncc_max(g, t, flips=True)
        dy, dx = (int(v) for v in res.shifts[0, 0])
        t = np.roll(t, (dy, dx), axis=(0, 1))
        if bool(res.flipped[0, 0]):
            t = t[:, ::-1]
        g, t = g / (g.max() or 1.0), t / (t.max() or 1.0)
        pairs.append({**r, "match": nb, "sample_image": g, "train_image": t, "difference": g - t})
    return pairs


# ----------------------------------------------------------------------------------------------
# the audit
# ----------------------------------------------------------------------------------------------
def _public(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` without the private ``_arrays`` entries (recursively), for summary.json."""
    return {k: _public(v) if isinstance(v, dict) else v for k, v in d.items() if k != "_arrays"}


def _earlier_audit(folder: Path) -> bool:
    """An ``audit`` output of a version without output markers: its summary and report only."""
    names = {p.name for p in folder.iterdir()}
    if not names <= {"summary.json", "report.html"} or "summary.json" not in names:
        return False
    try:
        return "memorized_fraction" in json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def _pct_text(v: Any) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{float(v):.1%}"


def _checks(
    primary: dict[str, Any], *, n_samples: int, n_heldout: int, quantile: float, controls: bool
) -> list[dict[str, Any]]:
    """Every condition a conclusive verdict needs, each with its measured value, target and ``passed``."""
    need = minimum_scans(quantile)
    why = f"1/(1 − q) at q = {quantile:g}"
    checks: list[dict[str, Any]] = [
        {"check": "samples", "label": "generated scans audited", "measured": n_samples,
         "target": f">= {need} ({why})", "passed": n_samples >= need,
         "problem": f"too few generated scans ({n_samples}; needs at least {need})"},
        {"check": "heldout_scans", "label": "held-out scans calibrating τ", "measured": n_heldout,
         "target": f">= {need} ({why})", "passed": n_heldout >= need,
         "problem": f"too few held-out scans to calibrate the threshold ({n_heldout}; needs at least {need})"},
    ]
    if not controls:
        checks.append({"check": "controls", "label": "positive and negative controls", "measured": None,
                       "target": "run (without --no-controls)", "passed": False,
                       "problem": "its controls were not run (--no-controls)"})
        return checks
    c = primary["controls"]
    for key, label, what in (
        ("empirical_optimal_denoiser", "positive control: empirical optimal denoiser samples flagged",
         "samples of a model that memorizes perfectly"),
        ("perturbed_copies", "positive control: perturbed training copies flagged", "shifted, flipped, noisy copies"),
    ):
        rate = c[key]["flagged"]
        checks.append({"check": key, "label": label, "measured": rate, "target": f">= {POSITIVE_TARGET:.0%}",
                       "passed": bool(c[key]["passed"]),
                       "problem": f"it recognised only {_pct_text(rate)} of known copies ({what}; needs at least "
                       f"{POSITIVE_TARGET:.0%})"})
    neg = c["heldout_negative"]
    rate = neg["flagged_split_half"]
    problem = (
        "its negative control needs held-out scans of at least two patients"
        if rate is None
        else f"it flagged {_pct_text(rate)} of real scans from patients outside the training set "
        f"(expected about {_pct_text(neg.get('expected_rate'))})"
    )
    checks.append({"check": "heldout_negative", "label": "negative control: held-out scans flagged (split-half)",
                   "measured": rate, "target": neg["target"], "passed": bool(neg["passed"]), "problem": problem})
    return checks


def _verdict(
    primary: dict[str, Any], checks: list[dict[str, Any]], *, n_samples: int, n_heldout: int, quantile: float
) -> tuple[str, str, float]:
    """``(verdict, one sentence for a clinician, expected false-positive rate)``.

    ``inconclusive`` when any check failed; else ``memorization_detected`` when the exact 95% interval of
    the flagged fraction lies entirely above the false-positive rate expected of real scans; else
    ``no_evidence_of_memorization``.
    """
    fpr = expected_false_positive_rate(n_heldout, quantile)
    frac, (lo, hi) = primary["memorized_fraction"], primary["ci95"]
    counted = (
        f"{primary['n_flagged']} of {n_samples} generated scans ({frac:.1%}; 95% CI {lo:.1%}–{hi:.1%}) resemble a "
        f"training scan more closely than {quantile * 100:g}% of real scans from patients outside the training set do"
    )
    failed = [c for c in checks if not c["passed"]]
    if failed:
        reasons = "; ".join(c["problem"] for c in failed)
        return "inconclusive", (
            f"Inconclusive: this audit cannot tell whether the model reproduces its training scans, because "
            f"{reasons}; its numbers must not be read as a pass."
        ), fpr
    if lo > fpr:
        return "memorization_detected", (
            f"Memorization detected: {counted}, more than the {fpr:.1%} expected by chance, so the model "
            "reproduces training scans."
        ), fpr
    return "no_evidence_of_memorization", (
        f"No evidence of memorization: {counted}, not significantly more than the {fpr:.1%} expected by chance, "
        "and every control of the audit passed."
    ), fpr


def _comparison(tr: ScanSet, held: ScanSet, gen_set: ScanSet, spaces: list[_Space]) -> tuple[str, list[dict]]:
    """Why the verdict's space was used, and every fallback from what the audit would rather have compared."""
    fallbacks: list[dict[str, str]] = []
    if spaces[0].name == "measurement":
        reason = ("the training set is a corrupted store: the verdict compares the samples with the measurements "
                  "the model was trained on")
        reason += ("; the store's clean references exist, so the clean-image comparison is shown as well" if tr.clean
                   else "")
        if spaces[0].magnitude:
            queries = (("samples", gen_set), ("held-out scans", held))
            phaseless = [f"the {role} ({s.image_source})" for role, s in queries if not np.iscomplexobj(s.images)]
            fallbacks.append({
                "used": "magnitude images, compared in the store's measurement space",
                "instead_of": "complex images compared with the store's complex measurements",
                "reason": f"{' and '.join(phaseless)} have no phase, so every query is compared by its magnitude "
                "(samples and held-out scans alike); magnitudes match complex measurements less well, which lowers "
                "every score",
            })
    else:
        reason = f"the training set ({tr.kind}: {tr.image_source}) holds images, so the verdict compares images"
    if tr.kind == "store" and not tr.clean:
        fallbacks.append({
            "used": "zero-filled Aᴴy training images (positive controls, neighbour pictures)",
            "instead_of": "clean training images",
            "reason": "; ".join(tr.notes) or "the store's clean references are not available",
        })
    if held.kind == "store" and not held.clean:
        fallbacks.append({
            "used": "zero-filled Aᴴy held-out images",
            "instead_of": "clean held-out scans",
            "reason": "; ".join(held.notes) or "the held-out store's clean references are not available",
        })
    return reason, fallbacks


def run_audit(
    samples: str | Path,
    train: str | Path,
    heldout: str | Path,
    out: str | Path,
    *,
    quantile: float = 0.99,
    k: int = 3,
    controls: bool = True,
    seed: int = 0,
    progress: AuditProgress | None = None,
    run: str | Path | None = None,
    probe: str | None = None,
    probe_fraction: float | None = None,
    overwrite: bool = False,
    search: str = "auto",
) -> dict[str, Any]:
    """Audit generated scans for memorization of the training set; write ``summary.json`` and ``report.html``.

    Args:
        samples: generated scans (an ``ambientmri sample`` folder or a ``.npy``; any image input works).
        train: the training set: a corrupted store, fastMRI, NIfTI or DICOM input.
        heldout: real scans of subjects NOT in training, same kinds as ``train``.
        out: the output folder, written as a whole at the end; an existing one is replaced only if
            it is an earlier audit's output, or with ``overwrite``; it may not be, hold or lie inside
            an input (:func:`ambientmri.outputs.output_dir`).
        quantile: ``q`` of the threshold ``τ`` (false-positive rate ``1 − q`` on held-out scans).
        k: neighbours reported per sample.
        controls: run the positive and negative controls.
        seed: seed of the controls and the attack probe.
        progress: ``progress(stage, done, total)``.
        run: the trained run, for the attack probe.
        probe: ``"kspace"`` or ``"pixels"``: run the attack probe (:mod:`ambientmri.audit.probe`)
            with ``run`` on the clean training scans and on the held-out scans.
        probe_fraction: fraction kept by the probe (default 0.1 of k-space, 0.9 of pixels).
        overwrite: replace an existing ``out`` that is not an earlier audit's output.
        search: ``"exhaustive"`` scores every (query, training slice) pair; ``"candidates"`` scores
            exactly only the best :data:`SEARCH_CANDIDATES` of a matrix-product candidate search
            (:mod:`ambientmri.audit.candidates`); ``"auto"`` (default) is exhaustive up to
            :data:`AUTO_CANDIDATES_ABOVE` training slices, candidates above (:func:`resolve_search`).

    Returns:
        The summary (also written to ``out/summary.json``). ``verdict`` is one of :data:`VERDICTS`:
        ``inconclusive`` when any entry of ``checks`` failed (too few samples or held-out scans for
        ``quantile``, a positive control below 95%, the split-half negative control above its expected
        rate, controls not run; the failed ones are repeated in ``failed_controls``), else
        ``memorization_detected`` when the flagged fraction's exact 95% interval lies above
        ``expected_false_positive_rate``, else ``no_evidence_of_memorization``. ``verdict_sentence``
        says it in one sentence; ``space_reason`` and ``fallbacks`` say what was compared and why.

    Raises:
        InputError / ValueError: unreadable inputs, overlapping subjects, bad settings.
    """
    from ambientmri.outputs import check_output_dir

    t0 = time.perf_counter()
    if not 0.0 < float(quantile) < 1.0:
        raise ValueError(f"--quantile must be in (0, 1), got {quantile}")
    if int(k) < 1:
        raise ValueError(f"--k must be >= 1, got {k}")
    if search not in SEARCHES:
        raise ValueError(f"--search must be one of {', '.join(SEARCHES)}, got {search!r}")
    paths = [Path(samples), Path(train), Path(heldout)]
    guard: dict[str, Any] = {"inputs": [*paths, run], "overwrite": overwrite, "recognise": _earlier_audit}
    check_output_dir(out, "audit", **guard)
    gen_set, tr, held = _load_inputs(paths)
    gen = gen_set.images
    spaces = _spaces(tr, gen, held, search)
    results = {
        sp.name: _score_space(sp, gen, held, gen_set.path, quantile=quantile, k=k, controls=controls, seed=seed,
                              progress=progress)
        for sp in spaces
    }
    primary = results[spaces[0].name]
    # neighbours' images: clean training images where there are any, else the zero-filled ones
    img_shape = spaces[-1].shape if spaces[-1].name == "image" else spaces[0].shape
    neighbours, _ = _neighbours(primary, gen, tr, img_shape, k)
    pairs = _match_pairs(neighbours, gen, tr, img_shape)
    settings = {"quantile": quantile, "k": k, "controls": controls, "seed": seed, "search": search,
                "search_methods": {sp.name: sp.method for sp in spaces}, "ci": "exact Clopper–Pearson, 95%"}
    summary = _summarise(results, primary, spaces, (gen_set, tr, held), neighbours, settings)
    if probe is not None:
        _attack(summary, tr, held, run, probe, probe_fraction, seed)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    _write_audit(out, guard, summary, results, pairs, controls)
    for s in (tr, held):
        if s.store is not None:
            s.store.close()
    return summary


def _load_inputs(paths: list[Path]) -> tuple[ScanSet, ScanSet, ScanSet]:
    """The generated, training and held-out sets, checked: subjects known, two held-out scans, disjoint."""
    gen_set, tr, held = (load_scan_set(p) for p in paths)
    for s, role in ((tr, "training"), (held, "held-out")):
        if s.subjects is None:
            raise InputError(
                s.path, f"the {role} set needs subject identifiers: give a store, fastMRI, NIfTI or DICOM input"
            )
    if len(held) < 2:
        raise InputError(held.path, "the threshold needs at least two held-out scans")
    try:
        check_subject_disjoint(tr.subjects or [], held.subjects or [])
    except ValueError as exc:
        raise InputError(held.path, str(exc)) from None
    return gen_set, tr, held


def _spaces(tr: ScanSet, gen: np.ndarray, held: ScanSet, search: str) -> list[_Space]:
    """What is compared: the store's measurement space first (if a store), then clean images (if any)."""
    spaces: list[_Space] = []
    if tr.kind == "store":
        magnitude = not (np.iscomplexobj(gen) and np.iscomplexobj(held.images))
        spaces.append(_Space("measurement", tr, tuple(tr.store.grid), magnitude,
                             method=resolve_search(search, "measurement", len(tr))))
    if tr.kind != "store" or tr.clean:
        shape = (min(a.shape[-2] for a in (gen, tr.images, held.images)),
                 min(a.shape[-1] for a in (gen, tr.images, held.images)))
        spaces.append(_Space("image", tr, shape, True, method=resolve_search(search, "image", len(tr))))
    return spaces


def _summarise(results: dict[str, Any], primary: dict[str, Any], spaces: list[_Space],
               sets: tuple[ScanSet, ScanSet, ScanSet], neighbours: list[dict[str, Any]],
               settings: dict[str, Any]) -> dict[str, Any]:
    """The summary: the verdict and its checks, the finding, every space's numbers, the inputs."""
    from ambientmri.sampling.outputs import samples_checkpoint_hash  # the model that made the samples, for export

    gen_set, tr, held = sets
    n_samples, quantile, controls = len(gen_set), settings["quantile"], settings["controls"]
    frac, (lo, hi) = primary["memorized_fraction"], primary["ci95"]
    finding = (
        f"{frac:.1%} of {n_samples} generated scans (95% CI {lo:.1%}–{hi:.1%}) are closer to a training scan than "
        f"{quantile * 100:g}% of held-out real scans are (τ = {primary['threshold']:.4f}, {primary['label']})."
    )
    if len(results) > 1:
        other = results["image"]
        finding += (
            f" Clean-image comparison: {other['memorized_fraction']:.1%} (95% CI {other['ci95'][0]:.1%}–"
            f"{other['ci95'][1]:.1%}, τ = {other['threshold']:.4f})."
        )
    notes = [*tr.notes, *held.notes]
    if tr.kind == "store" and not tr.clean:
        notes.append("clean-image comparison not run: the store's clean references are not available")
    counts = {"n_samples": n_samples, "n_heldout": len(held), "quantile": quantile}
    checks = _checks(primary, controls=controls, **counts)
    verdict, sentence, fpr = _verdict(primary, checks, **counts)
    for name, r in results.items():  # the other space's controls, for its own section of the report
        if name != primary["space"]:
            r["failed_controls"] = [c for c in _checks(r, controls=controls, **counts) if not c["passed"]]
    space_reason, fallbacks = _comparison(tr, held, gen_set, spaces)
    summary: dict[str, Any] = {
        "verdict": verdict,
        "verdict_sentence": sentence,
        "failed_controls": [c for c in checks if not c["passed"]],
        "checks": checks,
        "finding": finding,
        "expected_false_positive_rate": fpr,
        "memorized_fraction": frac,
        "ci95": [lo, hi],
        "threshold": primary["threshold"],
        "n_samples": n_samples,
        "n_train": len(tr),
        "n_heldout": len(held),
        "p_value": primary["p_value"],
        "mann_whitney_u": primary["mann_whitney_u"],
        "training_coverage": primary["training_coverage"],
        "space": primary["space"],
        "space_label": primary["label"],
        "space_reason": space_reason,
        "fallbacks": fallbacks,
        "spaces_used": [sp.name for sp in spaces],
        "controls": _public(primary["controls"]) if controls else None,
        "spaces": {name: _public(r) for name, r in results.items()},
        "settings": settings,
        "inputs": {
            role: {"path": str(s.path), "kind": s.kind, "slices": len(s), "images": s.image_source,
                   "subjects": len(set(s.subjects)) if s.subjects else None}
            for role, s in (("samples", gen_set), ("train", tr), ("heldout", held))
        },
        "relative_l2": {
            "description": "Carlini's ‖q − r1‖ / (0.5 · mean of the 50 nearest), magnitudes normalised to unit RMS, "
            "no shift search; < 1 suggests a copy",
            "below_1": float(np.mean([r["relative_l2"] < 1.0 for r in neighbours])),
        },
        "notes": notes,
        "neighbours": neighbours,
    }
    summary["inputs"]["samples"]["checkpoint_hash"] = samples_checkpoint_hash(gen_set.path)
    return summary


def _attack(summary: dict[str, Any], tr: ScanSet, held: ScanSet, run: str | Path | None, probe: str,
            probe_fraction: float | None, seed: int) -> None:
    """The attack probe with ``run`` on the clean training and held-out scans, into ``summary``."""
    if run is None:
        raise ValueError("--probe needs --run RUN (the model to attack)")
    if not tr.clean:
        summary["attack_probe"] = None
        summary["notes"].append("attack probe skipped: it needs clean training scans, and only Aᴴy images are "
                                "available")
        return
    from ambientmri.audit.probe import attack_probe
    from ambientmri.sampling.runs import load_run

    loaded = load_run(run)
    shape = tuple(loaded.image_shape)
    fraction = probe_fraction if probe_fraction is not None else (0.1 if probe == "kspace" else 0.9)
    train_imgs = center_crop(np.asarray(tr.images), shape).astype(np.complex64)
    held_imgs = center_crop(np.asarray(held.images), shape).astype(np.complex64)
    if train_imgs.shape[-2:] != shape or held_imgs.shape[-2:] != shape:
        raise ValueError(f"attack probe: the scans are smaller than the model's grid {list(shape)}")
    summary["attack_probe"] = attack_probe(loaded, train_imgs, held_imgs, keep=probe, fraction=fraction, seed=seed)


def _write_audit(out: str | Path, guard: dict[str, Any], summary: dict[str, Any], results: dict[str, Any],
                 pairs: list[dict[str, Any]], controls: bool) -> None:
    """``summary.json`` and ``report.html`` into ``out``, as a whole."""
    from ambientmri.audit.report import write_report
    from ambientmri.outputs import output_dir
    from ambientmri.utils import write_json_atomic, write_text_atomic

    plots = {
        name: {**r["_arrays"], "controls": r["controls"]["_arrays"] if controls else None}
        for name, r in results.items()
    }
    html = write_report(summary, plots, pairs, out=out)
    with output_dir(out, "audit", **guard) as tmp:
        write_json_atomic(tmp / "summary.json", summary)
        write_text_atomic(tmp / "report.html", html)

_zero_filled = zero_filled_images  # the former private name, kept for existing callers
