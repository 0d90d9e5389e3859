"""Balanced weighting, per-step redraws of Ã and several Ã per step (issue: k-space learning speed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ambientmri.data.store import CorruptedStore
from ambientmri.errors import RecipeError
from ambientmri.operators.corruptions import (
    BlockCorruption,
    CartesianCorruption,
    GaussianCorruption,
    InpaintingCorruption,
    KSpace2DCorruption,
)
from ambientmri.operators.linear import FFT2, CoilSensitivity, MaskedOperator
from ambientmri.operators.weighting import (
    MAX_RATIO,
    balance_map,
    balanced_weights,
    draw_further_masks,
    further_draw_seed,
)
from ambientmri.recipes import validate_recipe
from ambientmri.training.distributed import DistInfo
from ambientmri.training.losses import AmbientLoss
from ambientmri.training.run import prepare_run_data, train_run
from ambientmri.training.trainer import Trainer

GRID = (16, 32)
CORRUPTIONS = {
    "cartesian-random": CartesianCorruption("random", (0.125,), (4.0,)),
    "cartesian-equispaced": CartesianCorruption("equispaced", (0.125,), (4.0,)),
    "inpainting": InpaintingCorruption(0.6, 0.1),
    "block": BlockCorruption(0.4, None, 1, 1),
    "kspace2d-uniform": KSpace2DCorruption("uniform", 4.0, (4, 4)),
    "kspace2d-poisson": KSpace2DCorruption("poisson", 3.0, (4, 4)),
}


def _pairs(corruption, n: int, grid=GRID, offset: int = 0):
    a = [corruption.sample_mask(grid, (offset + i,)) for i in range(n)]
    at = [corruption.further_mask(m, (offset + i, 99)) for i, m in enumerate(a)]
    return torch.tensor(np.stack(a), dtype=torch.float32), torch.tensor(np.stack(at), dtype=torch.float32)


def _raw_weights(corruption, a, at, grid=GRID):
    """Unnormalised balanced weights: ratio on A \\ Ã, 1 on Ã (what E_A[w 1_A | ...] = 1 needs)."""
    ratio = corruption.balance_ratio(a, at, grid)
    if ratio is None:
        ratio = torch.from_numpy(balance_map(corruption, grid))
    ratio = torch.broadcast_to(ratio, a.shape).clamp(1.0, MAX_RATIO)
    return at + a * (1 - at) * ratio


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_weighted_supervision_is_one_on_average_everywhere(name):
    """E[w_k 1(k ∈ A)] = 1 for every coordinate that can be hidden: the weighted ambient residual is an
    unbiased estimate of the clean residual (the property that makes it 'balanced')."""
    corruption = CORRUPTIONS[name]
    n = 300 if name == "kspace2d-poisson" else 1500  # sigpy's Poisson sampler is slow
    a, at = _pairs(corruption, n, offset=10_000)  # draws independent of balance_map's
    mean = _raw_weights(corruption, a, at).mean(0)
    hideable = (a * (1 - at)).mean(0) > 0.02  # coordinates hidden often enough to estimate
    assert hideable.any()
    values = torch.broadcast_to(mean, hideable.shape)[hideable]
    unweighted = torch.broadcast_to(a.mean(0), hideable.shape)[hideable]
    # unweighted, these coordinates are supervised with P(k ∈ A) < 1 only (0.25-0.5; blocks 0.84)
    assert unweighted.mean().item() < 0.9
    assert values.mean().item() == pytest.approx(1.0, abs=0.08)
    # Monte Carlo noise of the check (and, for maps, of the estimate) per coordinate
    assert (values - 1).abs().median().item() < (0.2 if n < 1000 else 0.12)


def test_cartesian_random_closed_form():
    corruption = CORRUPTIONS["cartesian-random"]
    a, at = _pairs(corruption, 4)
    ratio = corruption.balance_ratio(a, at, GRID)
    for i in range(4):
        cols, kept = a[i, 0].bool().numpy(), at[i, 0].bool().numpy()
        protected = corruption.protected_columns(cols)
        expected = (~kept & ~protected).sum() / max((cols & ~kept).sum(), 1)
        assert torch.allclose(ratio[i], torch.full_like(ratio[i], float(expected)))
    assert corruption.balance_ratio(a, at, GRID).shape == a.shape
    assert CORRUPTIONS["cartesian-equispaced"].balance_ratio(a, at, GRID) is None  # no closed form


def test_iid_closed_forms():
    m = torch.ones(2, 4, 4)
    assert InpaintingCorruption(0.6, 0.1).balance_ratio(m, m, (4, 4))[0, 0, 0].item() == pytest.approx(
        (0.6 + 0.4 * 0.1) / (0.4 * 0.1))
    assert GaussianCorruption(8, 0.0, 0.2).balance_ratio(torch.ones(2, 8), torch.ones(2, 8), (8,))[0, 0] == 1.0


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_weights_are_normalised_and_positive(name):
    corruption = CORRUPTIONS[name]
    a, at = _pairs(corruption, 6)
    w = balanced_weights(corruption, a, at, GRID)
    assert w.shape == a.shape
    per_sample = (w * a).reshape(6, -1).sum(1) / a.reshape(6, -1).sum(1)
    torch.testing.assert_close(per_sample, torch.ones(6))
    assert (w[a > 0] > 0).all() and (w[a == 0] == 0).all()
    for i in range(6):  # within a sample, hidden coordinates weigh at least as much as kept ones
        hidden, kept = (a[i] > 0) & (at[i] == 0), at[i] > 0
        if hidden.any():
            assert w[i][hidden].min() >= w[i][kept].max() - 1e-6


def test_balance_map_is_deterministic_and_cached():
    c = CORRUPTIONS["block"]
    m1, m2 = balance_map(c, GRID, draws=64), balance_map(c, GRID, draws=64)
    np.testing.assert_array_equal(m1, m2)
    m1[0, 0] = -1  # a copy: the cache is not corrupted by callers
    assert balance_map(c, GRID, draws=64)[0, 0] != -1


def test_further_draws_are_subsets_seeded_by_step_and_position():
    c = CORRUPTIONS["cartesian-random"]
    a, _ = _pairs(c, 4)
    s1 = [further_draw_seed(0, 5, j) for j in range(4)]
    d1, d2 = draw_further_masks(c, a, s1), draw_further_masks(c, a, s1)
    torch.testing.assert_close(d1, d2)
    assert (d1 <= a).all()
    d3 = draw_further_masks(c, a, [further_draw_seed(0, 6, j) for j in range(4)])
    assert not torch.equal(d1, d3)  # a new step, new Ã
    with pytest.raises(ValueError, match="seeds"):
        draw_further_masks(c, a, s1[:2])


def test_acceleration_increase_range_draws_per_seed():
    from ambientmri.operators.corruptions import _KSpaceFurther

    c = CartesianCorruption("random", (0.08,), (4.0,), _KSpaceFurther((0.5, 4.0)))
    mask = CartesianCorruption("random", (0.08,), (4.0,)).sample_mask((64, 128), (1,))
    removed = {int(mask.sum() - c.further_mask(mask, (s,)).sum()) for s in range(40)}
    assert len(removed) > 3  # the increase varies from draw to draw
    fixed = CartesianCorruption("random", (0.08,), (4.0,))
    assert len({int(fixed.further_mask(mask, (s,)).sum()) for s in range(10)}) == 1


def _coil_op(mask: torch.Tensor, coils: int = 3) -> MaskedOperator:
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(mask.shape[0], coils, *GRID, dtype=torch.complex64, generator=g)
    s = CoilSensitivity(maps)
    return MaskedOperator(mask, FFT2(s.out_shape) @ s, coil_axis=True)


class _Echo(torch.nn.Module):
    """A fixed "denoiser" (D = 0.5·x) to compare loss values without training."""

    def forward(self, x, mask, sigma):
        return 0.5 * x

    def loss_weight(self, sigma):
        return torch.ones_like(sigma)


@pytest.mark.parametrize("residual", ["measurement", "image"])
def test_unit_weights_change_nothing_and_weights_scale_the_hidden_residual(residual):
    c = CORRUPTIONS["cartesian-random"]
    a, at = _pairs(c, 3)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, *GRID, dtype=torch.complex64, generator=g)
    for op_of in (lambda m: MaskedOperator(m, FFT2(GRID)), _coil_op):
        A = op_of(a)
        y = A.forward(x0)
        loss = AmbientLoss(residual=residual)

        def value(weights, loss=loss, A=A, y=y):
            gen = torch.Generator().manual_seed(3)
            return loss(_Echo(), y, A, A.restrict(at), generator=gen, weights=weights).loss

        torch.testing.assert_close(value(None), value(torch.ones_like(a)))
        # weight 2 everywhere doubles the measurement-space loss (image space: also 2, by the √w form)
        torch.testing.assert_close(value(2 * torch.ones_like(a)), 2 * value(None), rtol=1e-5, atol=1e-6)


def test_single_coil_weighted_losses_agree_in_both_spaces():
    c = CORRUPTIONS["cartesian-random"]
    a, at = _pairs(c, 3)
    x0 = torch.randn(3, *GRID, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    A = MaskedOperator(a, FFT2(GRID))
    w = balanced_weights(c, a, at, GRID)
    vals = [AmbientLoss(residual=r)(_Echo(), A.forward(x0), A, A.restrict(at), weights=w,
                                    generator=torch.Generator().manual_seed(3)).loss
            for r in ("measurement", "image")]
    torch.testing.assert_close(vals[0], vals[1], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# the recipe options and the trainer
# ------------------------------------------------------------------------------------------------
TINY = {
    "name": "tiny",
    "data": {"kind": "synthetic", "challenge": "multicoil", "coils": 2, "anatomy": "knee", "volumes": 2,
             "heldout_volumes": 0, "slices": 2, "matrix": [32, 16], "crop": [16, 16], "seed": 3},
    "corruption": {"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
    "model": {"kind": "mlp", "hidden": [32], "embedding_dim": 16},
    "training": {"steps": 4, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "log_every": 1,
                 "checkpoint_every": 100, "eval_every": 0, "ema_halflife_images": 20, "device": "cpu"},
}


def _recipe(store=None, further=None, **training):
    tree = json.loads(json.dumps(TINY))
    tree["corruption"]["further"] = further or {}
    tree["training"].update(training)
    if store is not None:
        tree["training"]["store"] = str(store)
    return validate_recipe(tree, "tiny")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path, _ = prepare_run_data(_recipe(), tmp_path_factory.mktemp("wdata"))
    return path


def _trainer(store, tmp_path, **kw) -> Trainer:
    rec = _recipe(store, **kw)
    return Trainer(rec, tmp_path / "run", CorruptedStore(store), DistInfo(0, 1, 0, torch.device("cpu")))


def _batch(store):
    from ambientmri.training.data import collate

    st = CorruptedStore(store)
    return collate([st[i] for i in range(4)])


def test_redraw_options_do_not_change_the_store_hash(store, tmp_path):
    # a store prepared with the defaults serves every redraw/draws setting (they are training-time)
    result = train_run(_recipe(store, further={"redraw": "step", "draws": 2}, weighting="balanced"), tmp_path / "r")
    assert result.step == 4


def test_slice_redraw_is_the_store_further_mask(store, tmp_path):
    t = _trainer(store, tmp_path)
    b = _batch(store)
    torch.testing.assert_close(t.further_masks(b, 0), b.further_mask)
    torch.testing.assert_close(t.further_masks(b, 7), b.further_mask)


def test_step_redraw_changes_with_the_step_and_stays_inside_A(store, tmp_path):
    t = _trainer(store, tmp_path, further={"redraw": "step"})
    b = _batch(store)
    m0, m0b, m1 = t.further_masks(b, 0), t.further_masks(b, 0), t.further_masks(b, 1)
    torch.testing.assert_close(m0, m0b)
    assert not torch.equal(m0, m1)
    assert (m0 <= b.mask).all() and (m1 <= b.mask).all()


def test_several_draws_tile_draw_major(store, tmp_path):
    t = _trainer(store, tmp_path, further={"redraw": "slice", "draws": 3})
    b = _batch(store)
    masks = t.further_masks(b, 0)
    assert masks.shape[0] == 3 * b.mask.shape[0]
    torch.testing.assert_close(masks[:4], b.further_mask)  # draw 0 is the stored Ã
    assert not torch.equal(masks[4:8], masks[:4])
    torch.testing.assert_close(t.further_masks(b, 5), masks)  # fixed per slice: the same at every step
    out = t.compute_loss(b, t.step_generator(0))
    assert out.loss.shape == (4,) and torch.isfinite(out.loss).all()


def test_step_redraw_resume_is_exact(store, tmp_path):
    kw = dict(further={"redraw": "step", "draws": 2}, weighting="balanced")
    train_run(_recipe(store, **kw, steps=4), tmp_path / "full")
    train_run(_recipe(store, **kw, steps=2), tmp_path / "half")
    train_run(_recipe(store, **kw, steps=4), tmp_path / "half", resume=True)
    losses = [[json.loads(x)["loss"] for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
              for r in ("full", "half")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_balanced_weighting_changes_the_loss(store, tmp_path):
    b = _batch(store)
    plain = _trainer(store, tmp_path)
    weighted = _trainer(store, tmp_path, weighting="balanced")
    weighted.model.load_state_dict(plain.model.state_dict())
    lp = plain.compute_loss(b, plain.step_generator(0)).loss
    lw = weighted.compute_loss(b, weighted.step_generator(0)).loss
    assert not torch.allclose(lp, lw)


def test_recipe_validation_of_the_new_options():
    assert _recipe(further={"acceleration_increase": [0.5, 2]}).corruption.further.acceleration_increase == (0.5, 2.0)
    for bad in ({"acceleration_increase": [2, 1]}, {"draws": 0}, {"redraw": "epoch"}):
        with pytest.raises(RecipeError, match="further"):
            validate_recipe({**TINY, "corruption": {**TINY["corruption"], "further": bad}}, "t")
    with pytest.raises(RecipeError, match="weighting"):
        validate_recipe({**TINY, "training": {**TINY["training"], "weighting": "inverse"}}, "t")
