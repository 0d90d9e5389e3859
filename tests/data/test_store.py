"""prepare -> corrupted store -> Dataset: no clean data, fixed A/Ã, resume, atomicity, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from ambientmri.data.references import clean_reference
from ambientmri.data.store import CorruptedStore, prepare_store
from ambientmri.errors import InputError
from ambientmri.operators.fft import crop_kspace, fft2c_np
from ambientmri.operators.masks import cartesian_mask
from ambientmri.utils import fastmri_volume_seed

CARTESIAN = {"kind": "cartesian", "mask_type": "random", "center_fractions": [0.25], "accelerations": [2]}


def _batch(store: CorruptedStore, indices: list[int]):
    samples = [store[i] for i in indices]
    return samples[0]._replace(
        y=torch.stack([s.y for s in samples]),
        mask=torch.stack([s.mask for s in samples]),
        further_mask=torch.stack([s.further_mask for s in samples]),
        maps=torch.stack([s.maps for s in samples]) if samples[0].maps.numel() else samples[0].maps,
        matrix_seed=torch.tensor([s.matrix_seed for s in samples]),
    )


@pytest.fixture(scope="module")
def mc_store(make_recipe, multicoil_dir: Path, tmp_path_factory) -> CorruptedStore:
    dst = tmp_path_factory.mktemp("stores") / "mc"
    prepare_store(multicoil_dir, dst, make_recipe(CARTESIAN, {"kind": "fastmri", "crop": [32, 32]}))
    return CorruptedStore(dst)


def test_multicoil_store_layout(mc_store: CorruptedStore) -> None:
    m = mc_store.manifest
    assert m["contains_clean_images"] is False
    assert m["num_volumes"] == 3 and m["num_slices"] == 6 and len(mc_store) == 6
    assert m["grid"] == [32, 32] and m["coils"] == 4
    s = mc_store[0]
    assert s.y.shape == (4, 32, 32) and s.y.dtype == torch.complex64
    assert s.mask.shape == (1, 32) and s.maps.shape == (4, 32, 32)
    assert "x0" not in s._fields and "image" not in s._fields and "target" not in s._fields
    assert torch.all(s.further_mask <= s.mask) and s.further_mask.sum() < s.mask.sum()
    subjects = {mc_store.provenance(i)["subject"] for i in range(len(mc_store))}
    assert len(subjects) == 3 and all(sub.startswith("sub-") for sub in subjects)


def test_mask_frequency_is_the_mean_of_every_slice_mask(mc_store: CorruptedStore) -> None:
    expected = np.mean([torch.broadcast_to(mc_store[i].mask, mc_store.grid).numpy() for i in range(len(mc_store))], 0)
    freq = mc_store.mask_frequency()
    assert freq.shape == tuple(mc_store.grid)
    np.testing.assert_allclose(freq, expected, rtol=0, atol=1e-7)
    assert freq.min() >= 0 and freq.max() == 1.0  # ACS lines are always measured


def test_store_holds_no_clean_data(mc_store: CorruptedStore, multicoil_dir: Path) -> None:
    from ambientmri.data.fastmri import FastMRIFile

    for i in range(len(mc_store)):
        s = mc_store[i]
        unmeasured = torch.broadcast_to(s.mask == 0, s.y.shape[-2:])
        assert torch.all(s.y[:, unmeasured] == 0), "stored k-space must be zero wherever A is zero"
        prov = mc_store.provenance(i)
        with FastMRIFile(multicoil_dir / prov["source"]) as f:
            full = crop_kspace(f.kspace(prov["slice"]), (32, 32))
            target = f.target(prov["slice"])
            patient = f.patient_id
        assert patient not in str(mc_store.manifest)
        clean = np.abs(clean_reference(mc_store, i))
        with h5py.File(mc_store.path / mc_store.volumes[0]["file"]) as h:
            arrays = [np.asarray(h[k][prov["slice"]]) for k in h if h[k].ndim >= 2]
        for arr in arrays:
            for ref in (full, np.abs(full), clean, target):
                if arr.shape[-2:] == ref.shape[-2:]:
                    a = np.abs(arr).reshape(-1, *ref.shape[-2:])
                    r = np.abs(ref).reshape(-1, *ref.shape[-2:])
                    for plane in a:
                        for rp in r:
                            corr = np.corrcoef(plane.ravel(), rp.ravel())[0, 1]
                            assert not np.allclose(plane / max(plane.max(), 1e-12), rp / max(rp.max(), 1e-12),
                                                   atol=1e-3), f"a stored array matches a clean slice ({corr:.3f})"


def test_masks_fixed_per_slice_and_reproducible(
    make_recipe, mc_store: CorruptedStore, multicoil_dir: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "again"
    prepare_store(multicoil_dir, dst, make_recipe(CARTESIAN, {"kind": "fastmri", "crop": [32, 32]}))
    again = CorruptedStore(dst)
    for i in range(len(mc_store)):
        a, b = mc_store[i], again[i]
        assert torch.equal(a.mask, b.mask) and torch.equal(a.further_mask, b.further_mask)
        torch.testing.assert_close(a.y, b.y)
    masks = {tuple(mc_store[i].mask.reshape(-1).tolist()) for i in range(len(mc_store))}
    assert len(masks) > 1, "slice seeding should give different masks per slice"


def test_volume_seed_mode_matches_fastmri(make_recipe, multicoil_dir: Path, tmp_path: Path) -> None:
    rec = make_recipe({**CARTESIAN, "seed_mode": "volume"}, {"kind": "fastmri"})
    store = CorruptedStore(prepare_store(multicoil_dir, tmp_path / "vol", rec).store)
    for i in range(len(store)):
        prov = store.provenance(i)
        expected, _ = cartesian_mask("random", 32, 0.25, 2.0, fastmri_volume_seed(Path(prov["source"]).name))
        np.testing.assert_array_equal(store[i].mask.numpy().reshape(-1), expected)


def test_operator_reproduces_measurements_singlecoil(make_recipe, singlecoil_dir: Path, tmp_path: Path) -> None:
    rec = make_recipe(CARTESIAN, {"kind": "fastmri"})
    store = CorruptedStore(prepare_store(singlecoil_dir, tmp_path / "sc", rec).store)
    batch = _batch(store, [0, 1, 2])
    op = store.operator(batch)
    x0 = torch.stack([torch.from_numpy(clean_reference(store, i)) for i in range(3)])
    torch.testing.assert_close(op.forward(x0), batch.y, atol=1e-5, rtol=1e-4)
    further = store.operator(batch, further=True)
    torch.testing.assert_close(further.forward(x0), batch.y * batch.further_mask, atol=1e-5, rtol=1e-4)


def test_sense_operator_approximates_measurements(mc_store: CorruptedStore) -> None:
    batch = _batch(mc_store, [0, 1])
    op = mc_store.operator(batch)
    x0 = torch.stack([torch.from_numpy(clean_reference(mc_store, i)) for i in range(2)])
    residual = (op.forward(x0) - batch.y).norm() / batch.y.norm()
    assert residual < 0.35, f"SENSE model with ESPIRiT maps explains the data poorly: {residual:.3f}"


@pytest.mark.parametrize(
    ("corruption", "crop", "yshape"),
    [
        ({"kind": "inpainting", "p": 0.6, "delta": 0.1}, [32, 32], (32, 32)),
        ({"kind": "block", "size": 0.25}, [32, 32], (32, 32)),
        ({"kind": "kspace2d", "pattern": "uniform", "acceleration": 3, "calib": [8, 8]}, [32, 32], (32, 32)),
        ({"kind": "gaussian", "m": 100, "delta": 0.2}, [16, 16], (100,)),
    ],
    ids=["inpainting", "block", "kspace2d", "gaussian"],
)
def test_other_corruptions(make_recipe, singlecoil_dir: Path, tmp_path: Path, corruption: dict, crop, yshape) -> None:
    rec = make_recipe(corruption, {"kind": "fastmri", "crop": crop})
    store = CorruptedStore(prepare_store(singlecoil_dir, tmp_path / "s", rec).store)
    s = store[1]
    assert s.y.shape == yshape and torch.all(s.further_mask <= s.mask)
    batch = _batch(store, [0, 1])
    op = store.operator(batch)
    x0 = torch.stack([torch.from_numpy(clean_reference(store, i)) for i in range(2)])
    if corruption["kind"] == "gaussian":
        x0 = x0.reshape(2, -1)
    torch.testing.assert_close(op.forward(x0), batch.y, atol=2e-4, rtol=1e-3)


def test_challenge_file_keeps_its_own_mask(make_recipe, multicoil_dir: Path, tmp_path: Path) -> None:
    from ambientmri.data.fastmri import FastMRIFile, write_fastmri

    src = sorted(multicoil_dir.glob("*.h5"))[0]
    with FastMRIFile(src) as f:
        k = f.kspace_all()
    own, num_low = cartesian_mask("equispaced", k.shape[-1], 0.25, 4.0, 5)
    challenge = tmp_path / "challenge"
    write_fastmri(challenge / "file_test.h5", k * own, mask=own,
                  attrs={"acceleration": 4, "num_low_frequencies": num_low, "patient_id": "x"})
    store = CorruptedStore(prepare_store(challenge, tmp_path / "st", make_recipe(CARTESIAN)).store)
    for i in range(len(store)):
        np.testing.assert_array_equal(store[i].mask.numpy().reshape(-1), own)
    assert store.manifest["volumes"][0]["undersampled_input"] is True


def test_resume_after_interruption(make_recipe, multicoil_dir: Path, tmp_path: Path) -> None:
    rec = make_recipe(CARTESIAN, {"kind": "fastmri", "crop": [32, 32]})
    dst = tmp_path / "store"
    prepare_store(multicoil_dir, dst, rec)
    reference = CorruptedStore(dst)
    first = [reference[i].y.clone() for i in range(len(reference))]
    # simulate a run killed after the first volume: no manifest, one volume file missing
    (dst / "manifest.json").unlink()
    victim = sorted((dst / "volumes").glob("*.h5"))[-1]
    victim.unlink()
    (dst / ".prepare.json").write_text(f'{{"config_hash": "{reference.manifest["config_hash"]}"}}')
    with pytest.raises(InputError, match="unfinished"):
        CorruptedStore(dst)
    result = prepare_store(multicoil_dir, dst, rec)
    assert result.skipped_volumes == 2 and result.volumes == 3
    resumed = CorruptedStore(dst)
    for i, y in enumerate(first):
        torch.testing.assert_close(resumed[i].y, y)


def test_other_recipe_into_existing_store_is_refused(
    make_recipe, mc_store: CorruptedStore, multicoil_dir: Path
) -> None:
    rec = make_recipe({**CARTESIAN, "accelerations": [3]}, {"kind": "fastmri", "crop": [32, 32]})
    with pytest.raises(InputError, match="different recipe"):
        prepare_store(multicoil_dir, mc_store.path, rec)


def test_bad_input_leaves_nothing(make_recipe, multicoil_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(multicoil_dir, src)
    bad = src / "zz_broken.h5"
    bad.write_bytes(b"this is not an HDF5 file")
    dst = tmp_path / "out"
    with pytest.raises(InputError, match="zz_broken.h5"):
        prepare_store(src, dst, make_recipe(CARTESIAN))
    assert not dst.exists()


def test_nan_kspace_midway_leaves_nothing(make_recipe, multicoil_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(multicoil_dir, src)
    victim = sorted(src.glob("*.h5"))[-1]
    with h5py.File(victim, "r+") as f:
        f["kspace"][1, 0, 3, 3] = np.nan
    dst = tmp_path / "out"
    with pytest.raises(InputError, match=rf"{victim.name}.*slice 1.*(NaN|nan)"):
        prepare_store(src, dst, make_recipe(CARTESIAN))
    assert not dst.exists()


def test_mixed_sizes_need_a_crop(make_recipe, multicoil_dir: Path, singlecoil_dir: Path, tmp_path: Path) -> None:
    from ambientmri.data.fastmri import write_fastmri

    src = tmp_path / "mixed"
    shutil.copytree(singlecoil_dir, src)
    write_fastmri(src / "other.h5", fft2c_np(np.ones((1, 48, 32), np.complex64)), attrs={"patient_id": "o"})
    with pytest.raises(InputError, match="different matrix sizes.*data.crop"):
        prepare_store(src, tmp_path / "o", make_recipe(CARTESIAN))


def test_dataloader_collates(mc_store: CorruptedStore) -> None:
    loader = torch.utils.data.DataLoader(mc_store, batch_size=3, shuffle=False)
    batch = next(iter(loader))
    assert batch.y.shape == (3, 4, 32, 32) and batch.mask.shape == (3, 1, 32)
    op = mc_store.operator(batch)
    assert op.adjoint(batch.y).shape == (3, 32, 32)


def test_interrupted_prepare_keeps_finished_volumes_and_resumes(
    make_recipe, multicoil_dir: Path, tmp_path: Path
) -> None:
    rec = make_recipe(CARTESIAN, {"kind": "fastmri", "crop": [32, 32]})
    dst = tmp_path / "store"

    def interrupt_after_first_volume(done: int, total: int) -> None:
        if done == 3:  # two slices per volume: the first volume file is complete
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_store(multicoil_dir, dst, rec, progress=interrupt_after_first_volume)
    assert not (dst / "manifest.json").exists()
    assert len(list((dst / "volumes").glob("*.h5"))) == 1
    (dst / "volumes" / ".stale.h5.abc.tmp").write_bytes(b"half")  # what a SIGKILL can leave
    result = prepare_store(multicoil_dir, dst, rec)
    assert result.skipped_volumes == 1 and CorruptedStore(dst).manifest["num_slices"] == 6
    assert not list((dst / "volumes").glob(".*.tmp"))


def test_parallel_prepare_matches_serial(
    make_recipe, mc_store: CorruptedStore, multicoil_dir: Path, tmp_path: Path
) -> None:
    rec = make_recipe(CARTESIAN, {"kind": "fastmri", "crop": [32, 32]})
    parallel = CorruptedStore(prepare_store(multicoil_dir, tmp_path / "par", rec, workers=2).store)
    assert len(parallel) == len(mc_store)
    for i in range(len(mc_store)):
        a, b = mc_store[i], parallel[i]
        assert torch.equal(a.mask, b.mask) and torch.equal(a.further_mask, b.further_mask)
        torch.testing.assert_close(a.y, b.y)
        torch.testing.assert_close(a.maps, b.maps)


def test_parallel_prepare_reports_bad_input(make_recipe, multicoil_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(multicoil_dir, src)
    victim = sorted(src.glob("*.h5"))[0]
    with h5py.File(victim, "r+") as f:
        f["kspace"][0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match=victim.name):
        prepare_store(src, tmp_path / "out", make_recipe(CARTESIAN), workers=2)
    assert not (tmp_path / "out").exists()


def test_coil_compression(make_recipe, multicoil_dir: Path, tmp_path: Path) -> None:
    rec = make_recipe(CARTESIAN, {"kind": "fastmri", "crop": [32, 32]},
                      {"virtual_coils": 2, "coil_maps": {"calib_width": 8, "max_iter": 10}})
    store = CorruptedStore(prepare_store(multicoil_dir, tmp_path / "cc", rec).store)
    assert store.coils == 2
    s = store[0]
    assert s.y.shape == (2, 32, 32) and s.maps.shape == (2, 32, 32)
    unmeasured = torch.broadcast_to(s.mask == 0, s.y.shape[-2:])
    assert torch.all(s.y[:, unmeasured] == 0)
    u = store.coil_compression(0)
    np.testing.assert_allclose(u @ u.conj().T, np.eye(2), atol=1e-5)
    batch = _batch(store, [0, 1])
    x0 = torch.stack([torch.from_numpy(clean_reference(store, i)) for i in range(2)])
    residual = (store.operator(batch).forward(x0) - batch.y).norm() / batch.y.norm()
    assert residual < 0.35


def test_worker_count_is_not_part_of_the_recipe_fingerprint(
    make_recipe, multicoil_dir: Path, tmp_path: Path
) -> None:
    data = {"kind": "fastmri", "crop": [32, 32]}
    prepare_store(multicoil_dir, tmp_path / "s", make_recipe(CARTESIAN, data))
    prep = {"workers": 2, "coil_maps": {"calib_width": 8, "max_iter": 10}}
    rerun = prepare_store(multicoil_dir, tmp_path / "s", make_recipe(CARTESIAN, data, prep))
    assert rerun.skipped_volumes == 3


def test_challenge_mismatch_is_refused(make_recipe, singlecoil_dir: Path, tmp_path: Path) -> None:
    rec = make_recipe(CARTESIAN, {"kind": "fastmri", "challenge": "multicoil"})
    with pytest.raises(InputError, match="is a singlecoil file but data.challenge is multicoil"):
        prepare_store(singlecoil_dir, tmp_path / "s", rec)
    assert not (tmp_path / "s").exists()
