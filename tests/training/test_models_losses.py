"""Network factory, EDM preconditioning and the three losses."""

from __future__ import annotations

import inspect

import pytest
import torch

from ambientmri.data.store import AmbientSample
from ambientmri.models import EDMPrecond, ModelConfigError, build_unet, unet_problems
from ambientmri.models.factory import build_model
from ambientmri.models.precond import embedding_separation
from ambientmri.operators.corruptions import CartesianCorruption
from ambientmri.recipes import MLPModel, UNetModel
from ambientmri.training.data import collate
from ambientmri.training.losses import AmbientLoss, CleanLoss, NaiveLoss, mask_channel

SMALL_UNET = dict(channels=[8, 16], num_res_blocks=1, attention_levels=[False, True], norm_num_groups=8,
                  num_head_channels=8)


def _seeded(fn):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return fn()


def test_unet_problems_lists_every_broken_constraint():
    problems = unet_problems(spatial_dims=2, channels=[30, 60, 64], num_res_blocks=[1, 1],
                             attention_levels=[False, True, True], norm_num_groups=32, num_head_channels=7,
                             image_shape=(50, 64))
    text = " | ".join(problems)
    assert "multiple of norm_num_groups=32" in text and "[30, 60]" in text
    assert "num_res_blocks lists 2 levels" in text
    assert "num_head_channels" in text
    assert "divide by 2**(levels-1) = 4" in text
    assert unet_problems(spatial_dims=2, channels=[32, 64], num_res_blocks=1, attention_levels=[False, True],
                         norm_num_groups=32, num_head_channels=32, image_shape=(64, 32)) == []
    with pytest.raises(ModelConfigError, match="norm_num_groups") as info:
        build_unet(in_channels=4, out_channels=2, channels=[30, 60], attention_levels=[False, False],
                   image_shape=(64, 64))
    assert "\n" not in str(info.value)


def test_recipe_rejects_a_broken_unet_with_the_reason():
    with pytest.raises(ValueError, match="multiple of norm_num_groups"):
        UNetModel(channels=[30, 60], attention_levels=[False, False])


