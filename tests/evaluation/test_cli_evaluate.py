"""`ambientmri evaluate`: the table, JSON and CSV, and one-line errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import h5py
import numpy as np

from ambientmri.data.synth import synth_cohort
from ambientmri.evaluation.metrics import nmse, psnr, ssim


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ambientmri", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_evaluate_end_to_end(tmp_path):
    targets = tmp_path / "targets"
    synth_cohort(targets, challenge="multicoil", volumes=2, slices=2, matrix=(64, 32), coils=2, seed=4)
    preds = tmp_path / "preds"
    preds.mkdir()
    expected = {}
    for i, path in enumerate(sorted(targets.glob("*.h5"))):
        with h5py.File(path) as f:
            gt = f["reconstruction_rss"][()]
        pred = (gt * (0.9 + 0.05 * i)).astype(np.float32)
        with h5py.File(preds / path.name, "w") as f:
            f.create_dataset("reconstruction", data=pred)
        expected[path.name] = (nmse(gt, pred), psnr(gt, pred), ssim(gt, pred))
    proc = _cli("evaluate", "--targets", str(targets), "--predictions", str(preds), "--json",
                str(tmp_path / "m.json"), "--csv", str(tmp_path / "m.csv"))
    assert proc.returncode == 0, proc.stderr
    assert "mean" in proc.stdout
    result = json.loads((tmp_path / "m.json").read_text())
    assert set(result["volumes"]) == set(expected)
    for name, (n, p, s) in expected.items():
        assert np.isclose(result["volumes"][name]["nmse"], n, rtol=1e-6)
        assert np.isclose(result["volumes"][name]["psnr"], p, rtol=1e-6)
        assert np.isclose(result["volumes"][name]["ssim"], s, rtol=1e-6)
    assert np.isclose(result["mean"]["psnr"], np.mean([v[1] for v in expected.values()]), rtol=1e-6)
    rows = list(csv.reader((tmp_path / "m.csv").open()))
    assert len(rows) >= 3


def test_evaluate_missing_prediction_is_one_line(tmp_path):
    targets = tmp_path / "targets"
    synth_cohort(targets, challenge="singlecoil", volumes=1, slices=1, matrix=(32, 16), seed=1)
    (tmp_path / "preds").mkdir()
    proc = _cli("evaluate", "--targets", str(targets), "--predictions", str(tmp_path / "preds"), "--json",
                str(tmp_path / "m.json"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.json").exists()
