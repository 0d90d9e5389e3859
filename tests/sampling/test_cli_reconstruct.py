"""`ambientmri reconstruct` with every method, then `ambientmri evaluate` on its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from ambientmri.data.synth import synth_cohort
from ambientmri.recipes import validate_recipe
from ambientmri.training.run import train_run

TINY = {
    "name": "tiny",
    "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "knee", "volumes": 2, "heldout_volumes": 0,
             "slices": 2, "matrix": [64, 32], "crop": [32, 32], "seed": 3},
    "corruption": {"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
    "model": {"kind": "mlp", "hidden": [32], "embedding_dim": 16},
    "training": {"steps": 2, "batch_size": 4, "log_every": 1, "eval_every": 0, "device": "cpu"},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("recon")
    ambient, clean = root / "ambient", root / "clean"
    train_run(validate_recipe(TINY, "tiny"), ambient)
    tree = json.loads(json.dumps(TINY))
    tree["training"]["objective"] = "clean"
    train_run(validate_recipe(tree, "tiny"), clean)
    scans = root / "scans"
    synth_cohort(scans, challenge="singlecoil", anatomy="knee", volumes=1, slices=2, matrix=(64, 32), seed=9,
                 split="val")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    return {"ambient": ambient, "clean": clean, "scans": scans, "recipe": recipe}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ambientmri", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("zero-filled", ["--recipe", "{recipe}"]),
        ("sense", ["--recipe", "{recipe}"]),
        ("l1-wavelet", ["--recipe", "{recipe}"]),
        ("a-os", ["--run", "{ambient}"]),
        ("a-dps", ["--run", "{ambient}", "--steps", "3"]),
        ("dps", ["--run", "{clean}", "--steps", "3"]),
        ("ddrm", ["--run", "{clean}", "--steps", "3"]),
    ],
)
def test_every_method_writes_challenge_files(setup, tmp_path, method, extra):
    out = tmp_path / method
    args = [a.format(**setup) for a in extra]
    proc = _cli("reconstruct", str(setup["scans"]), "--out", str(out), "--method", method, "--device", "cpu", *args)
    assert proc.returncode == 0, proc.stderr
    (h5,) = sorted(out.glob("*.h5"))
    with h5py.File(h5) as f:
        recon = f["reconstruction"][()]
        assert f.attrs["method"] == method
    with h5py.File(setup["scans"] / h5.name) as f:
        target_shape = f["reconstruction_esc"].shape
    assert recon.shape == target_shape and recon.dtype == np.float32 and np.isfinite(recon).all()
    previews = out / "previews"
    stem = h5.name.removesuffix(".h5")
    assert (previews / f"{stem}.nii.gz").is_file() and (previews / f"{stem}.png").is_file()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [h5.name, "previews", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    expected_nfe = {"a-os": 1, "a-dps": 3, "dps": 3, "ddrm": 3}.get(method, 0)
    assert summary["nfe_per_slice"] == expected_nfe and summary["slices"] == 2
    assert not (out / ".store").exists()
    metrics = _cli("evaluate", "--targets", str(setup["scans"]), "--predictions", str(out), "--json",
                   str(tmp_path / "m.json"))
    assert metrics.returncode == 0, metrics.stderr
    result = json.loads((tmp_path / "m.json").read_text())
    assert np.isfinite(result["mean"]["psnr"])


def test_model_methods_need_a_run_and_leave_nothing(setup, tmp_path):
    proc = _cli("reconstruct", str(setup["scans"]), "--out", str(tmp_path / "o"), "--method", "a-os",
                "--recipe", str(setup["recipe"]))
    assert proc.returncode == 2 and "--run" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    proc = _cli("reconstruct", str(setup["scans"]), "--out", str(tmp_path / "o"), "--method", "magic")
    assert proc.returncode == 2 and "allowed" in proc.stderr


def test_challenge_file_uses_its_own_mask_and_std_map(setup, tmp_path):
    from ambientmri.data.synth import synth_challenge_file
    from ambientmri.operators.masks import cartesian_mask

    mask, _ = cartesian_mask("random", 32, 0.25, 2.0, 7)
    challenge = tmp_path / "challenge"
    challenge.mkdir()
    synth_challenge_file(challenge / "file_test.h5", mask, challenge="singlecoil", slices=2, matrix=(64, 32),
                         anatomy="knee", subject=5)
    out = tmp_path / "out"
    proc = _cli("reconstruct", str(challenge), "--out", str(out), "--method", "a-dps", "--run", str(setup["ambient"]),
                "--steps", "2", "--num-samples", "2", "--dicom", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out / "file_test.h5") as f:
        recon, std = f["reconstruction"][()], f["reconstruction_std"][()]
    assert recon.shape == std.shape and (std >= 0).all() and std.max() > 0
    assert len(list((out / "previews" / "file_test_dicom").glob("*.dcm"))) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nfe_per_slice"] == 4


def test_nifti_input_is_reconstructed(setup, tmp_path):
    from ambientmri.data.medical import write_nifti

    rng = np.random.default_rng(0)
    vol = np.abs(rng.standard_normal((2, 32, 32))).astype(np.float32) + 1
    write_nifti(tmp_path / "scan.nii.gz", vol)
    out = tmp_path / "out"
    proc = _cli("reconstruct", str(tmp_path / "scan.nii.gz"), "--out", str(out), "--method", "sense", "--recipe",
                str(setup["recipe"]))
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out / "scan.h5") as f:
        assert f["reconstruction"].shape == (2, 32, 32)


def test_a_os_summary_records_every_setting_and_previews_show_three_slices(setup, tmp_path):
    from ambientmri.sampling.methods import A_OS_SIGMA, AOSConfig
    from ambientmri.sampling.reconstruct import reconstruct
    from ambientmri.sampling.runs import load_run

    synth_cohort(tmp_path / "scans", challenge="singlecoil", anatomy="knee", volumes=1, slices=4, matrix=(64, 32),
                 seed=4, split="val")
    out = tmp_path / "out"
    summary = reconstruct(tmp_path / "scans", out, "a-os", run=load_run(setup["ambient"]))
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert summary["settings"] == settings
    assert settings["sigma"] == A_OS_SIGMA and settings["mask_channel"] == "measured" and settings["seed"] == 0
    assert {"batch_size", "device", "nifti", "dicom", "keep_complex", "checkpoint_hash"} <= set(settings)
    assert settings["checkpoint_hash"] and settings["method"] == "a-os"
    # the PNG: 3 evenly spaced slices of 4 (rows) x zero-filled, reconstruction, target, error (columns)
    import matplotlib.image

    png = matplotlib.image.imread(out / "previews" / f"{next(iter(summary['volumes']))[:-3]}.png")
    height, width = png.shape[:2]
    assert 3 * 3.0 * 80 <= height <= (3 * 3.0 + 0.5) * 80 + 2 and abs(width - 4 * 3.1 * 80) <= 2
    config = AOSConfig(sigma=0.05, seed=3)
    again = reconstruct(tmp_path / "scans", tmp_path / "typed", "a-os", run=load_run(setup["ambient"]),
                        config=config, previews=False, nifti=False)
    assert again["settings"]["sigma"] == 0.05 and again["settings"]["seed"] == 3
    assert not (tmp_path / "typed" / "previews").exists()
