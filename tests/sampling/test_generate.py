"""Ambient generation from trained runs: fixed Ã per trajectory, seeds, batching, guidance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ambientmri.operators.corruptions import CartesianCorruption, GaussianCorruption, InpaintingCorruption
from ambientmri.recipes import validate_recipe
from ambientmri.sampling.generate import (
    ReconstructionGuidance,
    ambient_generation_denoiser,
    generate,
    generation_masks,
    generation_operator,
    guided_generation_denoiser,
)
from ambientmri.sampling.runs import LoadedRun, load_run
from ambientmri.sampling.samplers import heun_sample, initial_noise
from ambientmri.sampling.schedules import edm_sigmas
from ambientmri.training.run import train_run

TINY = {
    "name": "tiny",
    "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "knee", "volumes": 2,
             "heldout_volumes": 0, "slices": 2, "matrix": [32, 16], "crop": [16, 16], "seed": 3},
    "corruption": {"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
    "model": {"kind": "mlp", "hidden": [32], "embedding_dim": 16},
    "training": {"steps": 2, "batch_size": 4, "lr": 1e-3, "warmup_steps": 2, "log_every": 1,
                 "checkpoint_every": 100, "eval_every": 0, "ema_halflife_images": 20, "device": "cpu"},
}


def _train(root: Path, objective: str) -> LoadedRun:
    tree = json.loads(json.dumps(TINY))
    tree["training"]["objective"] = objective
    train_run(validate_recipe(tree, "tiny"), root / objective)
    return load_run(root / objective)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: on a loaded machine OpenMP's thread hand-offs cost more than the maths."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, LoadedRun]:
    """A tiny ambient and a tiny clean run (mlp, 2 steps), trained once."""
    root = tmp_path_factory.mktemp("gen_runs")
    return {obj: _train(root, obj) for obj in ("ambient", "clean")}


class Recorder(nn.Module):
    """Wraps a model and records the mask channel of every call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.conds: list[torch.Tensor] = []

    def forward(self, u: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.conds.append(cond.detach().clone())
        return self.inner(u, cond, sigma)


class Passthrough(nn.Module):
    """A stand-in EDM model: returns its input (enough to check shapes and operators)."""

    def forward(self, u: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert cond.shape == (u.shape[0], 1, *u.shape[1:])
        return u.to(torch.complex64)


# ---------------------------------------------------------------------------------------------
# generate()
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("objective", ["ambient", "clean"])
def test_generate_shapes_determinism_batching(runs, objective: str, global_rng_guard) -> None:
    run = runs[objective]
    progress: list[tuple[int, int]] = []
    a = generate(run, 4, steps=5, seed=1, batch_size=2, callback=lambda d, t: progress.append((d, t)))
    assert a.shape == (4, *run.image_shape) == (4, 16, 16) and a.dtype == torch.complex64
    assert bool(torch.isfinite(a).all()) and float(a.abs().max()) > 0
    assert progress == [(k, 10) for k in range(1, 11)]
    assert torch.equal(a, generate(run, 4, steps=5, seed=1, batch_size=2))  # bit-identical
    # batching changes only BLAS rounding, never the noise or the masks of a sample
    torch.testing.assert_close(a, generate(run, 4, steps=5, seed=1, batch_size=4), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a[:3], generate(run, 3, steps=5, seed=1, batch_size=3), atol=1e-4, rtol=1e-4)
    b = generate(run, 4, steps=5, seed=2, batch_size=2)
    assert float((a - b).abs().mean()) > 1e-2
    assert float((a[0] - a[1]).abs().mean()) > 1e-2  # samples of one call differ


def test_generate_euler_and_churn(runs, global_rng_guard) -> None:
    run = runs["ambient"]
    heun = generate(run, 2, steps=4, seed=0)
    euler = generate(run, 2, steps=4, seed=0, sampler="euler")
    churn = generate(run, 2, steps=4, seed=0, churn=5.0)
    assert not torch.allclose(heun, euler) and not torch.allclose(heun, churn)
    assert torch.equal(churn, generate(run, 2, steps=4, seed=0, churn=5.0))
    one = generate(run, 2, steps=4, seed=0, churn=5.0, batch_size=1)  # per-sample churn noise
    torch.testing.assert_close(churn, one, atol=1e-4, rtol=1e-4)


def test_generate_validates(runs) -> None:
    with pytest.raises(ValueError, match="num"):
        generate(runs["ambient"], 0)
    with pytest.raises(ValueError, match="batch_size"):
        generate(runs["ambient"], 2, batch_size=0)
    with pytest.raises(ValueError, match="sampler"):
        generate(runs["ambient"], 2, sampler="ddim")
    with pytest.raises(ValueError, match="guidance_masks"):
        generate(runs["ambient"], 2, guidance_weight=1.0)
    with pytest.raises(ValueError, match="ambient run"):
        generate(runs["clean"], 2, guidance_weight=1.0, guidance_masks=1)
    with pytest.raises(ValueError, match="steps"):
        generate(runs["ambient"], 2, steps=0)


# ---------------------------------------------------------------------------------------------
# one fixed Ã per trajectory
# ---------------------------------------------------------------------------------------------
def test_ambient_generation_keeps_one_mask_per_trajectory(runs) -> None:
    run = runs["ambient"]
    rec = Recorder(run.model)
    D = ambient_generation_denoiser(rec, run.corruption, run.image_shape, seed=7, batch=4, device="cpu")
    x0 = initial_noise((4, *run.image_shape), 80.0, torch.Generator().manual_seed(0))
    res = heun_sample(D, x0, edm_sigmas(6))
    assert len(rec.conds) == res.nfe == 11
    first = rec.conds[0]
    assert first.shape == (4, 1, 16, 16)
    for cond in rec.conds[1:]:
        assert torch.equal(cond, first)  # the same Ã at every step
    masks = [first[i, 0] for i in range(4)]
    assert any(not torch.equal(masks[0], m) for m in masks[1:])  # a different Ã per sample
    # it is the corruption's further mask: Cartesian lines (constant along rows), ACS kept, some removed
    assert bool((first == first[:, :, :1]).all())
    cols = first[:, 0, 0]
    assert bool((cols[:, 6:10] == 1).all()) and bool((cols.sum(1) < 16).all())
    # the same masks as generation_masks / the sampling mask of the guided denoiser
    want = torch.from_numpy(generation_masks(run.corruption, run.image_shape, seed=7, batch=4)).float()
    assert torch.equal(torch.broadcast_to(want, (4, 16, 16)), first[:, 0])


def test_generate_uses_sample_index_not_batch_position(runs) -> None:
    run = runs["ambient"]
    m = generation_masks(run.corruption, run.image_shape, seed=3, batch=[2, 3])
    full = generation_masks(run.corruption, run.image_shape, seed=3, batch=4)
    assert np.array_equal(m, full[2:])
    other = generation_masks(run.corruption, run.image_shape, seed=3, batch=4, mask_index=1)
    assert not np.array_equal(full, other)


def test_generation_operator_for_other_corruptions() -> None:
    shape = (8, 8)
    x = initial_noise((3, *shape), 1.0, torch.Generator().manual_seed(0))
    sigma = torch.full((3,), 0.5)
    inp = InpaintingCorruption(p=0.5, delta=0.2)
    op = generation_operator(inp, shape, seed=0, batch=3)
    assert op.mask.shape == (3, 8, 8)
    d = ambient_generation_denoiser(Passthrough(), inp, shape, seed=0, batch=3)(x, sigma)
    torch.testing.assert_close(d, x * op.mask)  # Ãᴴ Ã x for a pixel mask
    gau = GaussianCorruption(m=20, delta=0.25)
    op = generation_operator(gau, shape, seed=0, batch=3)
    assert op.in_shape == (64,) and op.mask.shape == (3, 20)
    d = ambient_generation_denoiser(Passthrough(), gau, shape, seed=0, batch=3)(x, sigma)
    assert d.shape == (3, 8, 8) and bool(torch.isfinite(d).all())
    cart = CartesianCorruption(center_fractions=(0.25,), accelerations=(2.0,))
    op = generation_operator(cart, shape, seed=0, batch=3)
    assert op.mask.shape == (3, 1, 8) and op.out_shape == (8, 8)  # single-coil M F


# ---------------------------------------------------------------------------------------------
# reconstruction guidance
# ---------------------------------------------------------------------------------------------
def test_reconstruction_guidance_gradient_is_exact() -> None:
    g = torch.Generator().manual_seed(0)
    mats = [torch.randn(5, 5, generator=g, dtype=torch.float64) for _ in range(3)]

    def lin(m: torch.Tensor):
        return lambda x, s: x @ m.T.to(x.dtype)

    guide = ReconstructionGuidance([lin(m) for m in mats], weight=0.3)
    x = torch.randn(4, 5, generator=g, dtype=torch.complex128)
    d0, corr = guide.denoise_with_guidance(x, torch.ones(4))
    torch.testing.assert_close(d0, x @ mats[0].T.to(x.dtype))
    # ½ Σ_j ‖(G0 − Gj) x‖²: gradient Σ_j (G0 − Gj)ᵀ(G0 − Gj) x (real and imaginary parts alike)
    h = sum((mats[0] - m).T @ (mats[0] - m) for m in mats[1:])
    torch.testing.assert_close(corr, 0.3 * x @ h.T.to(x.dtype))
    torch.testing.assert_close(guide(x, torch.ones(4)), d0)
    alone = ReconstructionGuidance([lin(mats[0])], 1.0).denoise_with_guidance(x, torch.ones(4))[1]
    assert float(alone.abs().max()) == 0
    with pytest.raises(ValueError, match="weight"):
        ReconstructionGuidance([lin(mats[0])], -1.0)


def test_generate_with_guidance(runs, global_rng_guard) -> None:
    run = runs["ambient"]
    plain = generate(run, 2, steps=4, seed=0)
    off = generate(run, 2, steps=4, seed=0, guidance_weight=0.0, guidance_masks=2)
    assert torch.equal(plain, off)
    guided = generate(run, 2, steps=4, seed=0, guidance_weight=0.05, guidance_masks=2)
    assert bool(torch.isfinite(guided).all()) and not torch.allclose(guided, plain)
    torch.testing.assert_close(
        guided, generate(run, 2, steps=4, seed=0, guidance_weight=0.05, guidance_masks=2, batch_size=1),
        atol=1e-4, rtol=1e-4,
    )
    # its sampling mask is the unguided Ã; the guidance masks are others
    guide = guided_generation_denoiser(
        run.model, run.corruption, run.image_shape, seed=0, batch=2, guidance_masks=2, weight=0.05
    )
    x = initial_noise((2, *run.image_shape), 1.0, torch.Generator().manual_seed(0))
    s = torch.full((2,), 1.0)
    base = ambient_generation_denoiser(run.model, run.corruption, run.image_shape, seed=0, batch=2)
    torch.testing.assert_close(guide(x, s), base(x, s))
    assert not torch.allclose(guide.denoisers[1](x, s), base(x, s))
