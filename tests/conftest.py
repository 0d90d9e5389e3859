"""Shared fixtures: tiny synthetic cohorts written once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ambientmri.recipes import validate_recipe


@pytest.fixture
def global_rng_guard():
    """Fails the test if it changed numpy's or torch's global RNG state."""
    import torch

    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    yield
    after = np.random.get_state()
    assert np_state[0] == after[0] and np.array_equal(np_state[1], after[1]) and np_state[2:] == after[2:], (
        "numpy's global RNG was touched"
    )
    assert torch.equal(torch_state, torch.get_rng_state()), "torch's global RNG was touched"


def _make_recipe(corruption: dict, data: dict | None = None, prepare: dict | None = None):
    """A validated recipe from small dicts."""
    tree = {
        "name": "test",
        "data": data or {"kind": "fastmri"},
        "corruption": corruption,
        "prepare": prepare or {"coil_maps": {"calib_width": 8, "max_iter": 10}},
    }
    return validate_recipe(tree, "test")


@pytest.fixture(scope="session")
def make_recipe():
    """``make_recipe(corruption, data=None, prepare=None)`` -> a validated recipe."""
    return _make_recipe


@pytest.fixture(scope="session")
def multicoil_dir(tmp_path_factory) -> Path:
    """3 synthetic multi-coil brain subjects, 2 slices each, 64x32 k-space (32x32 images)."""
    from ambientmri.data.synth import synth_cohort

    out = tmp_path_factory.mktemp("mc")
    synth_cohort(out, challenge="multicoil", volumes=3, slices=2, matrix=(64, 32), coils=4, seed=1)
    return out


@pytest.fixture(scope="session")
def singlecoil_dir(tmp_path_factory) -> Path:
    """2 synthetic single-coil knee subjects, 2 slices each, 64x32 k-space."""
    from ambientmri.data.synth import synth_cohort

    out = tmp_path_factory.mktemp("sc")
    synth_cohort(out, challenge="singlecoil", volumes=2, slices=2, matrix=(64, 32), anatomy="knee", seed=2)
    return out
