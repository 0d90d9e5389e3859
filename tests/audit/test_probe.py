"""Attack probe: dict shape, determinism, both keep modes, one-line errors, an oracle memorizer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ambientmri.audit.controls import empirical_optimal_denoiser
from ambientmri.audit.probe import attack_probe
from ambientmri.data.references import clean_reference
from ambientmri.data.store import CorruptedStore
from ambientmri.operators.linear import MaskedOperator
from ambientmri.recipes import validate_recipe
from ambientmri.sampling.runs import load_run
from ambientmri.training.run import train_run

pytestmark = pytest.mark.usefixtures("global_rng_guard", "one_thread")

TINY = {
    "name": "tiny",
    "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "knee", "volumes": 2, "heldout_volumes": 2,
             "slices": 2, "matrix": [32, 16], "crop": [16, 16], "seed": 3},
    "corruption": {"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
    "model": {"kind": "mlp", "hidden": [32], "embedding_dim": 16},
    "training": {"steps": 2, "batch_size": 4, "log_every": 1, "eval_every": 0, "device": "cpu"},
}
KEYS = {"keep", "fraction", "method", "seed", "n_train", "n_heldout", "train", "heldout", "zero_filled", "gap",
        "zero_filled_gap", "mann_whitney_p"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-step ambient run, its 4 training slices and 4 held-out slices (other subjects)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("probe_run") / "run"
        with torch.random.fork_rng(devices=[]):
            train_run(validate_recipe(TINY, "tiny"), out)
        run = load_run(out, device="cpu")
        images = {}
        for name in ("store", "heldout_store"):
            store = CorruptedStore(out / "data" / name)
            images[name] = np.stack([clean_reference(store, i) for i in range(len(store))])
    finally:
        torch.set_num_threads(old)
    return run, images["store"], images["heldout_store"]


def _check(result: dict, n_train: int, n_heldout: int) -> None:
    assert set(result) == KEYS
    json.dumps(result)
    for part, n in (("train", n_train), ("heldout", n_heldout)):
        assert set(result[part]) == {"mean", "median", "scores"} and len(result[part]["scores"]) == n
        assert all(0.0 <= s <= 1.0 for s in result[part]["scores"])
    values = [result["gap"], result["zero_filled_gap"], result["mann_whitney_p"], *result["zero_filled"].values()]
    assert np.isfinite(values).all()


@pytest.mark.parametrize("keep", ["kspace", "pixels"])
def test_probe_on_a_tiny_ambient_run(tiny, keep) -> None:
    run, train, heldout = tiny
    assert train.shape == (4, 16, 16) and heldout.shape == (4, 16, 16)
    fraction = 0.25 if keep == "kspace" else 0.5
    a = attack_probe(run, train, heldout, keep=keep, fraction=fraction, seed=1)
    _check(a, 4, 4)
    assert a["method"] == "a_os" and a["keep"] == keep
    b = attack_probe(run, train * 3.0, heldout, keep=keep, fraction=fraction, seed=1)  # normalised inside
    np.testing.assert_allclose(b["train"]["scores"], a["train"]["scores"], rtol=1e-5, atol=1e-6)
    assert b["heldout"] == a["heldout"]
    c = attack_probe(run, train, heldout, keep=keep, fraction=fraction, seed=2)
    assert c["zero_filled"] != a["zero_filled"]  # other masks


def test_probe_dps_path(tiny) -> None:
    run, train, heldout = tiny
    a = attack_probe(run, train[:2], heldout[:2], method="dps", steps=3, keep="pixels", fraction=0.5)
    _check(a, 2, 2)
    assert a["method"] == "dps"
    assert attack_probe(run, train[:2], heldout[:2], method="dps", steps=3, keep="pixels", fraction=0.5) == a


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"keep": "image"}, "keep must be"),
        ({"fraction": 0.0}, "fraction must be"),
        ({"fraction": 1.0}, "fraction must be"),
        ({"method": "ddrm"}, "method must be"),
        ({"sigma": 0.0}, "sigma must be"),
        ({"steps": 0}, "steps must be"),
    ],
)
def test_bad_arguments_are_one_line(tiny, kwargs, match) -> None:
    run, train, heldout = tiny
    with pytest.raises(ValueError, match=match) as err:
        attack_probe(run, train, heldout, **kwargs)
    assert "\n" not in str(err.value)


def test_bad_images_are_one_line(tiny) -> None:
    run, train, heldout = tiny
    for bad_train, bad_held in ((train[:, :8], heldout), (train, np.zeros((1, 16, 16), np.complex64))):
        with pytest.raises(ValueError, match="attack probe") as err:
            attack_probe(run, bad_train, bad_held)
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------
# oracle memorizers: the probe must see them
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantoms(phantom_cohort) -> tuple[np.ndarray, np.ndarray]:
    return tuple(phantom_cohort(4, 2, (16, 16), seed=seed)[0].astype(np.complex64) for seed in (20, 21))


def _nearest_training_scan(train: torch.Tensor):
    """``f(y, A)``: the training scan (at the best scale) most consistent with ``y``: a lookup-table model."""

    def reconstruct(y: torch.Tensor, A: MaskedOperator) -> torch.Tensor:
        out = []
        for b in range(y.shape[0]):
            Ab = MaskedOperator(A.mask[b : b + 1], A.transform)
            At = Ab.forward(train)  # (N, H, W)
            coef = (At.conj() * y[b]).sum((-2, -1)) / At.abs().square().sum((-2, -1)).clamp_min(1e-12)
            err = (y[b] - coef[:, None, None] * At).abs().square().sum((-2, -1))
            out.append(train[int(err.argmin())])
        return torch.stack(out)

    return reconstruct


@pytest.mark.parametrize("keep", ["kspace", "pixels"])
def test_lookup_memorizer_gives_a_clear_positive_gap(phantoms, keep) -> None:
    train, heldout = phantoms
    scale = np.percentile(np.abs(train).reshape(len(train), -1), 99, axis=1).reshape(-1, 1, 1)
    fn = _nearest_training_scan(torch.from_numpy((train / scale).astype(np.complex64)))
    r = attack_probe(SimpleNamespace(image_shape=(16, 16)), train, heldout, keep=keep, fraction=0.25,
                     reconstruct_fn=fn)
    _check(r, 8, 8)
    assert r["method"] == "custom"
    assert r["train"]["mean"] > 0.999  # every training scan found again
    assert r["gap"] > 0.02 and r["gap"] > r["zero_filled_gap"] + 0.02
    assert r["mann_whitney_p"] < 0.01


def test_empirical_optimal_denoiser_via_dps_memorizes(phantoms) -> None:
    """The closed-form memorizing denoiser as a 'clean' model: DPS completes training scans better."""
    train, heldout = phantoms
    scale = np.percentile(np.abs(train).reshape(len(train), -1), 99, axis=1).reshape(-1, 1, 1)
    D = empirical_optimal_denoiser(torch.from_numpy((train / scale).astype(np.complex64)))
    run = SimpleNamespace(model=lambda x, mask, sigma: D(x, sigma), image_shape=(16, 16), objective="clean")
    r = attack_probe(run, train, heldout, keep="pixels", fraction=0.3, steps=20, seed=0)
    _check(r, 8, 8)
    assert r["method"] == "dps"
    assert r["gap"] > 0.02 and r["gap"] > r["zero_filled_gap"]
