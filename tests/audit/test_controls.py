"""Positive controls (empirical optimal denoiser, perturbed copies) and the negative control.

The audit experiment in miniature: 8 training subjects × 4 slices (32×32 complex phantoms), τ from
50 held-out slices of 25 other subjects (q = 0.99), then the flagged fraction of the positive
controls (must be ≥ 95%) and of 50 fresh held-out slices of 25 more subjects (the negative control).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ambientmri.audit.calibration import check_subject_disjoint, memorized_fraction, threshold_from_heldout
from ambientmri.audit.controls import empirical_optimal_denoiser, perturbed_copies, positive_control_samples
from ambientmri.audit.search import topk_neighbours
from ambientmri.sampling.samplers import heun_sample, initial_noise
from ambientmri.sampling.schedules import edm_sigmas

pytestmark = pytest.mark.usefixtures("global_rng_guard", "one_thread")

SHAPE = (32, 32)


@pytest.fixture(scope="module")
def split(phantom_cohort) -> dict[str, tuple[np.ndarray, list[str]]]:
    return {name: phantom_cohort(subjects, slices, SHAPE, seed=seed)
            for name, subjects, slices, seed in (("train", 8, 4, 10), ("calib", 25, 2, 11), ("negative", 25, 2, 12))}


def test_empirical_optimal_denoiser_limits(split) -> None:
    train = torch.from_numpy(split["train"][0])
    D = empirical_optimal_denoiser(train, chunk=5)
    g = torch.Generator().manual_seed(0)
    x = train[[3, 17]] + 1e-3 * initial_noise((2, *SHAPE), 1.0, g)
    out = D(x, torch.full((2,), 1e-3))
    assert out.dtype == torch.complex64 and out.shape == x.shape
    torch.testing.assert_close(out, train[[3, 17]])  # tiny σ: the nearest training image
    out = D(x, torch.tensor(1e-6))  # logits of order 1e12: still finite (log-sum-exp)
    assert torch.isfinite(torch.view_as_real(out)).all()
    far = D(100.0 * initial_noise((2, *SHAPE), 1.0, g), torch.full((2,), 1e4))
    torch.testing.assert_close(far, train.mean(0).expand(2, *SHAPE), atol=1e-3, rtol=0)  # huge σ: the mean
    real = empirical_optimal_denoiser(train.abs())(train.abs()[:1], torch.tensor(1e-3))
    assert real.dtype == torch.float32


def test_controls_flagged_negative_control_not(split) -> None:
    train, train_sub = split["train"]
    calib, calib_sub = split["calib"]
    negative, negative_sub = split["negative"]
    check_subject_disjoint(train_sub, calib_sub)
    check_subject_disjoint(train_sub, negative_sub)
    held_top1 = topk_neighbours(calib, train, 1)[0][:, 0]
    tau = threshold_from_heldout(held_top1, q=0.99)

    eod = positive_control_samples(train, 24, steps=18, seed=0)
    assert eod.shape == (24, *SHAPE) and eod.dtype == np.complex64
    eod_s, eod_i = topk_neighbours(eod, train, 1)
    copies, sources = perturbed_copies(train, 24, seed=0)
    cp_s, cp_i = topk_neighbours(copies, train, 1)
    neg_s, _ = topk_neighbours(negative, train, 1)

    eod_frac = memorized_fraction(eod_s[:, 0], tau)[0]
    copy_frac = memorized_fraction(cp_s[:, 0], tau)[0]
    neg_frac = memorized_fraction(neg_s[:, 0], tau)[0]
    print(f"tau={tau:.4f} eod={eod_frac:.3f} copies={copy_frac:.3f} negative={neg_frac:.3f}")
    assert eod_frac >= 0.95 and copy_frac >= 0.95
    np.testing.assert_array_equal(cp_i[:, 0].numpy(), sources)  # each copy is traced to its source
    assert len(set(eod_i[:, 0].tolist())) > 1  # the sampler reproduces several training scans
    # 50 calibration scans: τ is about their second-largest score, so a fresh held-out scan exceeds
    # it with probability about 1/51 (the exact rate is 1 − q only for many calibration scans); with
    # 50 negative scans, ≤ 10% leaves room for the sampling noise (binomial sd ≈ 2%).
    assert neg_frac <= 0.10


def test_eod_works_with_the_project_sampler_and_real_noise(split) -> None:
    train = torch.from_numpy(split["train"][0][:6])
    D = empirical_optimal_denoiser(train)
    g = torch.Generator().manual_seed(3)
    sigmas = edm_sigmas(12, 0.002, 80.0, 7.0)
    x = heun_sample(D, initial_noise((4, *SHAPE), 80.0, g), sigmas).x
    d = torch.linalg.vector_norm((x[:, None] - train[None]).reshape(4, 6, -1), dim=-1).min(dim=1).values
    assert torch.all(d / torch.linalg.vector_norm(train[0]) < 1e-3)
    a = positive_control_samples(train, 3, steps=6, seed=9)
    np.testing.assert_array_equal(a, positive_control_samples(train, 3, steps=6, seed=9))