@pytest.mark.parametrize("shape", [(32, 16), (16, 16)])
def test_unet_denoiser_shapes_and_identity_at_init(shape, global_rng_guard):
    model = _seeded(lambda: build_model(UNetModel(**SMALL_UNET), shape))
    u = torch.randn(3, *shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    cond = torch.ones(3, 1, *shape)
    sigma = torch.tensor([0.01, 0.5, 20.0])
    d = model(u, cond, sigma)
    assert d.shape == u.shape and d.dtype == torch.complex64
    # MONAI zero-initialises the output conv: at init D = c_skip u
    c_skip = model.coefficients(sigma)[0]
    torch.testing.assert_close(d, c_skip[:, None, None] * u)
    with pytest.raises(ValueError, match="cond must be"):
        model(u, torch.ones(3, 2, *shape), sigma)


def test_unet_rejects_an_image_that_does_not_divide():
    with pytest.raises(ModelConfigError, match="divide by"):
        build_model(UNetModel(channels=[8, 16, 16], num_res_blocks=1, attention_levels=[False] * 3,
                              norm_num_groups=8, num_head_channels=8), (36, 30))


def test_noise_embedding_separates_sigma():
    assert embedding_separation(0.25) > 0.8  # EDM's ln(σ)/4 barely separates σ = 0.002 from 80
    assert abs(embedding_separation(250.0)) < 0.1


def test_precond_coefficients():
    net = torch.nn.Identity()
    sigma = torch.tensor([0.1, 1.0])
    edm = EDMPrecond(net, skip="edm")
    c_skip, c_out, c_in, c_noise = edm.coefficients(sigma)
    torch.testing.assert_close(c_skip, 0.25 / (sigma**2 + 0.25))
    torch.testing.assert_close(c_out, sigma * 0.5 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c_in, 1 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(edm.loss_weight(sigma), (sigma**2 + 0.25) / (sigma * 0.5) ** 2)
    torch.testing.assert_close(c_noise, 250 * sigma.log())
    amb = EDMPrecond(net, skip="ambient")
    torch.testing.assert_close(amb.coefficients(sigma)[1], torch.full((2,), 0.5))
    torch.testing.assert_close(amb.loss_weight(sigma), torch.full((2,), 4.0))


def _cartesian_batch(b=3, grid=(16, 16)):
    c = CartesianCorruption("random", (0.25,), (2.0,))
    masks = torch.stack([torch.from_numpy(c.sample_mask(grid, i)) for i in range(b)])
    further = torch.stack([torch.from_numpy(c.further_mask(m.numpy(), 10 + i)) for i, m in enumerate(masks)])
    x0 = torch.randn(b, *grid, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    A = c.operator(masks, grid)
    return x0, A, A.restrict(further)


def test_ambient_loss_sees_only_measurements():
    assert "x0" not in inspect.signature(AmbientLoss.__call__).parameters
    x0, A, At = _cartesian_batch()
    model = _seeded(lambda: build_model(MLPModel(hidden=[16]), (16, 16)))
    y = A.forward(x0)
    seen = {}

    def spy(u, cond, sigma):
        seen["u"], seen["cond"] = u, cond
        return model(u, cond, sigma)

    spy.loss_weight = model.loss_weight  # type: ignore[attr-defined]
    out = AmbientLoss()(spy, y, A, At, generator=torch.Generator().manual_seed(0))
    assert out.loss.shape == (3,) and torch.isfinite(out.loss).all() and (out.loss > 0).all()
    # the input lives in the span of Ã: nothing that Ã hides leaks in
    k = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(seen["u"], dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
    hidden = (1 - At.mask.expand(3, 16, 16)).bool()
    assert k[hidden].abs().max() < 1e-5
    torch.testing.assert_close(seen["cond"][:, 0], At.mask.expand(3, 16, 16).float())


def test_residual_spaces_agree_for_single_coil():
    x0, A, At = _cartesian_batch()
    model = _seeded(lambda: build_model(MLPModel(hidden=[16]), (16, 16)))
    y = A.forward(x0)
    a = AmbientLoss(residual="measurement")(model, y, A, At, generator=torch.Generator().manual_seed(5))
    b = AmbientLoss(residual="image")(model, y, A, At, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-4, atol=1e-6)


def test_naive_loss_is_clean_loss_on_zero_filled_images():
    x0, A, _ = _cartesian_batch()
    model = _seeded(lambda: build_model(MLPModel(hidden=[16]), (16, 16)))
    y = A.forward(x0)
    naive = NaiveLoss()(model, y, A, generator=torch.Generator().manual_seed(3))
    clean = CleanLoss()(model, A.adjoint(y), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(naive.loss, clean.loss)


def test_sharded_draws_reassemble_the_global_batch():
    loss = AmbientLoss()
    full = loss.sample_noise((4, 3), torch.device("cpu"), torch.Generator().manual_seed(9))
    parts = []
    for rank in range(2):
        loss.set_shard(rank, 2)
        parts.append(loss.sample_noise((2, 3), torch.device("cpu"), torch.Generator().manual_seed(9)))
    torch.testing.assert_close(torch.stack(parts, 1).reshape(4, 3), full)


def test_mask_channel_for_gaussian_rows_is_the_kept_fraction():
    from ambientmri.operators.corruptions import GaussianCorruption

    g = GaussianCorruption(8, 0.0, 0.25)
    mask = torch.tensor([[1, 1, 0, 1, 1, 1, 0, 1.0]])
    op = g.operator(mask, (8,), matrix=torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(0)))
    ch = mask_channel(op, (4, 4), 1)
    assert ch.shape == (1, 1, 4, 4) and torch.allclose(ch, torch.full_like(ch, 0.75))


def test_mixed_coil_counts_collate_to_the_same_operator_results():
    gen = torch.Generator().manual_seed(4)
    cart = CartesianCorruption("random", (0.25,), (2.0,))
    samples, xs = [], []
    for i, coils in enumerate((2, 3)):
        maps = torch.randn(coils, 8, 8, dtype=torch.complex64, generator=gen)
        mask = torch.from_numpy(cart.sample_mask((8, 8), i))
        x = torch.randn(8, 8, dtype=torch.complex64, generator=gen)
        y = cart.operator(mask, (8, 8), maps=maps).forward(x)
        samples.append(AmbientSample(y, mask, mask, maps, -1, 1.0, i))
        xs.append(x)
    batch = collate(samples)
    A = cart.operator(batch.mask, (8, 8), maps=batch.maps)
    for i, s in enumerate(samples):
        single = cart.operator(s.mask, (8, 8), maps=s.maps)
        torch.testing.assert_close(A.adjoint(batch.y)[i], single.adjoint(s.y))
        torch.testing.assert_close((A.forward(torch.stack(xs)) - batch.y)[i].abs().sum(), torch.tensor(0.0))


def test_every_objective_has_one_loss_interface():
    """``make_loss(objective).compute(model, LossInputs, generator)`` equals each loss's own call."""
    from ambientmri.models.objectives import OBJECTIVES, get_objective
    from ambientmri.training.losses import LOSSES, LossInputs, make_loss

    assert set(LOSSES) == set(OBJECTIVES)
    assert get_objective("ambient").sees_further and not get_objective("naive").sees_further
    assert get_objective("clean").clean_images and not get_objective("ambient").clean_images
    with pytest.raises(ValueError, match="allowed: ambient, clean, naive"):
        make_loss("oracle")
    x0, A, At = _cartesian_batch()
    model = _seeded(lambda: build_model(MLPModel(hidden=[16]), (16, 16)))
    y = A.forward(x0)
    inputs = LossInputs((16, 16), x0=x0, y=y, A=A, further=At)
    expected = {
        "ambient": AmbientLoss(residual="image")(model, y, A, At, generator=torch.Generator().manual_seed(4)),
        "clean": CleanLoss()(model, x0, generator=torch.Generator().manual_seed(4)),
        "naive": NaiveLoss()(model, y, A, generator=torch.Generator().manual_seed(4)),
    }
    for name, want in expected.items():
        loss = make_loss(name, residual="image")
        assert type(loss) is LOSSES[name]
        got = loss.compute(model, inputs, torch.Generator().manual_seed(4))
        torch.testing.assert_close(got.loss, want.loss)
