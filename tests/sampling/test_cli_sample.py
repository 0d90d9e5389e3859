"""`ambientmri sample`: files, determinism, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import nibabel as nib
import numpy as np
import pytest

from ambientmri.recipes import validate_recipe
from ambientmri.training.run import train_run

TINY = {
    "name": "tiny",
    "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "knee", "volumes": 2, "heldout_volumes": 0,
             "slices": 2, "matrix": [32, 16], "crop": [16, 16], "seed": 3},
    "corruption": {"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
    "model": {"kind": "mlp", "hidden": [32], "embedding_dim": 16},
    "training": {"steps": 2, "batch_size": 4, "log_every": 1, "eval_every": 0, "device": "cpu"},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("sample_run") / "run"
    train_run(validate_recipe(TINY, "tiny"), run)
    return run


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ambientmri", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_sample_writes_every_output_and_is_deterministic(tiny_run, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        proc = _cli("sample", str(tiny_run), "--num", "3", "--out", str(out), "--steps", "4", "--seed", "5",
                    "--device", "cpu")
        assert proc.returncode == 0, proc.stderr
    x = np.load(a / "samples.npy")
    assert x.shape == (3, 16, 16) and x.dtype == np.complex64 and np.isfinite(x).all()
    np.testing.assert_array_equal(x, np.load(b / "samples.npy"))
    with h5py.File(a / "samples.h5") as f:
        np.testing.assert_array_equal(f["samples"][()], x)
        assert json.loads(f.attrs["meta"])["seed"] == 5
    vol = np.asarray(nib.load(a / "samples.nii.gz").dataobj)
    np.testing.assert_allclose(vol.transpose(2, 0, 1), np.abs(x), rtol=1e-6)
    meta = json.loads((a / "meta.json").read_text())
    assert meta["nfe_per_sample"] == 7 and meta["objective"] == "ambient"
    assert (a / "grid.png").stat().st_size > 1000
    other = _cli("sample", str(tiny_run), "--num", "3", "--out", str(tmp_path / "c"), "--steps", "4", "--seed", "6",
                 "--device", "cpu")
    assert other.returncode == 0
    assert not np.allclose(np.load(tmp_path / "c" / "samples.npy"), x)


def test_sample_from_a_missing_run_is_one_line(tmp_path):
    proc = _cli("sample", str(tmp_path / "nope"), "--num", "2", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "nope" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_compare_samples_reports_and_flags(tiny_run, tmp_path):
    out = tmp_path / "s"
    made = _cli("sample", str(tiny_run), "--num", "6", "--out", str(out), "--steps", "3", "--device", "cpu")
    assert made.returncode == 0, made.stderr
    proc = _cli("compare-samples", "--samples", str(out), "--reference", str(tiny_run / "data" / "raw" / "train"),
                "--store", str(tiny_run / "data" / "store"), "--json", str(tmp_path / "r.json"),
                "--plot", str(tmp_path / "r.png"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["num_generated"] == 6 and report["num_reference"] == 4
    assert report["swd"]["mean"] > 0 and report["unmeasured_energy"] is not None
    # each number is explained in words, with its value, one line each (not wrapped without a terminal)
    lines = proc.stdout.splitlines()
    said = {key: [x for x in lines if x.startswith(f"- {key}")] for key in
            ("patch SWD", "radial power-spectrum distance", "pixels at zero", "energy where training rarely sampled")}
    assert all(len(v) == 1 for v in said.values()), said
    assert f"{report['swd']['mean']:.4g}" in said["patch SWD"][0]
    assert "blur" in said["radial power-spectrum distance"][0]
    # the figure: 4 generated beside 4 held-out scans, the spectra and the energy bar
    import matplotlib.image

    png = matplotlib.image.imread(tmp_path / "r.png")
    assert png.shape[1] == round((2.2 * 4 + 8.5) * 80) and png.shape[0] == 5 * 80
    again = _cli("compare-samples", "--samples", str(out), "--reference", str(tiny_run / "data" / "raw" / "train"),
                 "--plot", str(tmp_path / "r.json"))
    assert again.returncode == 2 and "--plot" in again.stderr  # a file it did not write is never replaced
    bad = _cli("compare-samples", "--samples", str(tmp_path / "nothing"), "--reference", str(out))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
