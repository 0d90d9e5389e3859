"""The CLI end to end: commands work, and every bad input gets one line, a non-zero exit, no
traceback and no partial output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from ambientmri.cli import EXIT_BAD_INPUT, EXIT_CONDITION_VIOLATED, app

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
runner = CliRunner()

RECIPE = """
name: t
data: {kind: fastmri}
corruption: {kind: cartesian, mask_type: random, center_fractions: [0.25], accelerations: [2]}
prepare: {coil_maps: {calib_width: 8, max_iter: 10}}
"""


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result


def _bad(args: list[str], *needles: str, code: int = EXIT_BAD_INPUT) -> str:
    result = runner.invoke(app, args)
    err = result.stderr
    assert result.exit_code == code, (result.exit_code, result.output, err)
    assert "Traceback" not in result.output + err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def recipe_file(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return path


def test_version_and_help() -> None:
    assert "ambientmri" in _ok(["--version"]).output
    out = _ok(["--help"]).output
    for command in ("synth", "mask", "prepare", "check-corruption", "demo"):
        assert command in out


def test_synth_prepare_roundtrip(tmp_path: Path, recipe_file: Path) -> None:
    raw = tmp_path / "raw"
    _ok(["synth", str(raw), "--volumes", "2", "--slices", "2", "--matrix", "64", "32", "--coils", "4"])
    assert len(list(raw.glob("*.h5"))) == 2
    out = _ok(["prepare", str(raw), "--out", str(tmp_path / "store"), "--recipe", str(recipe_file)]).output
    assert "slices/s" in out
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["num_slices"] == 4


def test_mask_command_matches_library_and_plots(tmp_path: Path) -> None:
    from ambientmri.operators.masks import cartesian_mask

    out = tmp_path / "m.npy"
    _ok(["mask", "--type", "equispaced_fraction", "--shape", "640", "368", "--center-fraction", "0.08",
         "--acceleration", "4", "--seed", "3", "--out", str(out), "--plot", str(tmp_path / "m.png")])
    mask = np.load(out)
    assert mask.dtype == np.float32 and mask.shape == (368,)
    np.testing.assert_array_equal(mask, cartesian_mask("equispaced_fraction", 368, 0.08, 4.0, 3)[0])
    assert (tmp_path / "m.png").stat().st_size > 1000
    _ok(["mask", "--type", "poisson", "--shape", "64", "64", "--acceleration", "3", "--out", str(tmp_path / "p.npy")])
    assert np.load(tmp_path / "p.npy").shape == (64, 64)


def test_check_corruption_exit_codes(tmp_path: Path) -> None:
    out = _ok(["check-corruption", str(RECIPES / "demo.yaml"), "--draws", "64", "--json", str(tmp_path / "c.json")])
    assert "Satisfied" in out.output
    assert json.loads((tmp_path / "c.json").read_text())["satisfied"] is True
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {kind: synthetic, matrix: [32, 32]}\ncorruption: {kind: inpainting, p: 0.5, delta: 0}\n")
    result = runner.invoke(app, ["check-corruption", str(bad), "--draws", "32"])
    assert result.exit_code == EXIT_CONDITION_VIOLATED and "Violated" in result.output


# ---------------------------------------------------------------------------------------------
# bad input: one line naming the file or key, non-zero exit, nothing half-written
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def raw(multicoil_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "raw"
    shutil.copytree(multicoil_dir, dst)
    return dst


def _prepare_bad(raw: Path, tmp_path: Path, recipe_file: Path, *needles: str) -> None:
    out = tmp_path / "store"
    _bad(["prepare", str(raw), "--out", str(out), "--recipe", str(recipe_file)], *needles)
    assert not out.exists(), "bad input must leave no partial output"


def test_truncated_file(raw: Path, tmp_path: Path, recipe_file: Path) -> None:
    victim = sorted(raw.glob("*.h5"))[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    _prepare_bad(raw, tmp_path, recipe_file, victim.name)


def test_not_hdf5(raw: Path, tmp_path: Path, recipe_file: Path) -> None:
    (raw / "notes.h5").write_text("hello")
    _prepare_bad(raw, tmp_path, recipe_file, "notes.h5")


def test_missing_kspace(raw: Path, tmp_path: Path, recipe_file: Path) -> None:
    with h5py.File(raw / "empty.h5", "w") as f:
        f.create_dataset("other", data=np.zeros(3))
    _prepare_bad(raw, tmp_path, recipe_file, "empty.h5", "kspace")


def test_wrong_ndim_and_dtype(raw: Path, tmp_path: Path, recipe_file: Path) -> None:
    with h5py.File(raw / "flat.h5", "w") as f:
        f.create_dataset("kspace", data=np.zeros((4, 4), np.complex64))
    _prepare_bad(raw, tmp_path, recipe_file, "flat.h5")
    (raw / "flat.h5").unlink()
    with h5py.File(raw / "real.h5", "w") as f:
        f.create_dataset("kspace", data=np.zeros((2, 64, 32), np.float32))
    _prepare_bad(raw, tmp_path, recipe_file, "real.h5")


def test_nan_and_inf_kspace(raw: Path, tmp_path: Path, recipe_file: Path) -> None:
    victim = sorted(raw.glob("*.h5"))[-1]
    with h5py.File(victim, "r+") as f:
        f["kspace"][1, 2, 5, 5] = np.inf
    _prepare_bad(raw, tmp_path, recipe_file, victim.name, "slice 1")


def test_unreachable_acceleration(raw: Path, tmp_path: Path, recipe_file: Path) -> None:
    recipe_file.write_text(RECIPE.replace("accelerations: [2]", "accelerations: [64]"))
    _prepare_bad(raw, tmp_path, recipe_file, "64")


def test_unknown_mask_type_in_recipe_and_cli(raw: Path, tmp_path: Path, recipe_file: Path) -> None:
    recipe_file.write_text(RECIPE.replace("mask_type: random", "mask_type: spiral"))
    line = _bad(["prepare", str(raw), "--out", str(tmp_path / "s"), "--recipe", str(recipe_file)],
                "corruption.mask_type", "spiral")
    assert "random" in line and str(recipe_file) in line
    assert not (tmp_path / "s").exists()
    _bad(["mask", "--type", "spiral", "--out", str(tmp_path / "m.npy")], "spiral", "equispaced")
    assert not (tmp_path / "m.npy").exists()


def test_mask_unreachable_acceleration(tmp_path: Path) -> None:
    _bad(["mask", "--type", "random", "--shape", "64", "16", "--center-fraction", "0.5", "--acceleration", "8",
          "--out", str(tmp_path / "m.npy")], "8")
    assert not (tmp_path / "m.npy").exists()


def test_invalid_recipe_key(raw: Path, tmp_path: Path, recipe_file: Path) -> None:
    recipe_file.write_text(RECIPE.replace("name: t", "name: t\nepochs: 3"))
    _bad(["prepare", str(raw), "--out", str(tmp_path / "s"), "--recipe", str(recipe_file)], "epochs", "unknown key")


def test_missing_source(tmp_path: Path, recipe_file: Path) -> None:
    _bad(["prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s"), "--recipe", str(recipe_file)],
         "nowhere")


def test_dicom_without_pixel_data(tmp_path: Path, recipe_file: Path) -> None:
    from ambientmri.data.medical import write_dicom_series

    series = tmp_path / "dicom" / "series1"
    write_dicom_series(series, np.random.default_rng(0).random((2, 32, 32)).astype(np.float32), spacing=(2, 1, 1))
    import pydicom

    victim = sorted(series.iterdir())[0]
    ds = pydicom.dcmread(victim)
    del ds.PixelData
    ds.save_as(victim)
    recipe_file.write_text(RECIPE.replace("kind: fastmri", "kind: dicom"))
    out = tmp_path / "store"
    _bad(["prepare", str(tmp_path / "dicom"), "--out", str(out), "--recipe", str(recipe_file)], victim.name)
    assert not out.exists()


def test_debug_shows_traceback(tmp_path: Path, recipe_file: Path) -> None:
    result = runner.invoke(app, ["--debug", "prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s"),
                                 "--recipe", str(recipe_file)])
    assert result.exit_code != 0 and result.exception is not None


def test_prepare_nifti_and_dicom_sources(tmp_path: Path, recipe_file: Path) -> None:
    """Magnitude series get simulated single-coil k-space."""
    from ambientmri.data.medical import write_dicom_series, write_nifti

    rng = np.random.default_rng(0)
    vol = rng.random((3, 32, 32)).astype(np.float32) + 0.5
    write_nifti(tmp_path / "nii" / "sub1.nii.gz", vol, spacing=(2.0, 1.0, 1.0))
    write_dicom_series(tmp_path / "dcm" / "s1", vol, spacing=(2.0, 1.0, 1.0))
    for kind, src in (("nifti", "nii"), ("dicom", "dcm")):
        recipe_file.write_text(RECIPE.replace("kind: fastmri", f"kind: {kind}"))
        _ok(["prepare", str(tmp_path / src), "--out", str(tmp_path / f"store-{kind}"), "--recipe", str(recipe_file)])
        from ambientmri.data.store import CorruptedStore

        store = CorruptedStore(tmp_path / f"store-{kind}")
        assert len(store) == 3 and store.coils == 1 and store[0].y.shape == (32, 32)
        with h5py.File(store.path / store.volumes[0]["file"]) as f:
            np.testing.assert_allclose(f.attrs["spacing"], (2.0, 1.0, 1.0))


def test_output_path_that_is_a_folder(tmp_path: Path) -> None:
    _bad(["mask", "--out", str(tmp_path)], str(tmp_path), "is a folder")


def test_dicom_folder_with_stray_files(tmp_path: Path, recipe_file: Path) -> None:
    from ambientmri.data.medical import write_dicom_series

    root = tmp_path / "dicom"
    write_dicom_series(root / "s1", np.ones((2, 32, 32), np.float32), spacing=(2, 1, 1))
    (root / "README.txt").write_text("exported from PACS")
    import pydicom

    index = pydicom.dcmread(next((root / "s1").iterdir()))
    index.save_as(root / "DICOMDIR")  # stands in for a media index: DICOM preamble, named DICOMDIR
    (root / "s1" / "notes.txt").write_text("not DICOM")
    recipe_file.write_text(RECIPE.replace("kind: fastmri", "kind: dicom"))
    _ok(["prepare", str(root), "--out", str(tmp_path / "store"), "--recipe", str(recipe_file), "--workers", "1"])
    assert json.loads((tmp_path / "store" / "manifest.json").read_text())["num_volumes"] == 1


def test_pseudonyms_use_the_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from ambientmri.utils import pseudonym, pseudonym_scheme

    plain = pseudonym("patient-7")
    monkeypatch.setenv("AMBIENTMRI_PSEUDONYM_KEY", "s3cret")
    keyed = pseudonym("patient-7")
    assert keyed != plain and keyed.startswith("sub-") and pseudonym_scheme() == "hmac-sha256"
    monkeypatch.setenv("AMBIENTMRI_PSEUDONYM_KEY", "other")
    assert pseudonym("patient-7") != keyed


def test_resume_with_another_pseudonym_key_is_refused(
    raw: Path, tmp_path: Path, recipe_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "store"
    monkeypatch.setenv("AMBIENTMRI_PSEUDONYM_KEY", "first")
    _ok(["prepare", str(raw), "--out", str(out), "--recipe", str(recipe_file), "--workers", "2"])
    assert json.loads((out / "manifest.json").read_text())["pseudonyms"] == "hmac-sha256"
    monkeypatch.setenv("AMBIENTMRI_PSEUDONYM_KEY", "second")
    _bad(["prepare", str(raw), "--out", str(out), "--recipe", str(recipe_file)], "pseudonym key")


def test_nan_output_is_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A model that produces NaN (sample/reconstruct raise FloatingPointError) gets one line, no traceback."""
    import typer

    from ambientmri.cli.common import friendly

    @friendly
    def diverged() -> None:
        raise FloatingPointError("generated samples contain NaN or Inf; nothing was written")

    with pytest.raises(typer.Exit) as info:
        diverged()
    assert info.value.exit_code == 1
    err = capsys.readouterr().err
    assert "generated samples contain NaN or Inf" in err and "unexpected" not in err
    assert len(err.strip().splitlines()) == 1
