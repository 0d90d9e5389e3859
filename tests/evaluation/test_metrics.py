"""fastMRI metrics: golden values from fastmri 0.3.0, folder evaluation, errors, JSON/CSV output."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from ambientmri.data.fastmri import write_fastmri
from ambientmri.errors import InputError
from ambientmri.evaluation.metrics import (
    evaluate_folders,
    evaluate_volumes,
    fastmri_crop,
    nmse,
    psnr,
    slice_metrics,
    ssim,
    target_key_for_challenge,
    write_metrics_csv,
    write_metrics_json,
)

GOLDEN = Path(__file__).parents[1] / "golden" / "fastmri_metrics.npz"
METRICS = ("nmse", "psnr", "ssim")
RTOL = 1e-6


@pytest.fixture(scope="module")
def golden() -> dict:
    with np.load(GOLDEN) as z:
        meta = json.loads(z["meta"].tobytes().decode("utf-8"))
        names = list(meta["volumes"])
        targets = {n: z[f"target_{n}"] for n in names}
        preds = {n: z[f"pred_{n}"] for n in names}
    return {"meta": meta, "targets": targets, "preds": preds, "names": names}


def _write_folders(root: Path, golden: dict, *, multicoil: bool = False) -> tuple[Path, Path]:
    """Targets via the project's writer (ESC = target, RSS = target x 1.1), predictions challenge-style."""
    tdir, pdir = root / "targets", root / "predictions"
    factor = np.float32(golden["meta"]["rss_factor"])
    for name in golden["names"]:
        target = golden["targets"][name]
        slices = target.shape[0]
        kshape = (slices, 2, 4, 4) if multicoil else (slices, 4, 4)
        write_fastmri(
            tdir / name,
            np.ones(kshape, dtype=np.complex64),
            targets={"reconstruction_esc": target, "reconstruction_rss": target * factor},
            attrs={"acquisition": golden["meta"]["volumes"][name]["acquisition"], "patient_id": name},
        )
        _write_prediction(pdir / name, golden["preds"][name])
    return tdir, pdir


def _write_prediction(path: Path, volume: np.ndarray, key: str = "reconstruction") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=volume)


def _assert_matches(result: dict, run: dict, *, std_rtol: float = 1e-5) -> None:
    for m in METRICS:
        np.testing.assert_allclose(result["mean"][m], run["mean"][m], rtol=RTOL, err_msg=m)
        np.testing.assert_allclose(result["std"][m], run["std"][m], rtol=std_rtol, err_msg=m)


# --------------------------------------------------------------------------------------------
# Golden values
# --------------------------------------------------------------------------------------------


def test_golden_file_is_small():
    assert GOLDEN.stat().st_size < 200_000


def test_volume_metrics_match_fastmri(golden):
    for name in golden["names"]:
        gt, pred = fastmri_crop(golden["targets"][name], golden["preds"][name])
        want = golden["meta"]["volumes"][name]
        assert list(gt.shape) == want["cropped_shape"] == list(pred.shape)
        for metric, fn in (("nmse", nmse), ("psnr", psnr), ("ssim", ssim)):
            np.testing.assert_allclose(fn(gt, pred), want[metric], rtol=RTOL, err_msg=f"{name} {metric}")


def test_evaluate_volumes_matches_fastmri_evaluate(golden, global_rng_guard):
    result = evaluate_volumes(golden["targets"], golden["preds"])
    assert result["num_volumes"] == len(golden["names"])
    assert list(result["volumes"]) == sorted(golden["names"])
    for name in golden["names"]:
        for m in METRICS:
            np.testing.assert_allclose(result["volumes"][name][m], golden["meta"]["volumes"][name][m], rtol=RTOL)
    _assert_matches(result, golden["meta"]["evaluate"]["esc"])
    assert result["notes"] == []


@pytest.mark.parametrize(
    ("kwargs", "run", "key"),
    [
        ({"challenge": "singlecoil"}, "esc", "reconstruction_esc"),
        ({"challenge": "multicoil"}, "rss", "reconstruction_rss"),
        ({}, "esc", "reconstruction_esc"),  # singlecoil inferred from the 3-D k-space
        ({"target_key": "reconstruction_rss"}, "rss", "reconstruction_rss"),
        ({"challenge": "multicoil", "acquisition": "CORPD_FBK"}, "rss_CORPD_FBK", "reconstruction_rss"),
    ],
)
def test_evaluate_folders_matches_fastmri_evaluate(tmp_path, golden, kwargs, run, key):
    tdir, pdir = _write_folders(tmp_path, golden)
    result = evaluate_folders(tdir, pdir, **kwargs)
    _assert_matches(result, golden["meta"]["evaluate"][run])
    assert set(result["target_keys"].values()) == {key}
    if "acquisition" in kwargs:
        assert result["num_volumes"] == 2
        assert any("skipped 2" in note for note in result["notes"])


