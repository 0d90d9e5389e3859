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

EXPECTED_KEYS = {
    "verdict", "memorized_fraction", "ci95", "threshold", "n_samples", "p_value", "training_coverage",
    "space", "spaces_used", "controls", "inputs", "settings", "neighbours",
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
    out = tmp_path / "audit"
    res = _audit("--samples", cohort["copies"], "--train", cohort["train"], "--heldout", cohort["held"], "--out", out)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert EXPECTED_KEYS <= set(summary)
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
    assert summary["verdict"].split(" (95% CI")[0] in html
    assert "synth-subject" not in html and "http" not in html.split("<body>")[1]
    assert "memorized fraction" in res.stdout and "95% CI" in res.stdout


def test_fresh_scans_are_flagged_less(cohort, tmp_path: Path) -> None:
    out = tmp_path / "fresh"
    res = _audit("--samples", cohort["fresh_npy"], "--train", cohort["train"], "--heldout", cohort["held"],
                 "--out", out, "--no-controls", "--quantile", "0.95")
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["memorized_fraction"] <= 0.5
    assert summary["controls"] is None
    assert summary["settings"]["quantile"] == 0.95


def test_overlapping_subjects_are_refused(cohort, tmp_path: Path) -> None:
    out = tmp_path / "overlap"
    res = _audit("--samples", cohort["copies"], "--train", cohort["train"], "--heldout", cohort["train"], "--out", out)
    assert res.returncode == 2
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
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["space"] == "measurement" and summary["spaces_used"] == ["measurement"]
    assert summary["memorized_fraction"] >= 0.9
    assert "zero-filled" in summary["controls"]["positive_source"]
    assert summary["controls"]["empirical_optimal_denoiser"]["flagged"] >= 0.95
    html = (out / "report.html").read_text()
    assert "corrupted store (measurement space)" in html
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
    assert proc.returncode == 0, proc.stderr
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
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["train"]["kind"] == "nifti" and summary["n_train"] == 8
    assert summary["n_samples"] == 2
