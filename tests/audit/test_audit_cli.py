"""End-to-end tests of ``ambientmri audit`` on tiny synthetic cohorts (run as a subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ambientmri.cli import EXIT_AUDIT_INCONCLUSIVE, EXIT_BAD_INPUT, EXIT_MEMORIZATION_DETECTED

EXPECTED_KEYS = {
    "verdict", "verdict_sentence", "failed_controls", "checks", "finding", "memorized_fraction", "ci95",
    "threshold", "n_samples", "p_value", "training_coverage", "space", "space_reason", "fallbacks", "spaces_used",
    "controls", "inputs", "settings", "neighbours",
}


def _audit(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "ambientmri", "audit", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=120,
    )


def _targets(folder: Path) -> np.ndarray:
    from ambientmri.data.fastmri import FastMRIFile

    return np.concatenate([FastMRIFile(p).target_all() for p in sorted(folder.glob("*.h5"))])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, Path]:
    """Train (4 subjects x 4 slices), held-out and fresh cohorts, 64x32 k-space -> 32x32 images."""
    import torch

    from ambientmri.audit.controls import perturbed_copies
    from ambientmri.data.synth import synth_cohort

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("audit")
    kw = {"challenge": "singlecoil", "volumes": 4, "slices": 4, "matrix": (64, 32), "anatomy": "brain"}
    synth_cohort(root / "train", seed=0, split="train", **kw)
    synth_cohort(root / "held", seed=0, split="val", **kw)
    synth_cohort(root / "fresh", seed=7, split="val", **kw)
    copies, _ = perturbed_copies(_targets(root / "train"), 16, seed=3)
    np.save(root / "copies.npy", copies)
    np.save(root / "fresh.npy", _targets(root / "fresh"))
    return {k: root / k for k in ("train", "held", "fresh")} | {
        "copies": root / "copies.npy", "fresh_npy": root / "fresh.npy", "root": root,
    }


def test_copies_are_flagged_and_report_is_complete(cohort, tmp_path: Path) -> None:
    """16 copies against 16 held-out scans at q = 0.9 (1/(1 - q) = 10 scans suffice): memorization detected."""
    out = tmp_path / "audit"
    res = _audit("--samples", cohort["copies"], "--train", cohort["train"], "--heldout", cohort["held"], "--out", out,
                 "--quantile", "0.9")
    assert res.returncode == EXIT_MEMORIZATION_DETECTED, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert EXPECTED_KEYS <= set(summary)
    assert summary["verdict"] == "memorization_detected" and summary["failed_controls"] == []
    assert summary["verdict_sentence"].startswith("Memorization detected: 16 of 16 generated scans")
    assert all(c["passed"] for c in summary["checks"]) and len(summary["checks"]) == 5
    assert summary["ci95"][0] > summary["expected_false_positive_rate"]
    assert summary["fallbacks"] == [] and "holds images" in summary["space_reason"]
    assert summary["n_samples"] == 16 and summary["space"] == "image"
    assert summary["memorized_fraction"] >= 0.9
    lo, hi = summary["ci95"]
    assert lo <= summary["memorized_fraction"] <= hi
    assert 0.0 < summary["threshold"] <= 1.0
    assert summary["p_value"] < 0.01
    c = summary["controls"]
    assert c["empirical_optimal_denoiser"]["flagged"] >= 0.95
    assert c["perturbed_copies"]["flagged"] >= 0.95
    assert c["heldout_negative"]["flagged"] <= 0.25
    # neighbours are identified by index and pseudonym only
    nb = summary["neighbours"][0]["neighbours"]
    assert len(nb) == 3 and all(n["subject"].startswith("sub-") for n in nb)
    assert "synth-subject" not in (out / "summary.json").read_text()
    html = (out / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') >= 3
    body = html.split("<body>")[1]
    assert body.index(summary["verdict_sentence"]) < body.index("<h2>")  # the verdict comes first
    assert summary["finding"].split(" (95% CI")[0] in html
    assert "synth-subject" not in html and "http" not in body
    assert "memorized fraction" in res.stdout and "95% CI" in res.stdout and "Memorization detected" in res.stdout


def test_fresh_scans_are_flagged_less(cohort, tmp_path: Path) -> None:
    """Without controls, and with 16 held-out scans for q = 0.95 (which needs 20), the verdict is inconclusive."""
    out = tmp_path / "fresh"
    res = _audit("--samples", cohort["fresh_npy"], "--train", cohort["train"], "--heldout", cohort["held"],
                 "--out", out, "--no-controls", "--quantile", "0.95")
    assert res.returncode == EXIT_AUDIT_INCONCLUSIVE, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["memorized_fraction"] <= 0.5
    assert summary["controls"] is None
    assert summary["settings"]["quantile"] == 0.95
    assert summary["verdict"] == "inconclusive"
    failed = {c["check"]: c for c in summary["failed_controls"]}
    assert set(failed) == {"samples", "heldout_scans", "controls"}
    assert failed["heldout_scans"]["measured"] == 16 and failed["heldout_scans"]["target"].startswith(">= 20")
    assert summary["verdict_sentence"].startswith("Inconclusive:") and "--no-controls" in summary["verdict_sentence"]
    assert "failed: held-out scans calibrating τ: 16 (target >= 20" in " ".join(res.stdout.split())


def test_overlapping_subjects_are_refused(cohort, tmp_path: Path) -> None:
    out = tmp_path / "overlap"
    res = _audit("--samples", cohort["copies"], "--train", cohort["train"], "--heldout", cohort["train"], "--out", out)
    assert res.returncode == EXIT_BAD_INPUT
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "subject" in lines[0] and str(cohort["train"].name) in lines[0]
    assert not out.exists()


def test_missing_input_is_one_line(cohort, tmp_path: Path) -> None:
    res = _audit("--samples", tmp_path / "nope", "--train", cohort["train"], "--heldout", cohort["held"],
                 "--out", tmp_path / "o")
    assert res.returncode == 2
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1 and "nope" in res.stderr


def test_store_as_train_measurement_space(cohort, make_recipe, tmp_path: Path) -> None:
    """A store whose sources are gone: measurement space only, controls from zero-filled images."""
    from ambientmri.audit.controls import perturbed_copies
    from ambientmri.data.references import clean_reference
    from ambientmri.data.store import CorruptedStore, prepare_store

    rec = make_recipe({"kind": "inpainting", "p": 0.3, "delta": 0.1}, {"kind": "fastmri", "crop": [32, 32]})
    src = tmp_path / "src"
    shutil.copytree(cohort["train"], src)
    prepare_store(src, tmp_path / "store", rec, workers=1)
    prepare_store(cohort["held"], tmp_path / "hstore", rec, workers=1)
    store = CorruptedStore(tmp_path / "store")
    clean = np.stack([clean_reference(store, i) for i in range(len(store))])
    store.close()
    copies, _ = perturbed_copies(clean, 12, seed=1, max_shift=0)  # measurement space has no shift search
    np.save(tmp_path / "samples.npy", copies * np.exp(0.7j).astype(np.complex64))
    shutil.rmtree(src)  # no clean references any more
    out = tmp_path / "audit"
    res = _audit("--samples", tmp_path / "samples.npy", "--train", tmp_path / "store", "--heldout",
                 tmp_path / "hstore", "--out", out)
    assert res.returncode == EXIT_AUDIT_INCONCLUSIVE, res.stderr  # 12 samples, 16 held-out scans: q = 0.99 needs 100
    summary = json.loads((out / "summary.json").read_text())
    assert {c["check"] for c in summary["failed_controls"]} == {"samples", "heldout_scans"}
    assert summary["space"] == "measurement" and summary["spaces_used"] == ["measurement"]
    assert "corrupted store" in summary["space_reason"]
    (fallback,) = summary["fallbacks"]  # complex samples and held-out store: only the controls fall back
    assert fallback["instead_of"] == "clean training images" and "zero-filled" in fallback["used"]
    assert summary["memorized_fraction"] >= 0.9
    assert "zero-filled" in summary["controls"]["positive_source"]
    assert summary["controls"]["empirical_optimal_denoiser"]["flagged"] >= 0.95
    html = (out / "report.html").read_text()
    assert "corrupted store (measurement space)" in html and "Fallback:" in html
    assert html.count('<img src="data:image/png;base64,') >= 2


def test_attack_probe_from_the_cli(tmp_path):
    from ambientmri.recipes import validate_recipe
    from ambientmri.training.run import train_run

    tree = {
        "name": "tiny",
        "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "brain", "volumes": 3,
                 "heldout_volumes": 3, "slices": 2, "matrix": [64, 32], "crop": [32, 32], "seed": 2},
        "corruption": {"kind": "inpainting", "p": 0.5, "delta": 0.1},
        "model": {"kind": "mlp", "hidden": [16], "embedding_dim": 8},
        "training": {"steps": 2, "batch_size": 4, "eval_every": 0, "device": "cpu"},
    }
    run = tmp_path / "run"
    train_run(validate_recipe(tree, "tiny"), run)
    raw = run / "data" / "raw"
    samples = tmp_path / "samples.npy"
    np.save(samples, np.ones((4, 32, 32), np.complex64) + 0.1 * np.arange(4)[:, None, None])
    out = tmp_path / "audit"
    proc = subprocess.run(
        [sys.executable, "-m", "ambientmri", "audit", "--samples", str(samples), "--train", str(raw / "train"),
         "--heldout", str(raw / "heldout"), "--out", str(out), "--no-controls", "--run", str(run),
         "--probe", "pixels"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == EXIT_AUDIT_INCONCLUSIVE, proc.stderr  # --no-controls: never conclusive
    summary = json.loads((out / "summary.json").read_text())
    probe = summary["attack_probe"]
    assert probe["keep"] == "pixels" and probe["fraction"] == 0.9 and probe["n_train"] == 6
    assert "Attack probe" in (out / "report.html").read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "ambientmri", "audit", "--samples", str(samples), "--train", str(raw / "train"),
         "--heldout", str(raw / "heldout"), "--out", str(tmp_path / "a2"), "--probe", "kspace"],
        capture_output=True, text=True,
    )
    assert bad.returncode == 2 and "--run" in bad.stderr and not (tmp_path / "a2").exists()


def test_nifti_folders_as_train_and_heldout(tmp_path):
    from ambientmri.data.medical import write_nifti
    from ambientmri.data.synth import phantom

    def image(i: int) -> np.ndarray:
        img = np.abs(phantom("brain", (32, 32), np.random.default_rng(i)))
        return (img + 0.01 * np.random.default_rng(1000 + i).standard_normal(img.shape)).astype(np.float32)

    for folder, offset in (("train", 0), ("heldout", 100)):
        (tmp_path / folder).mkdir()
        for s in range(4):
            write_nifti(tmp_path / folder / f"sub{offset + s:03d}.nii.gz", np.stack([image(offset + s)] * 2))
    samples = tmp_path / "samples.npy"
    np.save(samples, np.stack([image(1), image(2)]).astype(np.complex64))
    out = tmp_path / "audit"
    proc = subprocess.run(
        [sys.executable, "-m", "ambientmri", "audit", "--samples", str(samples), "--train", str(tmp_path / "train"),
         "--heldout", str(tmp_path / "heldout"), "--out", str(out), "--no-controls"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == EXIT_AUDIT_INCONCLUSIVE, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["train"]["kind"] == "nifti" and summary["n_train"] == 8
    assert summary["n_samples"] == 2


# -- the verdict (issue 11 §4) -----------------------------------------------------------------------
def _summary_and_html(out: Path) -> tuple[dict, str]:
    return json.loads((out / "summary.json").read_text()), (out / "report.html").read_text()


def test_too_few_scans_for_the_quantile_is_inconclusive(cohort, tmp_path: Path) -> None:
    """Perfect copies, but 16 samples and 16 held-out scans cannot resolve q = 0.99: never a pass."""
    out = tmp_path / "audit"
    res = _audit("--samples", cohort["copies"], "--train", cohort["train"], "--heldout", cohort["held"], "--out", out)
    assert res.returncode == EXIT_AUDIT_INCONCLUSIVE, res.stderr
    summary, html = _summary_and_html(out)
    assert summary["verdict"] == "inconclusive"
    failed = {c["check"]: c for c in summary["failed_controls"]}
    assert set(failed) == {"samples", "heldout_scans"}
    assert failed["samples"]["measured"] == 16 and failed["samples"]["target"].startswith(">= 100")
    assert "too few held-out scans to calibrate the threshold (16; needs at least 100)" in summary["verdict_sentence"]
    body = html.split("<body>")[1]
    assert body.index("Inconclusive:") < body.index("Failed checks (2)") < body.index("Top matches")
    assert "Inconclusive" in res.stdout


def test_no_evidence_verdict_exits_0_with_an_exact_interval(cohort, tmp_path: Path) -> None:
    from scipy.stats import binomtest

    out = tmp_path / "audit"
    res = _audit("--samples", cohort["fresh_npy"], "--train", cohort["train"], "--heldout", cohort["held"],
                 "--out", out, "--quantile", "0.9")
    assert res.returncode == 0, res.stderr
    summary, html = _summary_and_html(out)
    assert summary["verdict"] == "no_evidence_of_memorization" and summary["failed_controls"] == []
    assert summary["verdict_sentence"].startswith("No evidence of memorization:")
    k = summary["spaces"]["image"]["n_flagged"]
    ci = binomtest(k, 16).proportion_ci(method="exact")
    assert summary["ci95"] == pytest.approx([ci.low, ci.high])
    assert summary["ci95"][0] <= summary["expected_false_positive_rate"]
    assert summary["settings"]["ci"].startswith("exact Clopper–Pearson")
    assert "verdict-no_evidence_of_memorization" in html


def test_failing_negative_control_is_inconclusive(phantom_cohort, tmp_path: Path) -> None:
    """Two of four 'held-out' subjects are training subjects under other names: the split-half negative
    control flags about half of the held-out scans against its ~19% target."""
    from ambientmri.data.medical import write_nifti

    train, _ = phantom_cohort(4, 4, (32, 32), 11)
    fresh, _ = phantom_cohort(2, 4, (32, 32), 12)
    train, fresh = np.abs(train).astype(np.float32), np.abs(fresh).astype(np.float32)
    rng = np.random.default_rng(0)
    for folder, vols in (("train", [train[4 * s:4 * s + 4] for s in range(4)]),
                         ("held", [train[0:4], fresh[0:4], train[4:8], fresh[4:8]])):  # sub100, sub102: copies
        (tmp_path / folder).mkdir()
        for s, v in enumerate(vols):
            noisy = v + 0.005 * rng.standard_normal(v.shape).astype(np.float32)
            write_nifti(tmp_path / folder / f"sub{100 * (folder == 'held') + s:03d}.nii.gz", noisy)
    samples, _ = phantom_cohort(4, 4, (32, 32), 13)
    np.save(tmp_path / "samples.npy", samples)
    out = tmp_path / "audit"
    res = _audit("--samples", tmp_path / "samples.npy", "--train", tmp_path / "train", "--heldout",
                 tmp_path / "held", "--out", out, "--quantile", "0.9")
    assert res.returncode == EXIT_AUDIT_INCONCLUSIVE, res.stderr
    summary, html = _summary_and_html(out)
    checks = {c["check"]: c for c in summary["failed_controls"]}
    failed = checks["heldout_negative"]  # (τ is inflated by the copies, so a positive control may fail too)
    assert failed["measured"] == pytest.approx(0.5)
    assert "18.9%" in failed["target"] and "real scans from patients outside" in summary["verdict_sentence"]
    neg = summary["controls"]["heldout_negative"]
    assert neg["passed"] is False and neg["split_half_ci95"][0] > neg["expected_rate"]
    assert "FAIL" in html.split("Failed checks")[1].split("</table>")[0]


def test_failing_positive_controls_and_the_magnitude_fallback(cohort, make_recipe, tmp_path: Path) -> None:
    """A store as the training set with magnitude held-out scans and samples (issue 11: positive controls at
    56% / 53%): the measurement space falls back to magnitudes, the copies are missed, the verdict is inconclusive."""
    from ambientmri.data.store import prepare_store

    rec = make_recipe({"kind": "inpainting", "p": 0.3, "delta": 0.1}, {"kind": "fastmri", "crop": [32, 32]})
    prepare_store(cohort["train"], tmp_path / "store", rec, workers=1)
    out = tmp_path / "audit"
    res = _audit("--samples", cohort["fresh_npy"], "--train", tmp_path / "store", "--heldout", cohort["held"],
                 "--out", out, "--quantile", "0.9")
    assert res.returncode == EXIT_AUDIT_INCONCLUSIVE, res.stderr
    summary, html = _summary_and_html(out)
    assert summary["space"] == "measurement" and summary["verdict"] == "inconclusive"
    failed = {c["check"]: c for c in summary["failed_controls"]}
    assert failed and set(failed) <= {"empirical_optimal_denoiser", "perturbed_copies"}
    assert all(c["measured"] < 0.95 and c["target"] == ">= 95%" for c in failed.values())
    assert "known copies" in summary["verdict_sentence"]
    (fallback,) = summary["fallbacks"]
    assert fallback["used"].startswith("magnitude images") and "have no phase" in fallback["reason"]
    assert "fastMRI targets" in fallback["reason"]
    assert "Fallback:</b> magnitude images" in html and "fallback: magnitude images" in res.stdout