def test_multicoil_files_default_to_rss(tmp_path, golden):
    tdir, pdir = _write_folders(tmp_path, golden, multicoil=True)
    result = evaluate_folders(tdir, pdir)
    _assert_matches(result, golden["meta"]["evaluate"]["rss"])
    assert set(result["target_keys"].values()) == {"reconstruction_rss"}


def test_live_cross_check_with_fastmri(tmp_path, golden):
    """Only where fastmri is installed (CI installs 0.3.0): run its evaluate on the same folders."""
    fm = pytest.importorskip("fastmri.evaluate")
    tdir, pdir = _write_folders(tmp_path, golden)
    for challenge, key in (("singlecoil", "reconstruction_esc"), ("multicoil", "reconstruction_rss")):
        args = argparse.Namespace(target_path=tdir, predictions_path=pdir, acquisition=None, acceleration=None)
        means = fm.evaluate(args, key).means()
        ours = evaluate_folders(tdir, pdir, challenge=challenge)["mean"]
        for m in METRICS:
            np.testing.assert_allclose(ours[m], float(np.ravel(means[m.upper()])[0]), rtol=RTOL)
    rng = np.random.default_rng(3)
    gt = rng.random((2, 16, 16)).astype(np.float32)
    pred = (gt + 0.1 * rng.random((2, 16, 16))).astype(np.float32)
    assert nmse(gt, pred) == float(fm.nmse(gt, pred))
    assert psnr(gt, pred) == float(fm.psnr(gt, pred))
    assert ssim(gt, pred) == float(fm.ssim(gt, pred)[0])


# --------------------------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------------------------


def test_definitions_by_hand():
    rng = np.random.default_rng(0)
    gt = rng.random((3, 12, 12))
    pred = gt + 0.05 * rng.standard_normal(gt.shape)
    assert nmse(gt, pred) == pytest.approx(np.sum((gt - pred) ** 2) / np.sum(gt**2), rel=1e-12)
    assert psnr(gt, pred) == pytest.approx(10 * np.log10(gt.max() ** 2 / np.mean((gt - pred) ** 2)), rel=1e-12)
    per_slice = [structural_similarity(gt[i], pred[i], data_range=gt.max()) for i in range(3)]
    assert ssim(gt, pred) == pytest.approx(np.mean(per_slice), rel=1e-12)
    assert psnr(gt, gt) == math.inf
    assert ssim(gt, gt) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="volumes"):
        ssim(gt[0], pred[0])
    with pytest.raises(ValueError, match="shapes differ"):
        nmse(gt, pred[:2])


def test_fastmri_crop_offsets():
    target = np.arange(2 * 9 * 5, dtype=np.float32).reshape(2, 9, 5)
    recon = np.arange(2 * 10 * 8, dtype=np.float32).reshape(2, 10, 8)
    gt, rc = fastmri_crop(target, recon)
    np.testing.assert_array_equal(gt, target[:, 2:7, :])
    np.testing.assert_array_equal(rc, recon[:, 2:7, 1:6])


def test_target_key_for_challenge():
    assert target_key_for_challenge("multicoil") == "reconstruction_rss"
    assert target_key_for_challenge("singlecoil") == "reconstruction_esc"
    with pytest.raises(ValueError, match="challenge"):
        target_key_for_challenge("dualcoil")


def test_slice_metrics_aali_definitions():
    rng = np.random.default_rng(1)
    gt = (rng.random((16, 16)) + 0.2) * np.exp(1j * rng.random((16, 16)))
    pred = np.abs(gt) + 0.05 * rng.standard_normal((16, 16))
    g, p = np.abs(gt), np.abs(pred)
    out = slice_metrics(gt, pred)
    assert out["nrmse"] == pytest.approx(np.linalg.norm(g - p) / np.linalg.norm(g), rel=1e-12)
    assert out["psnr"] == pytest.approx(20 * np.log10(g.max() / np.sqrt(np.mean((g - p) ** 2))), rel=1e-12)
    assert out["ssim"] == pytest.approx(structural_similarity(g, p, data_range=g.max() - g.min()), rel=1e-12)
    stack = slice_metrics(np.stack([gt, gt]), np.stack([pred, gt]))
    assert stack["nrmse"].shape == (2,) and stack["nrmse"][1] == 0 and stack["psnr"][1] == math.inf
    assert stack["psnr"][0] == pytest.approx(out["psnr"])
    with pytest.raises(ValueError, match="NaN"):
        slice_metrics(gt, np.full((16, 16), np.nan))
    with pytest.raises(ValueError, match="all zeros"):
        slice_metrics(np.zeros((8, 8)), np.ones((8, 8)))


