"""The data-consistency residual that `reconstruct` records, and its warning for posterior samplers."""

from __future__ import annotations

import json

import pytest
import torch

from ambientmri.data.synth import synth_cohort
from ambientmri.operators.corruptions import CartesianCorruption
from ambientmri.operators.linear import FFT2, CoilSensitivity, MaskedOperator
from ambientmri.recipes import validate_recipe
from ambientmri.sampling.reconstruct import DC_WARN_MARGIN, reconstruct
from ambientmri.sampling.restoration import consistency_energies
from ambientmri.sampling.runs import load_run
from ambientmri.training.run import train_run

GRID = (16, 16)


def _mask(n: int) -> torch.Tensor:
    c = CartesianCorruption("random", (0.25,), (2.0,))
    return torch.stack([torch.from_numpy(c.sample_mask(GRID, (i,))).float() for i in range(n)])


def test_energies_of_zero_filled_and_of_nothing():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, *GRID, dtype=torch.complex64, generator=g)
    A = MaskedOperator(_mask(3), FFT2(GRID))
    y = A.forward(x0)
    r, r_zf, energy = consistency_energies(y, A, A.adjoint(y))
    assert r == pytest.approx(0.0, abs=1e-6 * energy) and r_zf == pytest.approx(0.0, abs=1e-6 * energy)
    r, _, energy = consistency_energies(y, A, torch.zeros_like(x0))
    assert r == pytest.approx(energy, rel=1e-5)  # x̂ = 0 explains nothing
    # multi-coil with maps that are not an orthonormal frame: zero-filled is no longer consistent
    maps = torch.randn(3, 2, *GRID, dtype=torch.complex64, generator=g)
    s = CoilSensitivity(maps)
    Ac = MaskedOperator(_mask(3), FFT2(s.out_shape) @ s, coil_axis=True)
    yc = Ac.forward(x0)
    _, r_zf, energy = consistency_energies(yc, Ac, x0)
    assert r_zf > 1e-3 * energy


TINY = {
    "name": "tiny",
    "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "knee", "volumes": 2, "heldout_volumes": 0,
             "slices": 2, "matrix": [32, 16], "crop": [16, 16], "seed": 3},
    "corruption": {"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
    "model": {"kind": "mlp", "hidden": [32], "embedding_dim": 16},
    "training": {"steps": 2, "batch_size": 4, "log_every": 1, "eval_every": 0, "device": "cpu"},
}


def test_reconstruct_records_the_residual_and_warns_for_a_bad_step_size(tmp_path):
    tree = json.loads(json.dumps(TINY))
    tree["training"]["objective"] = "clean"
    train_run(validate_recipe(tree, "tiny"), tmp_path / "clean")
    run = load_run(tmp_path / "clean")
    scans = tmp_path / "scans"
    synth_cohort(scans, challenge="singlecoil", anatomy="knee", volumes=1, slices=2, matrix=(32, 16), seed=9,
                 split="val")
    zf = reconstruct(scans, tmp_path / "zf", "zero-filled", run=run, nifti=False)
    vol = next(iter(zf["volumes"].values()))
    assert vol["dc_residual"] == pytest.approx(0.0, abs=1e-4) and "warnings" not in zf
    # an absurd DPS step size (ζ = 1000) throws the sample far from the data
    bad = reconstruct(scans, tmp_path / "dps", "dps", run=run, options={"steps": 3, "zeta": 1000.0, "dc_step": "fixed"},
                      nifti=False)
    vol = next(iter(bad["volumes"].values()))
    assert vol["dc_residual"] > vol["zero_filled_dc_residual"] + DC_WARN_MARGIN
    assert len(bad["warnings"]) == 1 and "worse than zero-filled" in bad["warnings"][0]
    saved = json.loads((tmp_path / "dps" / "summary.json").read_text())
    assert saved["warnings"] == bad["warnings"]
