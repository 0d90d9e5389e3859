"""The Python API (``import ambientmri as am``, docs/api.md): the same results as the CLI and the
library file paths, the documented example runs, and ``import ambientmri`` stays light."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import ambientmri as am
from ambientmri.data.synth import synth_challenge_file, synth_cohort
from ambientmri.operators.masks import cartesian_mask
from ambientmri.recipes import validate_recipe
from ambientmri.sampling.generate import generate
from ambientmri.sampling.reconstruct import reconstruct

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny-multicoil",
    "data": {"kind": "synthetic", "challenge": "multicoil", "volumes": 2, "heldout_volumes": 0, "slices": 2,
             "matrix": [64, 32], "coils": 4, "crop": [32, 32], "seed": 3},
    "corruption": {"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
    "prepare": {"coil_maps": {"calib_width": 8, "max_iter": 10}},
    "model": {"kind": "mlp", "hidden": [32], "embedding_dim": 16},
    "training": {"steps": 2, "batch_size": 4, "log_every": 1, "eval_every": 0, "device": "cpu"},
}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ambientmri", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    result = am.train(validate_recipe(TINY, "tiny"), root / "run")
    scans = root / "scans"
    (full,) = synth_cohort(scans, challenge="multicoil", volumes=1, slices=2, matrix=(64, 32), coils=4, seed=9,
                           split="val", recon_size=(24, 24))
    mask, _ = cartesian_mask("random", 32, 0.25, 2.0, seed=5)
    (root / "challenge").mkdir()
    test_file = synth_challenge_file(root / "challenge" / "test_scan.h5", mask, slices=2, matrix=(64, 32), coils=4,
                                     subject=4, recon_size=(24, 24))
    return {"root": root, "result": result, "run": am.load_run(root / "run", device="cpu"), "full": full,
            "test_file": test_file, "mask": mask}


def _library(path: Path, out: Path, run: am.Run, method: str = "a-os", **options) -> h5py.File:
    reconstruct(path, out, method, run=run.loaded, options={"seed": 0, "l_ss": 1.0, "zeta": 1.0, "num_samples": 1,
                                                             **options}, nifti=False, keep_complex=True)
    return h5py.File(out / path.name, "r")


def test_train_mirrors_the_command(setup):
    result = setup["result"]
    assert result.step == 2 and result.checkpoint.is_file()
    assert setup["run"].objective == "ambient" and setup["run"].image_shape == (32, 32)


def test_reconstruct_fully_sampled_arrays_equals_the_file_path(setup, tmp_path):
    """mask=None: the run's corruption draws the mask, seeded by the volume's name, as for the file."""
    run, full = setup["run"], setup["full"]
    with h5py.File(full) as f:
        kspace = f["kspace"][()]
    with _library(full, tmp_path / "lib", run, mask="measured") as f:
        expected, expected_complex = f["reconstruction"][()], f["reconstruction_complex"][()]
    got = run.reconstruct(kspace, method="a-os", name=full.name, recon_size=(24, 24))
    assert got.shape == expected.shape == (2, 24, 24) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * float(np.abs(expected).max()))
    complex_ = run.reconstruct(kspace, method="a-os", name=full.name, recon_size=(24, 24), output="complex")
    assert complex_.dtype == np.complex64
    np.testing.assert_allclose(complex_, expected_complex, rtol=1e-5, atol=1e-6 * float(np.abs(expected).max()))
    np.testing.assert_allclose(np.abs(complex_), got, rtol=1e-6, atol=1e-7 * float(got.max()))
    # another name seeds another mask, hence another reconstruction
    other = run.reconstruct(kspace, method="a-os", name="another.h5", recon_size=(24, 24))
    assert not np.allclose(other, expected)


def test_reconstruct_one_undersampled_slice_equals_the_cli(setup, tmp_path):
    """A given mask: the k-space is taken as acquired with it, as the command takes a test file."""
    run, test_file, mask = setup["run"], setup["test_file"], setup["mask"]
    out = tmp_path / "cli"
    proc = _cli("reconstruct", str(test_file), "--out", str(out), "--method", "a-os", "--run",
                str(setup["root"] / "run"), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out / test_file.name) as f:
        expected = f["reconstruction"][()]
    with h5py.File(test_file) as f:
        kspace = f["kspace"][()]
    volume = run.reconstruct(kspace, mask=mask, recon_size=(24, 24))
    np.testing.assert_allclose(volume, expected, rtol=1e-5, atol=1e-6 * float(expected.max()))
    one = run.reconstruct(kspace[1], mask=mask, recon_size=(24, 24))  # (C, H, W): one multi-coil slice
    assert one.shape == (24, 24)
    np.testing.assert_allclose(one, expected[1], rtol=1e-5, atol=1e-6 * float(expected.max()))
    # without a mask the same k-space is treated as fully sampled and undersampled again
    assert not np.allclose(run.reconstruct(kspace[1], recon_size=(24, 24)), expected[1])


def test_reconstruct_classical_method_and_bad_input(setup, tmp_path):
    run, test_file, mask = setup["run"], setup["test_file"], setup["mask"]
    with _library(test_file, tmp_path / "zf", run, method="zero-filled") as f:
        expected = f["reconstruction"][()]
    with h5py.File(test_file) as f:
        kspace = f["kspace"][()]
    got = run.reconstruct(kspace, mask=mask, method="zero-filled", recon_size=(24, 24))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * float(expected.max()))
    with pytest.raises(ValueError, match="must be complex"):
        run.reconstruct(np.abs(kspace[0]))
    with pytest.raises(ValueError, match="1-D of length W=32"):
        run.reconstruct(kspace[0], mask=mask[:16])
    with pytest.raises(ValueError, match="--method"):
        run.reconstruct(kspace[0], method="magic")
    with pytest.raises(ValueError, match="output"):
        run.reconstruct(kspace[0], output="phase")


def test_sample_equals_the_command(setup, tmp_path):
    run = setup["run"]
    got = run.sample(3, seed=4, steps=2)
    assert got.shape == (3, 32, 32) and got.dtype == np.complex64
    expected = generate(run.loaded, 3, seed=4, steps=2, device="cpu").numpy()
    np.testing.assert_array_equal(got, expected)
    out = tmp_path / "samples"
    proc = _cli("sample", str(setup["root"] / "run"), "--num", "3", "--seed", "4", "--steps", "2", "--out", str(out),
                "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(got, np.load(out / "samples.npy"), rtol=1e-5, atol=1e-6)
    assert not np.allclose(run.sample(3, seed=5, steps=2), got)


def test_prepare_mirrors_the_command(setup, tmp_path):
    from ambientmri.data.store import CorruptedStore

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(json.dumps(TINY))  # JSON is YAML
    raw = setup["root"] / "run" / "data" / "raw" / "train"
    result = am.prepare(raw, tmp_path / "api", recipe, overrides=["corruption.seed=1"])
    proc = _cli("prepare", str(raw), "--out", str(tmp_path / "cli"), "--recipe", str(recipe),
                "--set", "corruption.seed=1")
    assert proc.returncode == 0, proc.stderr
    assert (result.volumes, result.slices) == (2, 4)
    api, cli = CorruptedStore(tmp_path / "api"), CorruptedStore(tmp_path / "cli")
    for i in range(len(api)):
        for field in ("y", "mask", "maps", "scale"):
            np.testing.assert_array_equal(np.asarray(getattr(api[i], field)), np.asarray(getattr(cli[i], field)))
    api.close()
    cli.close()


def test_audit_is_run_audit_with_the_command_defaults(monkeypatch):
    import ambientmri.audit.run as audit_run

    calls = []
    monkeypatch.setattr(audit_run, "run_audit", lambda *a, **kw: calls.append((a, kw)) or {"verdict": "x"})
    assert am.audit("s", "t", "h", "o") == {"verdict": "x"}
    from ambientmri import api

    assert api.audit("s", "t", "h", "o", controls=False) == {"verdict": "x"}
    assert calls[0] == (("s", "t", "h", "o"), {})  # the package call: run_audit's own (the CLI's) defaults
    assert calls[1][0] == ("s", "t", "h", "o")
    assert calls[1][1] == {"quantile": 0.99, "k": 3, "controls": False, "seed": 0, "run": None, "probe": None,
                           "probe_fraction": None, "overwrite": False, "search": "auto"}


def test_public_names():
    assert set(am.__all__) >= {"load_run", "prepare", "train", "audit", "Run", "InputError", "__version__"}
    for name in am.__all__:
        assert getattr(am, name) is not None
    with pytest.raises(AttributeError):
        am.no_such_name  # noqa: B018


def test_import_ambientmri_does_not_load_torch():
    code = "import sys, ambientmri; print(sorted(m for m in ('torch', 'numpy', 'h5py') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_the_documented_example_runs(tmp_path, monkeypatch):
    """docs/api.md's python blocks, in order, in an empty folder (a tiny MLP run, two steps)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 3
    five_lines = [line for line in blocks[1].splitlines() if line.strip()]
    assert len(five_lines) <= 6 and "run.reconstruct(" in blocks[1]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)
    assert namespace["image"].shape == (32, 32) and namespace["image"].dtype == np.float32
    assert np.isfinite(namespace["image"]).all() and namespace["image"].max() > 0
    assert namespace["store"].slices == 4
    assert (tmp_path / "audit" / "summary.json").is_file()