# --------------------------------------------------------------------------------------------
# Folder evaluation on synthetic fastMRI files
# --------------------------------------------------------------------------------------------


def test_evaluate_folders_on_synthetic_cohort(tmp_path, multicoil_dir):
    from ambientmri.data.fastmri import FastMRIFile

    pdir = tmp_path / "preds"
    rng = np.random.default_rng(0)
    expected = {}
    for path in sorted(multicoil_dir.glob("*.h5")):
        with FastMRIFile(path) as f:
            target = f.target_all()
        pred = (target + 0.05 * target.max() * rng.standard_normal(target.shape)).astype(np.float32)
        _write_prediction(pdir / path.name, pred)
        expected[path.name] = nmse(*fastmri_crop(target, pred))
    result = evaluate_folders(multicoil_dir, pdir)
    assert set(result["volumes"]) == set(expected)
    for name, value in expected.items():
        assert result["volumes"][name]["nmse"] == value
    assert result["mean"]["nmse"] == pytest.approx(np.mean(list(expected.values())), rel=1e-12)
    assert set(result["target_keys"].values()) == {"reconstruction_rss"}


def test_fallback_target_key_is_reported(tmp_path):
    target = np.random.default_rng(0).random((2, 10, 10)).astype(np.float32) + 0.1
    write_fastmri(tmp_path / "t" / "a.h5", np.ones((2, 4, 4), np.complex64), targets={"reconstruction_rss": target})
    _write_prediction(tmp_path / "p" / "a.h5", target * 0.9)
    _write_prediction(tmp_path / "p" / "extra.h5", target)
    result = evaluate_folders(tmp_path / "t", tmp_path / "p", challenge="singlecoil")
    assert result["target_keys"] == {"a.h5": "reconstruction_rss"}
    assert any("no 'reconstruction_esc'" in n and "reconstruction_rss" in n for n in result["notes"])
    assert any("extra.h5" in n for n in result["notes"])


# --------------------------------------------------------------------------------------------
# Errors: one line naming the file
# --------------------------------------------------------------------------------------------


def _one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path, np.ndarray]:
    target = np.random.default_rng(0).random((2, 12, 10)).astype(np.float32) + 0.1
    write_fastmri(tmp_path / "t" / "v.h5", np.ones((2, 4, 4), np.complex64), targets={"reconstruction_esc": target})
    (tmp_path / "p").mkdir()
    return tmp_path / "t", tmp_path / "p", target


def test_missing_prediction(pair):
    tdir, pdir, _ = pair
    with pytest.raises(InputError) as exc:
        evaluate_folders(tdir, pdir)
    assert "missing" in _one_line_naming(exc, pdir / "v.h5")


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda t: t[:1], "1 slices"),
        (lambda t: t[:, :, :8], "smaller than the 10x10"),
        (lambda t: np.where(t > 0.5, np.nan, t), "NaN"),
        (lambda t: np.where(t > 0.5, np.inf, t), "NaN or Inf"),
        (lambda t: t.astype(np.complex64), "complex"),
        (lambda t: t[0], "expected a volume"),
    ],
)
def test_bad_prediction(pair, make, needle):
    tdir, pdir, target = pair
    _write_prediction(pdir / "v.h5", make(target))
    with pytest.raises(InputError) as exc:
        evaluate_folders(tdir, pdir)
    assert needle in _one_line_naming(exc, pdir / "v.h5")


def test_prediction_without_reconstruction_dataset(pair):
    tdir, pdir, target = pair
    _write_prediction(pdir / "v.h5", target, key="recon")
    with pytest.raises(InputError) as exc:
        evaluate_folders(tdir, pdir)
    assert "'reconstruction'" in _one_line_naming(exc, pdir / "v.h5")


@pytest.mark.parametrize("which", ["target", "prediction"])
def test_corrupt_file(pair, which):
    tdir, pdir, target = pair
    _write_prediction(pdir / "v.h5", target)
    bad = (tdir if which == "target" else pdir) / "v.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(InputError) as exc:
        evaluate_folders(tdir, pdir)
    assert "corrupt" in _one_line_naming(exc, bad)


def test_truncated_target(pair):
    tdir, pdir, target = pair
    _write_prediction(pdir / "v.h5", target)
    path = tdir / "v.h5"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError) as exc:
        evaluate_folders(tdir, pdir)
    _one_line_naming(exc, path)


