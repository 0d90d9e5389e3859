"""Small synthetic fastMRI cohorts shared by the data tests (written once per session)."""

from __future__ import annotations

import pytest

from ambientmri.data.synth import synth_cohort

MATRIX = (64, 40)  # k-space (H, W); recon FOV (32, 32)
SLICES = 3
COILS = 4


@pytest.fixture(scope="session")
def multicoil_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("multicoil_train")
    return synth_cohort(out, challenge="multicoil", volumes=3, slices=SLICES, matrix=MATRIX, coils=COILS, seed=0)


@pytest.fixture(scope="session")
def singlecoil_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("singlecoil_train")
    return synth_cohort(
        out,
        challenge="singlecoil",
        volumes=2,
        slices=SLICES,
        matrix=MATRIX,
        anatomy="knee",
        seed=0,
    )
