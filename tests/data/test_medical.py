"""NIfTI and DICOM series: round trips, ordering, validation and anonymity of written DICOM."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from ambientmri.data.medical import (
    read_dicom_series,
    read_nifti,
    read_series,
    write_dicom_series,
    write_nifti,
)
from ambientmri.errors import InputError


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    vol = rng.uniform(0.0, 100.0, (4, 12, 10)).astype(np.float32)
    vol[:, 0, 0] = np.arange(4) * 10  # a slice-order fingerprint
    return vol


def _quantum(vol):
    """Half a 16-bit quantisation step plus float32 rounding."""
    return (vol.max() - vol.min()) / 65535 / 2 + 1e-6 * np.abs(vol).max()


# -- NIfTI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vol.nii", "sub-01_T2w.nii.gz"])
def test_nifti_round_trip(tmp_path, volume, name):
    path = write_nifti(tmp_path / name, volume, spacing=(3.0, 0.5, 0.75), description="t2 axial")
    assert [p.name for p in tmp_path.iterdir()] == [name]
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    series = read_nifti(path)
    np.testing.assert_array_equal(series.images, volume)
    assert series.images.dtype == np.float32
    assert series.spacing == pytest.approx((3.0, 0.5, 0.75))
    np.testing.assert_allclose(series.affine, np.diag([0.5, 0.75, 3.0, 1.0]), atol=1e-6)
    assert series.subject == name.split(".")[0]
    assert series.description == "t2 axial"
    # the data array is (rows, cols, slices)
    np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj), volume.transpose(1, 2, 0))


def test_nifti_affine_and_2d(tmp_path):
    affine = np.array([[0, -0.9, 0, 10], [1.1, 0, 0, -5], [0, 0, 2.0, 7], [0, 0, 0, 1]])
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    series = read_nifti(write_nifti(tmp_path / "one.nii", image, affine=affine))
    assert series.images.shape == (1, 3, 4)
    np.testing.assert_allclose(series.affine, affine, atol=1e-6)
    assert series.spacing == pytest.approx((2.0, 1.1, 0.9))


def test_nifti_single_volume_4d_is_accepted(tmp_path, volume):
    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(volume.transpose(1, 2, 0)[..., None], np.eye(4)), path)
    assert read_nifti(path).images.shape == volume.shape


def _bad_nifti(tmp_path):
    four_d = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.float32), np.eye(4)), four_d)
    complex_ = tmp_path / "complex.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.complex64), np.eye(4)), complex_)
    nan = tmp_path / "nan.nii"
    data = np.zeros((4, 4, 3), np.float32)
    data[1, 2, 0] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), nan)
    junk = tmp_path / "junk.nii"
    junk.write_bytes(b"definitely not nifti" * 30)
    good = write_nifti(tmp_path / "good.nii.gz", np.ones((3, 32, 32), np.float32) * 7)
    truncated = tmp_path / "truncated.nii.gz"
    raw = gzip.decompress(good.read_bytes())
    truncated.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    return {
        "expected one 2-D or 3-D volume": four_d,
        "complex NIfTI data": complex_,
        "NaN or Inf": nan,
        "not a readable NIfTI file": junk,
        "truncated or corrupt": truncated,
        "no such file": tmp_path / "missing.nii",
    }


def test_nifti_input_errors(tmp_path):
    for problem, path in _bad_nifti(tmp_path).items():
        with pytest.raises(InputError) as caught:
            read_nifti(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and problem in message, (problem, message)
        assert "\n" not in message


# -- DICOM --------------------------------------------------------------------------------------


def test_dicom_round_trip(tmp_path, volume):
    folder = write_dicom_series(
        tmp_path / "series", volume, spacing=(3.0, 0.5, 0.75), series_description="synthetic T2"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]  # no temp folder left
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == ["IM0001.dcm", "IM0002.dcm", "IM0003.dcm", "IM0004.dcm"]
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage
    assert (ds.BitsAllocated, ds.PixelRepresentation, ds.pixel_array.dtype) == (16, 0, np.uint16)
    assert [float(x) for x in ds.PixelSpacing] == [0.5, 0.75]
    assert float(ds.SliceThickness) == 3.0
    series = read_dicom_series(folder)
    assert series.images.dtype == np.float32 and series.images.shape == volume.shape
    assert np.abs(series.images - volume).max() <= _quantum(volume)
    assert series.spacing == pytest.approx((3.0, 0.5, 0.75))
    assert series.description == "synthetic T2"
    assert series.subject == "series"  # no PatientID written: the folder names the subject
    assert read_dicom_series(write_dicom_series(tmp_path / "x", volume, patient_id="P7")).subject == "P7"
    # the affine maps voxel (row, col, slice) to the slice positions (RAS = -LPS in x and y)
    for k, f in enumerate(files):
        ipp = np.array([float(x) for x in pydicom.dcmread(f).ImagePositionPatient])
        world = series.affine @ np.array([0, 0, k, 1.0])
        np.testing.assert_allclose(world[:3], ipp * [-1, -1, 1], atol=1e-6)


def test_dicom_keeps_nifti_geometry(tmp_path, volume):
    affine = np.array([[0, 0, -2.5, 30], [-0.8, 0, 0, 12], [0, 0.6, 0, -40], [0, 0, 0, 1.0]])
    folder = write_dicom_series(tmp_path / "sag", volume, affine=affine)
    series = read_series(folder)
    np.testing.assert_allclose(series.affine, affine, atol=1e-6)
    assert series.spacing == pytest.approx((2.5, 0.8, 0.6))
    assert np.abs(series.images - volume).max() <= _quantum(volume)
    # and back to NIfTI without loss of geometry
    nii = read_nifti(write_nifti(tmp_path / "sag.nii.gz", series.images, affine=series.affine))
    np.testing.assert_allclose(nii.affine, affine, atol=1e-5)


def test_dicom_sorted_by_position_not_file_name(tmp_path, volume):
    folder = write_dicom_series(tmp_path / "s", volume)
    files = sorted(folder.iterdir())
    for i, f in enumerate(files):  # names now run opposite to the slice positions
        f.rename(folder / f"z{len(files) - i:02d}")
    for f in folder.iterdir():  # and the instance numbers say nothing
        ds = pydicom.dcmread(f)
        del ds.InstanceNumber
        ds.save_as(f)
    series = read_dicom_series(folder)
    assert np.abs(series.images - volume).max() <= _quantum(volume)


def test_dicom_sorted_by_instance_number_without_geometry(tmp_path, volume):
    folder = write_dicom_series(tmp_path / "s", volume)
    for i, f in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        f.unlink()
        ds.save_as(folder / f"x{9 - i}.dcm")
    series = read_dicom_series(folder)
    np.testing.assert_array_equal(series.images[:, 0, 0].round(), [0, 10, 20, 30])
    np.testing.assert_allclose(series.affine, np.diag([1.0, 1.0, 1.0, 1.0]))


def test_dicom_rescale_applied_and_non_dicom_skipped(tmp_path, volume):
    folder = write_dicom_series(tmp_path / "s", volume)
    (folder / "README.txt").write_text("notes from the scanner room\n")
    f = sorted(folder.glob("*.dcm"))[1]
    ds = pydicom.dcmread(f)
    ds.RescaleSlope, ds.RescaleIntercept = "2", "-10"
    ds.save_as(f)
    series = read_dicom_series(folder)
    np.testing.assert_allclose(series.images[1], ds.pixel_array * 2.0 - 10.0, rtol=1e-6)


def test_dicom_without_pixel_data_names_the_file(tmp_path, volume):
    folder = write_dicom_series(tmp_path / "s", volume)
    bad = sorted(folder.iterdir())[2]
    ds = pydicom.dcmread(bad)
    del ds.PixelData
    ds.save_as(bad)
    with pytest.raises(InputError) as caught:
        read_dicom_series(folder)
    assert str(caught.value) == f"{bad}: DICOM file has no pixel data"


def test_dicom_folder_errors(tmp_path, volume):
    mixed = write_dicom_series(tmp_path / "mixed", volume)
    small = write_dicom_series(tmp_path / "small", volume[:1, :6, :6])
    ds = pydicom.dcmread(small / "IM0001.dcm")
    ds.SeriesInstanceUID = pydicom.dcmread(mixed / "IM0001.dcm").SeriesInstanceUID
    ds.save_as(mixed / "extra.dcm")
    with pytest.raises(InputError, match=r"slices have different sizes: 12x10 .* and 6x6"):
        read_dicom_series(mixed)
    two = write_dicom_series(tmp_path / "two", volume)
    (two / "other.dcm").write_bytes((small / "IM0001.dcm").read_bytes())
    with pytest.raises(InputError, match="holds 2 DICOM series"):
        read_dicom_series(two)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    with pytest.raises(InputError, match=f"^{empty}: no DICOM files"):
        read_dicom_series(empty)


def test_written_dicom_has_no_input_identifiers_and_fresh_uids(tmp_path, volume):
    # an "acquired" series carrying identifiers
    source = write_dicom_series(tmp_path / "scan", volume)
    secrets = {"Doe^Jane", "MRN-0042", "19700101", "General Hospital", "Dr^Who"}
    for f in source.iterdir():
        ds = pydicom.dcmread(f)
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "MRN-0042", "19700101"
        ds.InstitutionName, ds.ReferringPhysicianName = "General Hospital", "Dr^Who"
        ds.save_as(f)
    series = read_series(source)
    assert series.subject == "MRN-0042"
    source_uids = _uids(source)

    out = write_dicom_series(tmp_path / "out", series.images, affine=series.affine, series_description="generated")
    again = write_dicom_series(tmp_path / "again", series.images)
    written = [pydicom.dcmread(f) for f in sorted(out.iterdir())]
    for ds in written:
        values = " ".join(str(el.value) for el in ds.iterall() if el.VR != "OW")
        assert not any(secret in values for secret in secrets)
        assert str(ds.PatientName) == "ANONYMOUS" and ds.PatientID == ""
        assert ds.PatientIdentityRemoved == "YES"
    out_uids, again_uids = _uids(out), _uids(again)
    assert not out_uids & source_uids and not out_uids & again_uids
    instances = [ds.SOPInstanceUID for ds in written]
    assert len(set(instances)) == len(instances) == volume.shape[0]
    assert len({ds.SeriesInstanceUID for ds in written}) == 1
    assert len({ds.StudyInstanceUID for ds in written}) == 1
    for ds in written:
        pydicom.uid.UID(ds.SOPInstanceUID).is_valid  # noqa: B018
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def _uids(folder):
    keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
    return {str(pydicom.dcmread(f).get(k)) for f in folder.iterdir() for k in keys}


def test_write_dicom_replaces_its_own_series_only(tmp_path, volume):
    folder = write_dicom_series(tmp_path / "s", volume)
    write_dicom_series(folder, volume[:2])
    assert len(list(folder.iterdir())) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        write_dicom_series(folder, volume)
    assert (folder / "notes.txt").read_text() == "mine" and len(list(folder.iterdir())) == 3
    write_dicom_series(folder, volume[:1], overwrite=True)
    assert [p.name for p in folder.iterdir()] == ["IM0001.dcm"]


# -- dispatch -----------------------------------------------------------------------------------


def test_read_series_dispatch(tmp_path, volume):
    nii = write_nifti(tmp_path / "a.nii.gz", volume)
    folder = write_dicom_series(tmp_path / "dcm", volume)
    assert read_series(nii).images.shape == volume.shape
    assert read_series(folder).images.shape == volume.shape
    single = read_series(folder / "IM0002.dcm")
    assert single.images.shape == (1, 12, 10)
    assert np.abs(single.images[0] - volume[1]).max() <= _quantum(volume)
    other = tmp_path / "scan.txt"
    other.write_text("hello")
    with pytest.raises(InputError, match="unsupported file type"):
        read_series(other)
    with pytest.raises(InputError, match="no such file or folder"):
        read_series(tmp_path / "nothing")


def test_write_nifti_refuses_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "scan.nii.gz"
    path.write_bytes(b"the user's file")
    with pytest.raises(FileExistsError, match="nothing was changed"):
        write_nifti(path, np.ones((2, 8, 8), np.float32))
    assert path.read_bytes() == b"the user's file"
    write_nifti(path, np.ones((2, 8, 8), np.float32), overwrite=True)
    assert read_nifti(path).images.shape[0] == 2
