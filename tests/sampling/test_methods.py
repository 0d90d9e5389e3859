"""The typed method configs of `reconstruct`: one default each, shared with the restoration functions."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from ambientmri.sampling import classical, restoration
from ambientmri.sampling.methods import (
    METHOD_CONFIGS,
    METHODS,
    ADPSConfig,
    AOSConfig,
    DDRMConfig,
    DPSConfig,
    L1WaveletConfig,
    SenseConfig,
    method_config,
)
from ambientmri.sampling.reconstruct import preview_slices, reconstruct_options


def test_registry_order_and_defaults_match_the_restoration_signatures():
    assert METHODS == ("a-os", "a-dps", "dps", "ddrm", "zero-filled", "sense", "l1-wavelet")
    pairs = [(AOSConfig, restoration.a_os, ("sigma",)),
             (ADPSConfig, restoration.a_dps, ("steps", "l_ss", "num_samples", "dc_step")),
             (DPSConfig, restoration.dps, ("steps", "zeta", "dc_step")), (DDRMConfig, restoration.ddrm, ("steps",)),
             (SenseConfig, classical.cg_sense, ("iters", "lam")),
             (L1WaveletConfig, classical.l1_wavelet, ("iters", "lam"))]
    for cls, fn, names in pairs:
        params = inspect.signature(fn).parameters
        for name in names:
            assert params[name].default == getattr(cls(), name), (cls.__name__, name)


def test_method_config_from_flags_and_old_options():
    assert method_config("a-os", sigma=None, zeta=3.0) == AOSConfig()  # None: default; zeta: another method's
    assert method_config("a-os", {"mask": "further", "seed": 2}) == AOSConfig(mask_channel="further", seed=2)
    assert method_config("a-dps", steps=7, l_ss=0.5).settings() == {
        "method": "a-dps", "seed": 0, "steps": 7, "l_ss": 0.5, "num_samples": 1, "dc_step": ADPSConfig.dc_step}
    assert method_config("dps", dc_step="fixed").dc_step == "fixed"
    with pytest.raises(ValueError, match="--dc-step"):
        method_config("a-dps", dc_step="exact")
    with pytest.raises(ValueError, match="unknown setting 'stpes'"):
        method_config("dps", stpes=3)
    with pytest.raises(ValueError, match="allowed: a-os"):
        method_config("magic")
    with pytest.raises(ValueError, match="--mask-channel"):
        method_config("a-os", mask_channel="both")
    assert set(METHOD_CONFIGS) == set(METHODS)
    assert reconstruct_options("l1-wavelet", lam=None)["lam"] == classical.L1_WAVELET_LAMBDA


def test_preview_slices_are_evenly_spaced():
    assert preview_slices(1) == [0] and preview_slices(2) == [0, 1]
    assert preview_slices(4) == [0, 2, 3] or preview_slices(4) == [0, 1, 3]
    assert preview_slices(11) == [0, 5, 10]
    assert np.all(np.diff(preview_slices(30)) > 0)
