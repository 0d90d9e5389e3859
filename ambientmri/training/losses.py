"""Training objectives: the ambient loss, the clean oracle and the naive baseline.

All three are the EDM denoising loss (σ from ``ln σ ~ N(P_mean, P_std²)``, weight
``λ(σ) = 1/c_out(σ)²``, see :mod:`ambientmri.models.precond`) and differ only in what the denoiser
sees and what it is compared with:

========== ========================================= =====================================
objective  denoiser input                            residual
========== ========================================= =====================================
ambient    ``u = Ãᴴ(M̃ ⊙ y + σ Ã n)``, mask of ``Ã``   ``A D − y`` (measurement space)
clean      ``u = x0 + σ n``, mask of ones             ``D − x0``
naive      ``u = Aᴴy + σ n``, mask of ones            ``D − Aᴴy``
========== ========================================= =====================================

**Ambient loss (Daras et al. 2023, J_corr).** ``E ‖A (h_θ(Ã, Ã x_t, σ) − x0)‖²``: since
``A x0 = y`` the residual ``A D − y`` needs no clean image. The network input
``Ãᴴ Ã x_t = Ãᴴ (M̃ ⊙ y + σ Ã n)`` is computed from ``y`` alone (``M̃ ≤ M``).

*Which residual space.* The default is the measurement space, ``‖A D − y‖²``, the objective whose
minimiser is proven to be ``E[x0 | Ã x_t, Ã]`` whenever ``E[AᴴA | Ã]`` has full rank (the
condition ``ambientmri check-corruption`` verifies). ``residual: image`` uses
``‖Aᴴ(A D − y)‖² = ‖AᴴA (D − x0)‖²`` as Aali et al. 2025 do; its minimiser is the same conditional
mean when ``E[(AᴴA)² | Ã]`` has full rank. For image-domain masks and single-coil k-space the two
are identical (``A Aᴴ`` is a projection); for multi-coil SENSE they weight coordinates differently
(by ``SᴴFᴴMFS``) and the measurement-space loss keeps the coil weighting that the noise model
implies. Both are divided by the number of image pixels (a constant, so minimisers are unchanged).

Every loss returns a per-sample, unreduced ``(B,)`` tensor together with the σ it drew.

**One interface.** Besides its own call signature (what the formula needs), each loss has
``compute(model, inputs, generator)`` taking a :class:`LossInputs`; :data:`LOSSES` maps the
recipe's ``training.objective`` to its loss class and :func:`make_loss` builds one, so the trainer
holds no switch over objectives (what each objective reads and sees is
:class:`~ambientmri.models.objectives.Objective`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import nn

from ambientmri.models.boundary import denoise, full_operator, mask_channel
from ambientmri.models.objectives import get_objective
from ambientmri.operators.linear import MaskedOperator

__all__ = [
    "LOSSES",
    "AmbientLoss",
    "CleanLoss",
    "LossInputs",
    "LossOutput",
    "NaiveLoss",
    "Residual",
    "denoise",
    "full_operator",
    "make_loss",
    "mask_channel",
]

Residual = Literal["measurement", "image"]
NoiseKind = Literal["complex", "real"]


class LossOutput(NamedTuple):
    """Per-sample loss ``(B,)`` and the noise levels ``(B,)`` it was computed at."""

    loss: torch.Tensor
    sigma: torch.Tensor


class LossInputs(NamedTuple):
    """What a loss may read from a batch (each objective reads its own fields; the rest may be None).

    Attributes:
        image_shape: the network's image shape.
        x0: clean images ``(B, *S)`` (the clean objective).
        y: measurements ``A x0``, zero-filled on the full grid (ambient, naive).
        A: the training corruption of each sample (ambient, naive).
        further: ``Ã`` (ambient).
        weights: per-coordinate residual weights on ``A``'s mask grid (ambient, optional).
    """

    image_shape: tuple[int, ...]
    x0: torch.Tensor | None = None
    y: torch.Tensor | None = None
    A: MaskedOperator | None = None
    further: MaskedOperator | None = None
    weights: torch.Tensor | None = None


def _precond(model: nn.Module) -> nn.Module:
    """The EDMPrecond inside a DDP / torch.compile wrapper."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


