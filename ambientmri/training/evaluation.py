"""Held-out evaluation during training: the EMA denoiser against clean held-out images.

Evaluation only: the clean references come from :mod:`ambientmri.data.references` and never
enter a gradient. For each σ, the denoiser sees what its objective trains it on:

- ``ambient``: ``u = Ãᴴ Ã (x0 + σ n)`` with the held-out slice's own ``Ã`` (from the held-out
  store), i.e. it estimates ``E[x0 | Ã x_t, Ã]``;
- ``clean`` and ``naive``: the fully noisy image ``x0 + σ n`` with a mask of ones (``E[x0 | x_t]``).

The logged number ``heldout_nmse@σ`` is ``Σ‖D − x0‖² / Σ‖x0‖²`` over the evaluated slices, with
the noise drawn from a fixed seed so evaluations at different steps are comparable.
``heldout_input_nmse@σ`` is the same number for the denoiser's input ``u`` itself (the identity
estimator): a model that has learned something sits well below it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ambientmri.data.batch import collate, to_device
from ambientmri.data.store import CorruptedStore
from ambientmri.models.boundary import denoise, full_operator, network_input
from ambientmri.models.objectives import get_objective
from ambientmri.utils import stable_seed

__all__ = ["HeldoutEvaluator"]


class HeldoutEvaluator:
    """Computes ``heldout_nmse@σ`` for a model on the first ``slices`` slices of a held-out store.

    Args:
        store: held-out store whose sources are clean (synthetic or fully sampled).
        sigmas: noise levels.
        slices: how many slices (spread evenly over the store).
        objective: the run's objective (decides the denoiser input, see the module docstring).
        device: where to evaluate.
    """

    def __init__(
        self, store: CorruptedStore, sigmas: Sequence[float], slices: int, objective: str, device: torch.device
    ) -> None:
        from ambientmri.data.references import clean_reference

        self.store = store
        self.sigmas = [float(s) for s in sigmas]
        self.objective = objective
        self.sees_further = get_objective(objective).sees_further
        self.device = device
        n = len(store)
        count = min(slices, n)
        self.indices = sorted({round(i * (n - 1) / max(count - 1, 1)) for i in range(count)})
        self.x0 = torch.stack([torch.from_numpy(clean_reference(store, i)) for i in self.indices]).to(device)
        self.batch = to_device(collate([store[i] for i in self.indices]), device)

    @torch.no_grad()
    def __call__(self, model: nn.Module, image_shape: Sequence[int]) -> dict[str, float]:
        was_training = model.training
        model.eval()
        out: dict[str, float] = {}
        x0 = self.x0
        b = x0.shape[0]
        if self.sees_further:
            A = self.store.operator(self.batch)
            op = A.restrict(self.batch.further_mask)
        else:
            op = full_operator(x0.shape[1:], self.device)
        g = torch.Generator(device=self.device)
        for sigma in self.sigmas:
            g.manual_seed(stable_seed("heldout", sigma) % 2**63)
            n = torch.complex(torch.randn(x0.shape, generator=g, device=self.device),
                              torch.randn(x0.shape, generator=g, device=self.device))
            x_t = x0 + sigma * n
            u = network_input(op, x_t) if self.sees_further else x_t
            s = torch.full((b,), sigma, device=self.device)
            d = denoise(model, u, op, s, image_shape).reshape(x0.shape)
            energy = x0.abs().square().sum()
            out[f"heldout_nmse@{sigma:g}"] = float((d - x0).abs().square().sum() / energy)
            out[f"heldout_input_nmse@{sigma:g}"] = float((u.reshape(x0.shape) - x0).abs().square().sum() / energy)
        model.train(was_training)
        return out