def test_bad_targets(tmp_path):
    tdir, pdir = tmp_path / "t", tmp_path / "p"
    k = np.ones((2, 4, 4), np.complex64)
    # a test/challenge file: no target at all
    write_fastmri(tdir / "a.h5", k, mask=np.ones(4))
    _write_prediction(pdir / "a.h5", np.ones((2, 8, 8), np.float32))
    with pytest.raises(InputError) as exc:
        evaluate_folders(tdir, pdir)
    assert "no reconstruction_esc or reconstruction_rss" in _one_line_naming(exc, tdir / "a.h5")
    # wider than tall: fastMRI's crop to (w, w) cannot work
    write_fastmri(tdir / "a.h5", k, targets={"reconstruction_rss": np.ones((2, 8, 10), np.float32)})
    with pytest.raises(InputError) as exc:
        evaluate_folders(tdir, pdir)
    assert "at least as tall" in _one_line_naming(exc, tdir / "a.h5")
    # NaN in the target, and an explicit key that is missing
    bad = np.ones((2, 8, 8), np.float32)
    bad[1, 3, 3] = np.nan
    with h5py.File(tdir / "a.h5", "w") as f:
        f.create_dataset("reconstruction_rss", data=bad)
    with pytest.raises(InputError) as exc:
        evaluate_folders(tdir, pdir)
    assert "slice 1" in _one_line_naming(exc, tdir / "a.h5")
    with pytest.raises(InputError) as exc:
        evaluate_folders(tdir, pdir, target_key="reconstruction_esc")
    assert "no 'reconstruction_esc'" in _one_line_naming(exc, tdir / "a.h5")
    # all-zero target
    with h5py.File(tdir / "a.h5", "w") as f:
        f.create_dataset("reconstruction_rss", data=np.zeros((2, 8, 8), np.float32))
    with pytest.raises(InputError) as exc:
        evaluate_folders(tdir, pdir)
    assert "all zeros" in _one_line_naming(exc, tdir / "a.h5")


def test_bad_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as exc:
        evaluate_folders(tmp_path / "nope", tmp_path / "empty")
    _one_line_naming(exc, tmp_path / "nope")
    with pytest.raises(InputError) as exc:
        evaluate_folders(tmp_path / "empty", tmp_path / "empty")
    assert "no .h5" in _one_line_naming(exc, tmp_path / "empty")
    with pytest.raises(ValueError, match="challenge"):
        evaluate_folders(tmp_path / "empty", tmp_path / "empty", challenge="knee")


def test_evaluate_volumes_errors():
    t = np.ones((2, 8, 8), np.float32)
    with pytest.raises(InputError, match="^b: no prediction"):
        evaluate_volumes({"a": t, "b": t}, {"a": t})
    with pytest.raises(InputError, match="^a: reconstruction contains NaN"):
        evaluate_volumes({"a": t}, {"a": np.full_like(t, np.nan)})
    with pytest.raises(ValueError, match="no target"):
        evaluate_volumes({}, {})
    with pytest.raises(InputError, match="7x7"):
        evaluate_volumes({"a": t[:, :5, :5]}, {"a": t[:, :5, :5]})


# --------------------------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------------------------


def test_json_and_csv_outputs(tmp_path, golden):
    targets = dict(golden["targets"])
    preds = dict(golden["preds"])
    preds["file_a.h5"] = fastmri_crop(targets["file_a.h5"], preds["file_a.h5"])[0].copy()  # perfect: psnr inf
    result = evaluate_volumes(targets, preds)
    assert result["volumes"]["file_a.h5"]["psnr"] == math.inf
    assert result["mean"]["psnr"] == math.inf and result["std"]["psnr"] is None

    jpath = write_metrics_json(result, tmp_path / "out" / "metrics.json")
    text = jpath.read_text()
    assert "Infinity" not in text and "NaN" not in text
    loaded = json.loads(text)
    assert set(loaded) >= {"mean", "std", "num_volumes", "volumes", "notes"}
    assert set(loaded["mean"]) == set(METRICS)
    assert loaded["volumes"]["file_a.h5"]["psnr"] is None
    assert loaded["volumes"]["file_b.h5"] == result["volumes"]["file_b.h5"]  # exact round trip
    assert loaded["mean"]["psnr"] is None and loaded["mean"]["ssim"] == result["mean"]["ssim"]

    cpath = write_metrics_csv(result, tmp_path / "out" / "metrics.csv")
    rows = list(csv.reader(cpath.read_text().splitlines()))
    assert rows[0] == ["volume", *METRICS]
    assert [r[0] for r in rows[1:]] == [*sorted(targets), "mean", "std"]
    by_name = {r[0]: r[1:] for r in rows[1:]}
    assert float(by_name["file_b.h5"][2]) == result["volumes"]["file_b.h5"]["ssim"]
    assert float(by_name["file_a.h5"][1]) == math.inf == float(by_name["mean"][1])
    assert by_name["std"][1] == ""  # undefined with an infinite value
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes leave no temporaries
