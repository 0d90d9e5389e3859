"""Shared by the audit tests: one torch thread, and phantom cohorts with subject labels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from ambientmri.data.synth import draw_subject, render

Cohort = Callable[..., tuple[np.ndarray, list[str]]]


@pytest.fixture
def one_thread():
    """Run the test with one torch thread (the searches' timings and chunking do not depend on cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _phantom_cohort(
    subjects: int, slices: int, shape: tuple[int, int], seed: int, anatomy: str = "brain"
) -> tuple[np.ndarray, list[str]]:
    """Complex phantom slices of ``subjects`` random subjects drawn from ``seed``, and their subject labels."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for s in range(subjects):
        sub = draw_subject(anatomy, rng)
        for z in sub.slice_positions(slices):
            images.append(render(sub, shape, float(z), fov=shape)[0])
            labels.append(f"sub-{seed}-{s}")
    return np.stack(images), labels


@pytest.fixture(scope="session")
def phantom_cohort() -> Cohort:
    """``phantom_cohort(subjects, slices, shape, seed, anatomy="brain") -> (images, labels)``."""
    return _phantom_cohort
