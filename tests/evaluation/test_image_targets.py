"""`evaluate` scores NIfTI and DICOM targets (magnitude volumes) against `reconstruct`'s NAME.h5 files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ambientmri.data.medical import write_dicom_series, write_nifti
from ambientmri.errors import InputError
from ambientmri.evaluation.metrics import evaluate_folders, image_targets, volume_metrics
from ambientmri.recipes import validate_recipe
from ambientmri.sampling.reconstruct import reconstruct

RECIPE = {
    "name": "tiny",
    "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "knee", "volumes": 1, "heldout_volumes": 0,
             "slices": 2, "matrix": [64, 32], "crop": [24, 24], "seed": 3},
    "corruption": {"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
    "model": {"kind": "mlp", "hidden": [32], "embedding_dim": 16},
}


def _volume(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    disk = ((yy - 16) ** 2 + (xx - 16) ** 2 < 100).astype(np.float32)
    return (np.stack([disk * (1 + 0.3 * k) for k in range(3)]) + 0.05 * rng.random((3, 32, 32))).astype(np.float32)


def test_nifti_targets_are_scored_against_the_reconstructions(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    write_nifti(scans / "subject_a.nii.gz", _volume(0))
    write_nifti(scans / "subject_b.nii", _volume(1))
    out = tmp_path / "recon"
    reconstruct(scans, out, "zero-filled", recipe=validate_recipe(RECIPE, "tiny"), previews=False, nifti=False)
    assert sorted(p.name for p in out.glob("*.h5")) == ["subject_a.h5", "subject_b.h5"]
    result = evaluate_folders(scans, out)
    assert sorted(result["volumes"]) == ["subject_a.h5", "subject_b.h5"]
    assert result["target_keys"] == {"subject_a.h5": "nifti", "subject_b.h5": "nifti"}
    # the same numbers as scoring the center 24 x 24 of the image by hand
    with h5py.File(out / "subject_a.h5") as f:
        pred = f["reconstruction"][()]
    expected = volume_metrics(_volume(0)[:, 4:28, 4:28], pred)
    assert result["volumes"]["subject_a.h5"] == pytest.approx(expected)
    assert 10 < result["mean"]["psnr"] < 80 and any("center-cropped" in n for n in result["notes"])
    # the previews of a NIfTI input show its image as the target: 4 columns, 3 slices of 3
    import matplotlib.image

    reconstruct(scans, tmp_path / "with_previews", "zero-filled", recipe=validate_recipe(RECIPE, "tiny"))
    png = matplotlib.image.imread(tmp_path / "with_previews" / "previews" / "subject_a.png")
    assert png.shape[:2] == (round((3 * 3.0 + 0.5) * 80), round(4 * 3.1 * 80))


def test_dicom_targets_are_scored(tmp_path):
    scans = tmp_path / "dicom"
    write_dicom_series(scans / "series1", _volume(2))
    assert image_targets(scans) is not None and image_targets(scans)[0] == "dicom"
    out = tmp_path / "recon"
    reconstruct(scans, out, "zero-filled", recipe=validate_recipe(RECIPE, "tiny"), previews=False, nifti=False)
    result = evaluate_folders(scans, out)
    assert list(result["volumes"]) == ["series1.h5"] and np.isfinite(result["mean"]["ssim"])


def test_a_missing_prediction_and_an_empty_target_folder_are_one_line(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    write_nifti(scans / "subject_a.nii.gz", _volume(0))
    (tmp_path / "pred").mkdir()
    with pytest.raises(InputError, match="subject_a.h5: missing: no reconstruction"):
        evaluate_folders(scans, tmp_path / "pred")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no NIfTI or DICOM series"):
        evaluate_folders(tmp_path / "empty", tmp_path / "pred")
