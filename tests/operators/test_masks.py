"""Tests of ambientmri.operators.masks (golden fastMRI vectors, RNG hygiene, 2-D masks) and
ambientmri.plotting.plot_mask. The golden file comes from tests/golden/make_golden_masks.py, run
with the reference fastMRI 0.3.0 environment; these tests never import fastmri."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ambientmri.operators.masks import (
    CARTESIAN_MASK_TYPES,
    MASK_TYPES,
    CartesianMaskFunc,
    cartesian_mask,
    center_slice,
    create_mask_func,
    poisson_mask,
    uniform_random_mask_2d,
)
from ambientmri.plotting import plot_mask

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "fastmri_masks.npz"
FILE_SEED = tuple(map(ord, "file1000001.h5"))


@pytest.fixture(scope="module")
def golden() -> tuple[dict, np.ndarray]:
    with np.load(GOLDEN, allow_pickle=False) as data:
        meta = json.loads(data["meta"].tobytes().decode("utf-8"))
        bits = np.unpackbits(data["bits"])[: meta["nbits"]].astype(np.float32)
    return meta, bits


def _seed(value):
    return tuple(value) if isinstance(value, list) else value


def test_mask_type_lists() -> None:
    assert CARTESIAN_MASK_TYPES == (
        "random", "equispaced", "equispaced_fraction", "magic", "magic_fraction"
    )
    assert MASK_TYPES == (*CARTESIAN_MASK_TYPES, "poisson", "uniform2d")


def test_golden_fastmri_bit_exact(golden) -> None:
    meta, bits = golden
    assert meta["fastmri_version"] == "0.3.0"
    total = matched = 0
    failures: list[str] = []
    for case in meta["valid"]:
        func = create_mask_func(case["type"], case["cfs"], case["accs"],
                                seed=_seed(case["init_seed"]),
                                allow_any_combination=case["any"])
        width = case["width"]
        for offset, seed, num_low, start in case["calls"]:
            total += 1
            mask, got_low = func(width, offset=offset, seed=_seed(seed))
            want = bits[start : start + width]
            ok = (mask.dtype == np.float32 and mask.shape == (width,)
                  and got_low == num_low and np.array_equal(mask, want))
            matched += ok
            if not ok and len(failures) < 5:
                failures.append(f"{case['type']} W={width} cfs={case['cfs']} accs={case['accs']} "
                                f"offset={offset} seed={seed}: low {got_low} vs {num_low}, "
                                f"{int((mask != want).sum())} columns differ")
    print(f"golden fastMRI masks: {matched}/{total} matched")
    assert matched == total, "\n".join(failures)
    assert total > 5000


def test_golden_single_pair_via_cartesian_mask(golden) -> None:
    meta, bits = golden
    for case in meta["valid"][::7]:
        if len(case["calls"]) != 1 or len(case["cfs"]) != 1:
            continue
        offset, seed, num_low, start = case["calls"][0]
        mask, got_low = cartesian_mask(case["type"], case["width"], case["cfs"][0],
                                       case["accs"][0], seed=_seed(seed), offset=offset)
        assert got_low == num_low
        np.testing.assert_array_equal(mask, bits[start : start + case["width"]])


def test_golden_error_cases_raise(golden) -> None:
    meta, _ = golden
    assert len(meta["errors"]) > 50
    for case in meta["errors"]:
        with pytest.raises(ValueError) as info:
            cartesian_mask(case["type"], case["width"], case["cf"], case["acc"], seed=0)
        message = str(info.value)
        assert "\n" not in message
        assert repr(case["acc"]) in message, message


def test_global_numpy_rng_untouched() -> None:
    np.random.seed(2024)
    before = np.random.get_state()
    for kind in CARTESIAN_MASK_TYPES:
        func = create_mask_func(kind, [0.08, 0.04], [4, 8])
        func(368)
        func(368, seed=FILE_SEED)
        func(368, offset=1, seed=3)
        cartesian_mask(kind, 640, 0.08, 4, seed=0)
        with pytest.raises(ValueError):
            cartesian_mask(kind, 6, 0.08, 8, seed=0)
    uniform_random_mask_2d((64, 64), 4, calib=(8, 8), seed=1)
    poisson_mask((48, 48), 3, calib=(8, 8), seed=1)
    with pytest.raises(ValueError):
        poisson_mask((32, 32), 30, calib=(8, 8), seed=0)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1])
    assert before[2:] == after[2:]


def test_temp_seed_restores_instance_state() -> None:
    for kind in CARTESIAN_MASK_TYPES:
        a = create_mask_func(kind, [0.08, 0.04], [4, 8], seed=5)
        b = create_mask_func(kind, [0.08, 0.04], [4, 8], seed=5)
        first_a = a(320)[0]
        a(320, seed=FILE_SEED)  # temporary reseed: must not advance a's stream
        with pytest.raises(ValueError):
            a(0)
        np.testing.assert_array_equal(first_a, b(320)[0])
        np.testing.assert_array_equal(a(320)[0], b(320)[0])
        m1, n1 = a(320, seed=11)
        m2, n2 = b(320, seed=11)
        np.testing.assert_array_equal(m1, m2)
        assert n1 == n2


def test_unknown_type_message() -> None:
    with pytest.raises(ValueError) as info:
        create_mask_func("spiral", [0.08], [4])
    message = str(info.value)
    assert "'spiral'" in message and "\n" not in message
    for kind in CARTESIAN_MASK_TYPES:
        assert kind in message


@pytest.mark.parametrize("cf", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_bad_center_fraction(cf: float) -> None:
    with pytest.raises(ValueError, match="center_fraction"):
        cartesian_mask("random", 320, cf, 4, seed=0)


@pytest.mark.parametrize(
    ("kind", "width", "cf", "acc", "match"),
    [
        ("random", 320, 0.08, 1.0, "acceleration 1.0"),
        ("random", 320, 0.08, 0.5, "acceleration 0.5"),
        ("random", 320, 0.16, 8, "unreachable"),
        ("equispaced_fraction", 320, 0.16, 8, "unreachable"),
        ("equispaced_fraction", 100, 0.25, 4, "unreachable"),  # num_low * R == width
        ("magic_fraction", 320, 0.16, 8, "unreachable"),
        ("equispaced", 320, 0.08, 3.5, "integer"),
        ("magic", 320, 0.08, 2.5, "integer"),
        ("equispaced", 4, 0.08, 6, "exceeds the width"),
    ],
)
def test_unreachable_acceleration(kind: str, width: int, cf: float, acc: float,
                                  match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        cartesian_mask(kind, width, cf, acc, seed=0)
    assert "\n" not in str(info.value)


def test_bad_width_offset_seed_and_lengths() -> None:
    func = create_mask_func("equispaced", [0.08], [4])
    for width in (0, -3, 2.5):
        with pytest.raises(ValueError, match="width"):
            func(width)
    with pytest.raises(ValueError, match="offset"):
        func(320, offset=-1)
    with pytest.raises(ValueError, match="seed"):
        func(320, seed=-5)
    with pytest.raises(ValueError, match="lengths must match"):
        create_mask_func("random", [0.08, 0.04], [4])
    # integer-valued float strides are accepted (fastMRI itself fails on them)
    np.testing.assert_array_equal(cartesian_mask("equispaced", 64, 0.08, 4.0, seed=1)[0],
                                  cartesian_mask("equispaced", 64, 0.08, 4, seed=1)[0])


def test_mask_func_classes_and_properties() -> None:
    for kind in CARTESIAN_MASK_TYPES:
        func = create_mask_func(kind, [0.08], [4], seed=0)
        assert isinstance(func, CartesianMaskFunc) and func.mask_type == kind
        mask, num_low = func(368)
        assert mask.dtype == np.float32 and mask.shape == (368,)
        assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
        assert mask[center_slice(368, num_low)].all()


def test_center_slice() -> None:
    assert center_slice(368, 29) == slice(170, 199)
    assert center_slice(64, 24) == slice(20, 44)
    assert center_slice(10, 0) == slice(5, 5)


@pytest.mark.parametrize(
    ("func", "shape", "acc", "calib"),
    [
        (uniform_random_mask_2d, (96, 80), 4.0, (12, 12)),
        (uniform_random_mask_2d, (64, 64), 6.0, (24, 24)),
        (poisson_mask, (64, 64), 4.0, (12, 12)),
        (poisson_mask, (48, 80), 3.0, (8, 10)),
    ],
)
def test_2d_masks(func, shape, acc, calib) -> None:
    mask = func(shape, acc, calib=calib, seed=3)
    assert mask.dtype == np.float32 and mask.shape == shape
    assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(mask, func(shape, acc, calib=calib, seed=3))
    assert not np.array_equal(mask, func(shape, acc, calib=calib, seed=4))
    box = (center_slice(shape[0], calib[0]), center_slice(shape[1], calib[1]))
    assert mask[box].all()
    achieved = mask.size / mask.sum()
    assert abs(achieved - acc) <= 0.1 * acc, achieved


@pytest.mark.parametrize(
    ("shape", "acc", "calib", "seed"),
    [((64, 64), 4.0, (12, 12), 3), ((48, 80), 3.0, (8, 10), 0), ((64, 64), 50.0, (0, 0), 0)],
)
def test_poisson_matches_sigpy(shape, acc, calib, seed) -> None:
    import sigpy.mri

    want = sigpy.mri.poisson(shape, acc, calib=calib, seed=seed).real.astype(np.float32)
    np.testing.assert_array_equal(poisson_mask(shape, acc, calib=calib, seed=seed), want)


def test_poisson_unreachable_where_sigpy_never_returns() -> None:
    # sigpy.mri.poisson((32, 32), 20, calib=(2, 2), seed=0) loops forever (stalled bisection)
    with pytest.raises(ValueError, match="unreachable") as info:
        poisson_mask((32, 32), 20, calib=(2, 2), seed=0)
    assert "(32, 32)" in str(info.value) and "acceleration 20" in str(info.value)


def test_2d_mask_errors() -> None:
    with pytest.raises(ValueError, match="unreachable") as info:
        uniform_random_mask_2d((32, 32), 4, calib=(24, 24))
    assert "acceleration 4" in str(info.value) and "(32, 32)" in str(info.value)
    for acc, calib in ((30, (8, 8)), (20, (2, 2))):
        with pytest.raises(ValueError) as info:
            poisson_mask((32, 32), acc, calib=calib, seed=0)
        message = str(info.value)
        assert "(32, 32)" in message and f"acceleration {acc}" in message
        assert "\n" not in message
    with pytest.raises(ValueError, match="acceleration"):
        poisson_mask((64, 64), 1.0)
    with pytest.raises(ValueError, match="calib"):
        uniform_random_mask_2d((16, 16), 2, calib=(20, 4))


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_plot_mask_writes_png(tmp_path: Path, kind: str) -> None:
    if kind == "1d":
        mask = cartesian_mask("equispaced_fraction", 96, 0.08, 4, seed=0)[0]
    else:
        mask = uniform_random_mask_2d((64, 48), 4, calib=(8, 8), seed=0)
    out = tmp_path / "sub" / f"mask_{kind}.png"
    plot_mask(mask, out, title=f"{kind} mask")
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp file left