class _EDMLoss:
    """Shared σ and noise sampling."""

    def __init__(self, *, p_mean: float = -1.2, p_std: float = 1.2, noise: NoiseKind = "complex") -> None:
        if p_std <= 0:
            raise ValueError(f"p_std must be positive, got {p_std}")
        if noise not in ("complex", "real"):
            raise ValueError(f"noise must be 'complex' or 'real', got {noise!r}")
        self.p_mean = float(p_mean)
        self.p_std = float(p_std)
        self.noise = noise
        self.shard = (0, 1)

    def set_shard(self, rank: int, world: int) -> None:
        """Draw σ and noise for the whole global batch and keep this process's share.

        Process ``rank`` of ``world`` holds global batch positions ``rank::world`` (see
        :class:`~ambientmri.training.data.StepBatchSampler`); with a generator seeded identically on
        every process, a K-process run then draws exactly the σ and noise of a one-process run.
        """
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        self.shard = (int(rank), int(world))

    def _draw(self, shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        rank, world = self.shard
        if world == 1:
            return torch.randn(shape, generator=generator, device=device)
        full = torch.randn((shape[0] * world, *shape[1:]), generator=generator, device=device)
        return full[rank::world]

    def sample_sigma(self, batch: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        """``σ = exp(P_mean + P_std · ξ)``, ``ξ ~ N(0, 1)``, shape ``(batch,)``."""
        xi = self._draw((batch,), device, generator)
        return (self.p_mean + self.p_std * xi).exp()

    def sample_noise(
        self, shape: Sequence[int], device: torch.device, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Standard complex (independent N(0,1) real and imaginary parts) or real noise, complex64."""
        re = self._draw(tuple(shape), device, generator)
        if self.noise == "real":
            return torch.complex(re, torch.zeros_like(re))
        im = self._draw(tuple(shape), device, generator)
        return torch.complex(re, im)

    def compute(self, model: nn.Module, inputs: LossInputs, generator: torch.Generator | None = None) -> LossOutput:
        """The per-sample loss from :class:`LossInputs`: the one call signature of every objective."""
        raise NotImplementedError

    def _clean_style(
        self, model: nn.Module, target: torch.Tensor, generator: torch.Generator | None
    ) -> LossOutput:
        """EDM denoising of ``target`` treated as clean (mask of ones)."""
        b = target.shape[0]
        image_shape = tuple(target.shape[1:])
        sigma = self.sample_sigma(b, target.device, generator)
        n = self.sample_noise(target.shape, target.device, generator)
        view = (b,) + (1,) * len(image_shape)
        x_t = target + sigma.reshape(view) * n
        d = denoise(model, x_t, full_operator(image_shape, target.device), sigma, image_shape)
        per = (d - target).abs().square().reshape(b, -1).sum(1) / float(torch.tensor(image_shape).prod())
        return LossOutput(_precond(model).loss_weight(sigma) * per, sigma)


class AmbientLoss(_EDMLoss):
    """Ambient Diffusion's J_corr: ``λ(σ) ‖A (D(Ãᴴ Ã x_t, M̃, σ) − x0)‖²`` from ``y`` and ``A`` only.

    Args:
        p_mean, p_std: EDM's log-normal σ distribution.
        residual: ``"measurement"`` (default, ``‖A D − y‖²``) or ``"image"`` (``‖Aᴴ(A D − y)‖²``).
        noise: ``"complex"`` (default) or ``"real"`` (for real-valued data such as the theory test).
    """

    def __init__(
        self,
        *,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        residual: Residual = "measurement",
        noise: NoiseKind = "complex",
    ) -> None:
        super().__init__(p_mean=p_mean, p_std=p_std, noise=noise)
        if residual not in ("measurement", "image"):
            raise ValueError(f"residual must be 'measurement' or 'image', got {residual!r}")
        self.residual = residual

    def network_input(
        self, y: torch.Tensor, further: MaskedOperator, sigma: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """``u = Ãᴴ (M̃ ⊙ y + σ Ã n)``: the further-corrupted noisy measurement in image space."""
        view = (y.shape[0],) + (1,) * (noise.ndim - 1)
        y_t = further.apply_mask(y) + further.forward(sigma.reshape(view) * noise)
        return further.adjoint(y_t)

    def __call__(
        self,
        model: nn.Module,
        y: torch.Tensor,
        A: MaskedOperator,
        further: MaskedOperator,
        *,
        image_shape: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        weights: torch.Tensor | None = None,
    ) -> LossOutput:
        """Per-sample loss.

        Args:
            model: an :class:`~ambientmri.models.EDMPrecond` (possibly DDP-wrapped).
            y: measurements ``A x0`` ``(B, *A.out_shape)``, zero-filled on the full grid.
            A: the training corruption of each sample (batched masks).
            further: ``Ã``, same transform as ``A`` with a mask ``≤ A``'s.
            image_shape: the network's image shape (default ``A.in_shape``).
            generator: the source of σ and noise.
            weights: optional per-coordinate weights on ``A``'s mask grid, shaped like ``A.mask``
                (:func:`~ambientmri.operators.weighting.balanced_weights`). The measurement-space
                residual becomes ``Σ_k w_k |(A D − y)_k|²``; the image-space one
                ``‖Aᴴ(√w ⊙ (A D − y))‖²`` (so that for single-coil Cartesian data, where the two
                spaces agree unweighted, they still agree weighted).
        """
        b = y.shape[0]
        image_shape = tuple(image_shape or A.in_shape)
        sigma = self.sample_sigma(b, y.device, generator)
        n = self.sample_noise((b, *A.in_shape), y.device, generator)
        u = self.network_input(y, further, sigma, n)
        d = denoise(model, u, further, sigma, image_shape)
        r = A.forward(d) - y
        if weights is not None:
            w = weights.to(r.device, torch.float32)
            w = w.unsqueeze(-len(A.grid_shape) - 1) if A.coil_axis else w
            r = r * w.sqrt()
        if self.residual == "image":
            r = A.adjoint(r)
        per = r.abs().square().reshape(b, -1).sum(1) / float(torch.tensor(image_shape).prod())
        return LossOutput(_precond(model).loss_weight(sigma) * per, sigma)

    def compute(self, model: nn.Module, inputs: LossInputs, generator: torch.Generator | None = None) -> LossOutput:
        """The loss of :class:`LossInputs` (``y``, ``A``, ``further``, optional ``weights``)."""
        assert inputs.y is not None and inputs.A is not None and inputs.further is not None
        return self(model, inputs.y, inputs.A, inputs.further, image_shape=inputs.image_shape, generator=generator,
                    weights=inputs.weights)


class CleanLoss(_EDMLoss):
    """The oracle: standard EDM denoising on clean images ``x0`` (synthetic data, fully sampled
    references). Never used on a corrupted store: it needs a clean image.
    """

    def __call__(
        self, model: nn.Module, x0: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> LossOutput:
        """Per-sample loss ``λ(σ) ‖D(x0 + σ n, 1, σ) − x0‖² / pixels`` for ``x0`` ``(B, *S)``."""
        return self._clean_style(model, x0, generator)

    def compute(self, model: nn.Module, inputs: LossInputs, generator: torch.Generator | None = None) -> LossOutput:
        """The loss of :class:`LossInputs` (``x0``)."""
        assert inputs.x0 is not None
        return self(model, inputs.x0, generator=generator)


class NaiveLoss(_EDMLoss):
    """The naive baseline: EDM denoising of zero-filled images ``Aᴴ y`` as if they were clean.

    A model trained this way learns the distribution of corrupted images (aliasing, holes);
    ambient training must beat it.
    """

    def __call__(
        self,
        model: nn.Module,
        y: torch.Tensor,
        A: MaskedOperator,
        *,
        image_shape: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """Per-sample loss on ``Aᴴ y`` reshaped to ``image_shape``."""
        image_shape = tuple(image_shape or A.in_shape)
        zero_filled = A.adjoint(y).reshape(y.shape[0], *image_shape)
        return self._clean_style(model, zero_filled, generator)

    def compute(self, model: nn.Module, inputs: LossInputs, generator: torch.Generator | None = None) -> LossOutput:
        """The loss of :class:`LossInputs` (``y``, ``A``)."""
        assert inputs.y is not None and inputs.A is not None
        return self(model, inputs.y, inputs.A, image_shape=inputs.image_shape, generator=generator)


#: the loss of each objective (the recipe's ``training.objective``)
LOSSES: dict[str, type[_EDMLoss]] = {"ambient": AmbientLoss, "clean": CleanLoss, "naive": NaiveLoss}


def make_loss(objective: str, *, p_mean: float = -1.2, p_std: float = 1.2, noise: NoiseKind = "complex",
              residual: Residual = "measurement") -> AmbientLoss | CleanLoss | NaiveLoss:
    """The loss of ``objective`` (``residual`` applies to the ambient loss only).

    Raises:
        ValueError: an unknown objective or a bad setting (one line).
    """
    obj = get_objective(objective)
    cls = LOSSES[obj.name]
    if cls is AmbientLoss:
        return AmbientLoss(p_mean=p_mean, p_std=p_std, noise=noise, residual=residual)
    return cls(p_mean=p_mean, p_std=p_std, noise=noise)  # type: ignore[return-value]
