"""Store versions: the compact version-2 layout rebuilds the tensors of version 1, trains the same,
reads per process and per rank, and its index needs no volume file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest
import torch

from ambientmri.data import store_format
from ambientmri.data.batch import collate
from ambientmri.data.store import CorruptedStore, prepare_store
from ambientmri.data.synth import synth_cohort
from ambientmri.errors import InputError
from ambientmri.recipes import validate_recipe
from ambientmri.training.data import StepBatchSampler

CARTESIAN = {"kind": "cartesian", "mask_type": "random", "center_fractions": [0.25], "accelerations": [4]}


def _store_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in (store / "volumes").glob("*.h5"))


@pytest.fixture(scope="module")
def v1_v2(make_recipe, multicoil_dir: Path, tmp_path_factory) -> tuple[CorruptedStore, CorruptedStore]:
    """The same multi-coil data prepared as a version-1 and a version-2 store."""
    root = tmp_path_factory.mktemp("versions")
    rec = make_recipe(CARTESIAN, {"kind": "fastmri", "crop": [32, 32]})
    v1 = CorruptedStore(prepare_store(multicoil_dir, root / "v1", rec, store_version=1).store)
    v2 = CorruptedStore(prepare_store(multicoil_dir, root / "v2", rec).store)
    return v1, v2


def _assert_same(a: CorruptedStore, b: CorruptedStore, maps_atol: float) -> None:
    assert len(a) == len(b) and a.manifest["y_shape"] == b.manifest["y_shape"]
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert torch.equal(x.y, y.y) and x.y.dtype == y.y.dtype == torch.complex64
        assert torch.equal(x.mask, y.mask) and torch.equal(x.further_mask, y.further_mask)
        assert x.scale == y.scale and x.matrix_seed == y.matrix_seed and x.index == y.index
        assert x.maps.shape == y.maps.shape
        if x.maps.numel():
            assert torch.equal(x.maps == 0, y.maps == 0)  # the same support
            assert float((x.maps - y.maps).abs().max()) <= maps_atol


def test_v2_rebuilds_the_v1_tensors(v1_v2) -> None:
    v1, v2 = v1_v2
    assert v1.manifest["version"] == 1 and v2.manifest["version"] == 2
    assert {e["version"] for e in v2.manifest["volumes"]} == {2}
    _assert_same(v1, v2, maps_atol=1e-3)
    assert _store_bytes(v2.path) < 0.6 * _store_bytes(v1.path)
    with h5py.File(v2.path / v2.volumes[0]["file"], "r") as f:
        assert "y" not in f and "maps" not in f and f["maps_values"].dtype == np.float16


def test_v2_forward_model_error_is_small(v1_v2) -> None:
    v1, v2 = v1_v2
    g = torch.Generator().manual_seed(0)
    for i in range(len(v1)):
        a, b = v1[i], v2[i]
        x = torch.randn(v1.grid, generator=g, dtype=torch.complex64)
        exact = v1.operator(a).forward(x)
        err = float((v2.operator(b).forward(x) - exact).norm() / exact.norm())
        assert err <= 1e-3


@pytest.mark.parametrize(
    ("corruption", "crop"),
    [
        ({"kind": "kspace2d", "pattern": "uniform", "acceleration": 3, "calib": [8, 8]}, [32, 32]),
        ({"kind": "inpainting", "p": 0.6, "delta": 0.1}, [32, 32]),
        ({"kind": "gaussian", "m": 100, "delta": 0.2}, [16, 16]),
    ],
)
def test_v2_other_corruptions_round_trip(make_recipe, singlecoil_dir: Path, tmp_path: Path, corruption, crop) -> None:
    rec = make_recipe(corruption, {"kind": "fastmri", "crop": crop})
    v1 = CorruptedStore(prepare_store(singlecoil_dir, tmp_path / "v1", rec, store_version=1).store)
    v2 = CorruptedStore(prepare_store(singlecoil_dir, tmp_path / "v2", rec).store)
    _assert_same(v1, v2, maps_atol=0.0)


def test_newer_store_version_is_refused_in_one_line(v1_v2, tmp_path: Path) -> None:
    store = tmp_path / "future"
    store.mkdir()
    manifest = dict(v1_v2[1].manifest, version=99)
    (store / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="store version 99 is not one this ambientmri reads"):
        CorruptedStore(store)


def test_resume_keeps_volumes_of_the_other_version(make_recipe, multicoil_dir: Path, tmp_path: Path) -> None:
    rec = make_recipe(CARTESIAN, {"kind": "fastmri", "crop": [32, 32]})
    dst = tmp_path / "mixed"

    def stop_after_first_volume(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_store(multicoil_dir, dst, rec, progress=stop_after_first_volume, store_version=1)
    result = prepare_store(multicoil_dir, dst, rec)  # an upgraded ambientmri finishes the store
    store = CorruptedStore(dst)
    assert result.skipped_volumes == 1 and sorted(e["version"] for e in store.manifest["volumes"]) == [1, 2, 2]
    assert store[0].y.shape == (4, 32, 32) and store[5].maps.shape == (4, 32, 32)


# -- identical training -------------------------------------------------------------------------
MULTICOIL = {
    "name": "tiny_mc",
    "data": {"kind": "synthetic", "challenge": "multicoil", "volumes": 2, "heldout_volumes": 1, "slices": 2,
             "matrix": [64, 32], "coils": 4, "crop": [32, 32], "seed": 5},
    "corruption": CARTESIAN,
    "prepare": {"coil_maps": {"calib_width": 8, "max_iter": 10}},
    "model": {"kind": "mlp", "hidden": [32], "embedding_dim": 16},
    "training": {"steps": 20, "batch_size": 2, "lr": 1e-3, "warmup_steps": 2, "log_every": 1,
                 "checkpoint_every": 100, "eval_every": 1000, "ema_halflife_images": 20, "device": "cpu"},
}


def _train_losses(raw: Path, out: Path, version: int) -> list[float]:
    from ambientmri.training.run import train_run

    tree = json.loads(json.dumps(MULTICOIL))
    recipe = validate_recipe(tree, "tiny_mc")
    store = prepare_store(raw, out / "store", recipe, source_kind="fastmri", store_version=version).store
    tree["training"]["store"] = str(store)
    train_run(validate_recipe(tree, "tiny_mc"), out / "run")
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


@pytest.fixture(scope="module")
def tiny_raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_mc_raw")
    synth_cohort(out, challenge="multicoil", volumes=2, slices=2, matrix=(64, 32), coils=4, seed=5)
    return out


def test_training_losses_identical_from_v1_and_v2(tiny_raw: Path, tmp_path: Path) -> None:
    dense = _train_losses(tiny_raw, tmp_path / "v1", 1)
    assert len(dense) == 20
    with mock.patch.object(store_format, "MAPS_DTYPE", np.float32):  # lossless maps: bit for bit
        assert _train_losses(tiny_raw, tmp_path / "v2_exact", 2) == dense
    compact = _train_losses(tiny_raw, tmp_path / "v2", 2)  # the default half-precision maps
    assert compact == pytest.approx(dense, rel=1e-3)


# -- reading per process and per rank -----------------------------------------------------------
class _Probe(CorruptedStore):
    """A store that also reports which process opened the handle it read from."""

    def __getitem__(self, index: int):
        sample = super().__getitem__(index)
        v, _ = self._locate(int(index))
        return sample.index, os.getpid(), self._pid, id(self._files[v])


def test_each_dataloader_worker_opens_its_own_handles(v1_v2) -> None:
    probe = _Probe(v1_v2[1].path)
    parent_handle = probe[0][3]  # the parent opened a volume before the workers fork
    context = "fork" if "fork" in torch.multiprocessing.get_all_start_methods() else None
    loader = torch.utils.data.DataLoader(probe, batch_size=None, num_workers=2, multiprocessing_context=context)
    rows = list(loader)
    assert sorted(int(r[0]) for r in rows) == list(range(len(probe)))
    pids = {int(r[1]) for r in rows}
    assert os.getpid() not in pids and len(pids) == 2
    assert all(int(r[2]) == int(r[1]) for r in rows)  # every handle was opened in the reading process
    assert probe._pid == os.getpid() and id(probe._files[0]) == parent_handle  # the parent's is untouched


def test_a_rank_reads_only_its_share(v1_v2) -> None:
    """The training sampler hands rank r of a torchrun job only positions r, r + world, ... of each
    global batch: the ranks' reads partition the single-process stream, and no rank reads another's."""
    store = v1_v2[1]
    world, batch, steps = 2, 4, 3
    read: list[list[int]] = []
    for rank in range(world):
        sampler = StepBatchSampler(len(store), batch, world=world, rank=rank, seed=1, stop=steps)
        loader = torch.utils.data.DataLoader(store, batch_sampler=sampler, collate_fn=collate)
        read.append([int(i) for b in loader for i in b.index])
    full = StepBatchSampler(len(store), batch, seed=1, stop=steps)
    for step in range(steps):
        expected = full.step_indices(step)
        share = [read[r][step * 2:(step + 1) * 2] for r in range(world)]
        assert share[0] == expected[0::2] and share[1] == expected[1::2]


# -- the index --------------------------------------------------------------------------------
def test_index_of_a_large_store_needs_no_volume_file(v1_v2, tmp_path: Path) -> None:
    manifest = dict(v1_v2[1].manifest)
    manifest["volumes"] = [
        {"file": f"volumes/v{i:05d}.h5", "source": f"v{i:05d}.h5", "subject": f"sub-{i % 997:012x}",
         "slices": 16 + i % 5, "undersampled_input": False, "source_signature": "", "version": 2}
        for i in range(3000)
    ]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with mock.patch.object(h5py, "File", side_effect=AssertionError("a volume file was opened")):
        store = CorruptedStore(tmp_path)
        n = sum(16 + i % 5 for i in range(3000))
        assert len(store) == n and n > 50_000
        assert store.provenance(0)["source"] == "v00000.h5"
        last = store.provenance(n - 1)
        assert last["source"] == "v02999.h5" and last["slice"] == 16 + 2999 % 5 - 1
        assert {**store.provenance(-1), "index": n - 1} == last
        assert store.provenance(17)["slice"] == 1 and store.provenance(17)["source"] == "v00001.h5"
        assert len(store.subjects()) == n
    with pytest.raises(IndexError):
        store.provenance(n)


# -- upgrading a version-1 store ----------------------------------------------------------------
def test_upgrade_writes_the_v2_store_prepare_would(v1_v2, tmp_path: Path, capsys) -> None:
    from ambientmri.data.upgrade import main, upgrade_store

    v1, v2 = v1_v2
    before = {p: p.stat().st_mtime_ns for p in v1.path.rglob("*")}
    assert main([str(v1.path), str(tmp_path / "up")]) == 0
    assert "version 2, 6 slice(s)" in capsys.readouterr().out
    up = CorruptedStore(tmp_path / "up")
    assert up.manifest["version"] == 2 and up.manifest["config_hash"] == v1.manifest["config_hash"]
    _assert_same(up, v2, maps_atol=0.0)  # bit for bit what prepare writes as version 2
    assert {p: p.stat().st_mtime_ns for p in v1.path.rglob("*")} == before  # the old store is only read
    with pytest.raises(InputError, match="already a version-2 store"):
        upgrade_store(up.path, tmp_path / "again")
    assert main([str(v1.path), str(tmp_path / "up")]) == 2  # an existing store is never replaced
    assert "not empty" in capsys.readouterr().err


def test_upgrade_store_command(v1_v2, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ambientmri.cli import EXIT_BAD_INPUT, app

    v1, _ = v1_v2
    result = CliRunner().invoke(app, ["upgrade-store", str(v1.path), "--out", str(tmp_path / "up")])
    assert result.exit_code == 0, result.output
    assert "version 2, 6 slice(s)" in result.output
    assert CorruptedStore(tmp_path / "up").manifest["version"] == 2
    again = CliRunner().invoke(app, ["upgrade-store", str(tmp_path / "up"), "--out", str(tmp_path / "up2")])
    assert again.exit_code == EXIT_BAD_INPUT and "already a version-2 store" in again.output
    assert not (tmp_path / "up2").exists()


def test_batched_reads_match_single_reads_in_and_out_of_workers(v1_v2) -> None:
    for store in v1_v2:
        expected = collate([store[i] for i in (4, 0, 5)])
        for workers in (0, 1):
            loader = torch.utils.data.DataLoader(store, batch_sampler=[[4, 0, 5]], num_workers=workers,
                                                 collate_fn=collate)
            got = next(iter(loader))
            for a, b in zip(expected, got, strict=True):
                assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
        one = store.__getitems__([3, 2])
        assert torch.equal(one[0].y, store[3].y) and torch.equal(one[1].maps, store[2].maps)
        assert collate(one).y.data_ptr() == one[0].y.data_ptr()  # the batch buffer, not a copy


def test_a_process_keeps_a_bounded_number_of_volumes_open(v1_v2) -> None:
    from ambientmri.data import store as store_module

    fresh = CorruptedStore(v1_v2[1].path)
    with mock.patch.object(store_module, "MAX_OPEN_VOLUMES", 2):
        samples = [fresh[i] for i in (0, 2, 4, 0, 5, 1)]  # volumes 0, 1, 2, 0, 2, 0
        assert len(fresh._files) == 2 and list(fresh._files) == [2, 0]
    for got, i in zip(samples, (0, 2, 4, 0, 5, 1), strict=True):
        assert torch.equal(got.y, v1_v2[1][i].y) and torch.equal(got.maps, v1_v2[1][i].maps)
