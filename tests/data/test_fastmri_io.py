"""fastMRI HDF5 reading, writing, header parsing, targets and input validation."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from ambientmri.data.fastmri import (
    FastMRIFile,
    build_ismrmrd_header,
    parse_ismrmrd_header,
    rss,
    target_from_kspace,
    write_fastmri,
)
from ambientmri.errors import InputError
from ambientmri.operators.fft import center_crop, fft2c, fft2c_np, ifft2c_np


def _complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


# -- header -------------------------------------------------------------------------------------


def test_header_round_trip_and_padding():
    xml = build_ismrmrd_header((640, 368, 1), (320, 320, 1), center=184, maximum=367)
    assert b"http://www.ismrm.org/ISMRMRD" in xml
    hdr = parse_ismrmrd_header(xml)
    assert hdr["encoded_size"] == (640, 368, 1)
    assert hdr["recon_size"] == (320, 320, 1)
    assert (hdr["center"], hdr["maximum"]) == (184, 367)
    assert (hdr["padding_left"], hdr["padding_right"]) == (0, 368)


def test_header_asymmetric_padding():
    # a 368-wide acquisition that only encoded lines 0..359 around center 180
    hdr = parse_ismrmrd_header(build_ismrmrd_header((640, 368, 1), (320, 320, 1), 180, 359))
    assert hdr["padding_left"] == 368 // 2 - 180 == 4
    assert hdr["padding_right"] == 4 + 359 + 1


def test_header_errors():
    with pytest.raises(InputError, match="malformed ismrmrd_header"):
        parse_ismrmrd_header(b"<ismrmrdHeader><encoding>", source="f.h5")
    xml = b'<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding/></ismrmrdHeader>'
    with pytest.raises(InputError, match="lacks encoding/encodedSpace/matrixSize/x"):
        parse_ismrmrd_header(xml, source="f.h5")


# -- round trips --------------------------------------------------------------------------------


def test_singlecoil_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    k = _complex(rng, (2, 32, 24))
    target = rng.random((2, 16, 16), dtype=np.float32)
    path = write_fastmri(
        tmp_path / "file1000001.h5",
        k,
        targets={"reconstruction_esc": target, "reconstruction_rss": target + 1},
        attrs={"acquisition": "CORPD_FBK", "max": 1.5, "norm": 3.0, "patient_id": "abc"},
    )
    assert [p.name for p in tmp_path.iterdir()] == ["file1000001.h5"]  # no temp file left
    with FastMRIFile(path) as f:
        info = f.info
        assert (info.challenge, info.num_slices, info.num_coils) == ("singlecoil", 2, 1)
        assert info.shape == (32, 24)
        assert info.targets == ("reconstruction_esc", "reconstruction_rss")
        assert info.target_shape == (16, 16) == info.recon_size
        assert info.mask is None and not info.is_undersampled
        assert info.attrs == {"acquisition": "CORPD_FBK", "max": 1.5, "norm": 3.0, "patient_id": "abc"}
        assert info.header["encoded_size"] == (32, 24, 1)
        assert info.header["recon_size"] == (16, 16, 1)
        assert (info.header["padding_left"], info.header["padding_right"]) == (0, 24)
        assert f.kspace(1).shape == (1, 32, 24) and f.kspace(1).dtype == np.complex64
        np.testing.assert_array_equal(f.kspace(1)[0], k[1])
        np.testing.assert_array_equal(f.kspace_all()[:, 0], k)
        np.testing.assert_array_equal(f.target(0), target[0])  # default: ESC
        np.testing.assert_array_equal(f.target(0, "reconstruction_rss"), target[0] + 1)
        np.testing.assert_array_equal(f.target_all(), target)
        assert f.patient_id == "abc" and len(f) == 2


def test_multicoil_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    k = _complex(rng, (3, 4, 32, 20))
    target = np.stack([target_from_kspace(s, (16, 16)) for s in k])
    path = write_fastmri(tmp_path / "vol.h5", k, targets={"reconstruction_rss": target})
    with FastMRIFile(path) as f:
        assert (f.info.challenge, f.info.num_coils, f.info.num_slices) == ("multicoil", 4, 3)
        np.testing.assert_array_equal(f.kspace(2), k[2])
        np.testing.assert_array_equal(f.kspace(-1), k[2])
        np.testing.assert_array_equal(f.kspace_all(), k)
        assert f.target(1).dtype == np.float32
        np.testing.assert_array_equal(f.target(1), target[1])
        assert f.patient_id == "vol"  # no attr: the file stem
        with pytest.raises(IndexError):
            f.kspace(3)


def test_challenge_file_mask_and_positive_zeros(tmp_path):
    rng = np.random.default_rng(3)
    k = _complex(rng, (2, 3, 16, 12))
    k[0, 0, 0, 0] = complex(-0.0, -0.0)  # a measured -0 must be stored as +0 too
    mask = np.zeros(12, np.float32)
    mask[[0, 4, 5, 6, 9]] = 1
    path = write_fastmri(tmp_path / "test.h5", k, mask=mask, attrs={"acceleration": 4, "num_low_frequencies": 3})
    with h5py.File(path) as raw:
        assert raw["mask"].dtype == np.float32
        assert raw.attrs["num_low_frequency"] == 3
        assert "reconstruction_rss" not in raw
        stored = raw["kspace"][()]
    parts = stored.view(np.float32)
    assert not np.signbit(parts[parts == 0]).any()
    assert (stored[..., mask == 0] == 0).all()
    np.testing.assert_array_equal(stored[..., mask == 1][1:], k[..., mask == 1][1:])
    with FastMRIFile(path) as f:
        assert f.info.is_undersampled
        np.testing.assert_array_equal(f.info.mask, mask)
        assert f.info.attrs["acceleration"] == 4
        assert f.info.attrs["num_low_frequency"] == f.info.attrs["num_low_frequencies"] == 3
        assert f.info.targets == ()
        assert f.info.recon_size == (8, 8)  # from the default header
        with pytest.raises(InputError, match="no reconstruction target"):
            f.target(0)


def test_bool_mask_kept(tmp_path):
    k = _complex(np.random.default_rng(4), (1, 8, 8))
    mask = np.arange(8) % 2 == 0
    path = write_fastmri(tmp_path / "b.h5", k, mask=mask)
    with h5py.File(path) as raw:
        assert raw["mask"].dtype == np.bool_
    with FastMRIFile(path) as f:
        assert f.info.mask.dtype == np.float32
        np.testing.assert_array_equal(f.info.mask, mask.astype(np.float32))


def test_writer_rejects_bad_arrays(tmp_path):
    k = np.zeros((2, 8, 8), np.complex64)
    with pytest.raises(ValueError, match="kspace must be"):
        write_fastmri(tmp_path / "a.h5", k[0])
    with pytest.raises(ValueError, match="mask must be 1-D of length W=8"):
        write_fastmri(tmp_path / "a.h5", k, mask=np.ones(7))
    with pytest.raises(ValueError, match="target 'reconstruction_rss'"):
        write_fastmri(tmp_path / "a.h5", k, targets={"reconstruction_rss": np.zeros((3, 4, 4))})
    k[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_fastmri(tmp_path / "a.h5", k)
    assert list(tmp_path.iterdir()) == []


def test_file_is_picklable(tmp_path):
    import pickle

    path = write_fastmri(tmp_path / "p.h5", np.ones((1, 8, 8), np.complex64))
    f = FastMRIFile(path)
    f.kspace(0)
    g = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(g.kspace(0), f.kspace(0))
    f.close()
    g.close()


# -- input errors -------------------------------------------------------------------------------


def _write_raw(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
    return path


def _bad_files(tmp_path):
    good = write_fastmri(tmp_path / "good.h5", np.ones((2, 16, 8), np.complex64))
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.h5"
    text.write_text("this is not an HDF5 file\n")
    nan = np.ones((3, 2, 8, 8), np.complex64)
    nan[1, 0, 2, 2] = np.nan
    inf = np.ones((2, 8, 8), np.complex64)
    inf[1, 0, 0] = np.inf
    bad_header = write_fastmri(tmp_path / "bad_header.h5", np.ones((1, 8, 8), np.complex64), header=b"<ismrmrdHeader")
    return {
        "not an HDF5 file": (text, "info"),
        "truncated or corrupt": (truncated, "info"),
        "no such file": (tmp_path / "missing.h5", "info"),
        "no 'kspace' dataset": (_write_raw(tmp_path / "nok.h5", image=np.ones((2, 4))), "info"),
        "has 2 dimensions": (_write_raw(tmp_path / "dim.h5", kspace=np.ones((4, 4), "c8")), "info"),
        "expected complex": (_write_raw(tmp_path / "real.h5", kspace=np.ones((1, 4, 4), "f4")), "info"),
        "k-space slice 1 contains NaN": (_write_raw(tmp_path / "nan.h5", kspace=nan), "kspace1"),
        "k-space slice 1 contains NaN or Inf": (_write_raw(tmp_path / "inf.h5", kspace=inf), "all"),
        "'mask' has shape (7,); expected (8,)": (
            _write_raw(tmp_path / "mask.h5", kspace=np.ones((1, 8, 8), "c8"), mask=np.ones(7)),
            "info",
        ),
        "malformed ismrmrd_header": (bad_header, "info"),
    }


def test_every_input_error_names_the_file(tmp_path):
    for problem, (path, action) in _bad_files(tmp_path).items():
        with FastMRIFile(path) as f, pytest.raises(InputError) as caught:
            if action == "info":
                f.info  # noqa: B018
            elif action == "kspace1":
                f.kspace(0)  # a good slice reads fine ...
                f.kspace(1)  # ... the bad one names itself
            else:
                f.kspace_all()
        message = str(caught.value)
        assert message.startswith(f"{path}: "), message
        assert problem in message, (problem, message)
        assert "\n" not in message


# -- targets ------------------------------------------------------------------------------------


def test_target_from_kspace_matches_definition():
    rng = np.random.default_rng(5)
    coil_images = _complex(rng, (3, 20, 14))
    k = fft2c_np(coil_images)
    expected = np.sqrt((np.abs(center_crop(coil_images, (10, 10))) ** 2).sum(0))
    np.testing.assert_allclose(target_from_kspace(k, (10, 10, 1)), expected, rtol=1e-5)
    single = target_from_kspace(k[0], (10, 10))
    assert single.dtype == np.float32 and single.shape == (10, 10)
    np.testing.assert_array_equal(single, target_from_kspace(k[:1], (10, 10)))
    np.testing.assert_allclose(single, np.abs(center_crop(coil_images[0], (10, 10))), rtol=1e-5)
    # odd crop offsets follow fastMRI: from = (size - crop) // 2
    assert np.array_equal(center_crop(np.arange(7 * 5).reshape(7, 5), (2, 2)), np.array([[11, 12], [16, 17]]))
    np.testing.assert_allclose(ifft2c_np(k), coil_images, atol=1e-5)


def test_rss_numpy_and_torch_agree():
    x = _complex(np.random.default_rng(6), (4, 5, 6))
    np.testing.assert_allclose(rss(torch.from_numpy(x)).numpy(), rss(x), rtol=1e-6)
    np.testing.assert_allclose(rss(x.transpose(1, 0, 2), axis=1), rss(x), rtol=1e-6)


# -- the real fastMRI package (absent in CI) -----------------------------------------------------


def _raw(kspace, mask, target, attrs, fname, slice_num):
    return kspace, mask, target, attrs, fname, slice_num


@pytest.mark.parametrize("challenge", ["multicoil", "singlecoil"])
def test_fastmri_slicedataset_reads_synth(challenge, multicoil_files, singlecoil_files):
    fastmri = pytest.importorskip("fastmri")
    from fastmri.data import SliceDataset
    from fastmri.data import transforms as T

    files = multicoil_files if challenge == "multicoil" else singlecoil_files
    dataset = SliceDataset(files[0].parent, challenge=challenge, transform=_raw)
    assert len(dataset) == sum(FastMRIFile(p).info.num_slices for p in files)
    for index in range(len(dataset)):
        kspace, mask, target, attrs, fname, slice_num = dataset[index]
        with FastMRIFile(files[0].parent / fname) as ours:
            info = ours.info
            np.testing.assert_array_equal(
                kspace, ours.kspace(slice_num)[0] if challenge == "singlecoil" else ours.kspace(slice_num)
            )
        assert mask is None
        assert attrs["padding_left"] == info.header["padding_left"] == 0
        assert attrs["padding_right"] == info.header["padding_right"] == info.shape[1]
        assert tuple(attrs["encoding_size"]) == (*info.shape, 1)
        assert tuple(attrs["recon_size"]) == (*info.recon_size, 1)
        assert attrs["patient_id"] == info.attrs["patient_id"]
        image = fastmri.ifft2c(T.to_tensor(kspace))
        image = T.complex_center_crop(image, tuple(attrs["recon_size"][:2]))
        theirs = fastmri.complex_abs(image)
        if challenge == "multicoil":
            theirs = fastmri.rss(theirs, dim=0)
        np.testing.assert_allclose(target, theirs.numpy(), rtol=1e-5, atol=1e-6 * target.max())


def test_fastmri_slicedataset_reads_challenge_file(tmp_path):
    pytest.importorskip("fastmri")
    from fastmri.data import SliceDataset

    from ambientmri.data.synth import synth_challenge_file

    mask = np.zeros(40, np.float32)
    mask[16:24] = 1
    mask[::5] = 1
    synth_challenge_file(tmp_path / "file_brain_AXT2_3000.h5", mask, matrix=(64, 40), coils=4, slices=2)
    kspace, got_mask, target, attrs, _, _ = SliceDataset(tmp_path, "multicoil", _raw)[1]
    assert target is None
    np.testing.assert_array_equal(got_mask, mask)
    assert attrs["acceleration"] == round(40 / mask.sum())
    assert attrs["num_low_frequency"] == 9  # columns 15..23 (15 is sampled by ::5)
    assert (kspace[..., mask == 0] == 0).all()


def test_fft2c_matches_fastmri():
    fastmri = pytest.importorskip("fastmri")
    x = _complex(np.random.default_rng(7), (3, 2, 17, 12))
    ours = fft2c(torch.from_numpy(x))
    theirs = fastmri.fft2c(torch.view_as_real(torch.from_numpy(x)))
    np.testing.assert_allclose(torch.view_as_real(ours).numpy(), theirs.numpy(), atol=1e-5)
    back = fastmri.ifft2c(theirs)
    np.testing.assert_allclose(
        ifft2c_np(x), torch.view_as_complex(fastmri.ifft2c(torch.view_as_real(torch.from_numpy(x)))).numpy(), atol=1e-5
    )
    np.testing.assert_allclose(torch.view_as_complex(back).numpy(), x, atol=1e-5)
