"""Concrete linear operators: masks, Fourier transforms, coil sensitivities, dense matrices, and the
masked operator ``A = M · T`` that every corruption in ambientmri is built from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ambientmri.operators.base import LinearOperator
from ambientmri.operators.fft import fft2c, ifft2c


class Diagonal(LinearOperator):
    """Element-wise multiplication by a fixed tensor ``d`` broadcastable to ``(*batch, *shape)``.

    A 0/1 ``d`` is a sampling mask (an orthogonal projection, self-adjoint); the adjoint multiplies
    by ``conj(d)``.
    """

    def __init__(self, d: torch.Tensor, shape: Sequence[int], name: str = "Diagonal") -> None:
        super().__init__(shape, shape, name=name)
        self.d = d

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.d

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * (self.d.conj() if self.d.is_complex() else self.d)


class FFT2(LinearOperator):
    """Centered orthonormal 2-D FFT over the last two dims of ``shape`` (fastMRI's fft2c).

    ``shape`` may carry leading per-sample axes (e.g. coils): ``(C, H, W)``.
    """

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__(shape, shape, name="FFT2")

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifft2c(y)


class CoilSensitivity(LinearOperator):
    """``S: (H, W) -> (C, H, W)``, ``x ↦ (S_c · x)_c``; adjoint ``Σ_c conj(S_c) · k_c``.

    Args:
        maps: coil sensitivity maps ``(*batch, C, H, W)`` complex.
    """

    def __init__(self, maps: torch.Tensor) -> None:
        if maps.ndim < 3:
            raise ValueError(f"CoilSensitivity: maps must be (*batch, C, H, W), got {tuple(maps.shape)}")
        c, h, w = maps.shape[-3:]
        super().__init__((h, w), (c, h, w), name="CoilSensitivity")
        self.maps = maps

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps * x.unsqueeze(-3)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (self.maps.conj() * y).sum(dim=-3)


class Matrix(LinearOperator):
    """A dense matrix ``G``: ``(*batch, n) -> (*batch, m)``; ``G`` is ``(*batch, m, n)``."""

    def __init__(self, matrix: torch.Tensor, name: str = "Matrix") -> None:
        if matrix.ndim < 2:
            raise ValueError(f"{name}: matrix must be (*batch, m, n), got {tuple(matrix.shape)}")
        m, n = matrix.shape[-2:]
        super().__init__((n,), (m,), name=name)
        self.matrix = matrix

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.matrix.to(torch.promote_types(self.matrix.dtype, x.dtype))
        return (g @ x.to(g.dtype).unsqueeze(-1)).squeeze(-1)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        g = self.matrix.to(torch.promote_types(self.matrix.dtype, y.dtype))
        return (g.mH @ y.to(g.dtype).unsqueeze(-1)).squeeze(-1)


class MaskedOperator(LinearOperator):
    """``A = M · T``: a full transform ``T`` followed by a 0/1 sampling mask ``M`` on its output.

    Every corruption is one of these: pixel and block masks (``T = I``), single-coil Cartesian and
    2-D k-space sampling (``T = F``), multi-coil SENSE (``T = F S``, the mask shared by all coils)
    and the Gaussian sensing matrix (``T = G``, the mask selecting measured rows). Measurements are
    stored zero-filled at full size: ``y = M ⊙ T x0`` with zeros wherever ``M`` is zero. The
    further corruption ``Ã = M̃ · T`` with ``M̃ ≤ M`` is :meth:`restrict`; because ``M̃ ≤ M``,
    ``Ã x0 = M̃ ⊙ y`` is computable from ``y`` alone.

    Args:
        mask: 0/1 tensor on the sampling grid, broadcastable to ``(*batch, *grid)``; for coil data
            the grid omits the coil axis (the mask is shared by all coils).
        transform: ``T``.
        coil_axis: whether ``T``'s output has a coil axis right before the grid axes.
        kind: the corruption kind, for messages.
    """

    def __init__(
        self,
        mask: torch.Tensor,
        transform: LinearOperator,
        *,
        coil_axis: bool = False,
        kind: str = "masked",
    ) -> None:
        super().__init__(transform.in_shape, transform.out_shape, name=kind)
        self.mask = mask
        self.transform = transform
        self.coil_axis = coil_axis
        self.kind = kind
        self._applied = mask.unsqueeze(-len(self.grid_shape) - 1) if coil_axis else mask

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Shape of the sampling grid (the transform's output without a coil axis)."""
        return self.out_shape[1:] if self.coil_axis else self.out_shape

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform._forward(x) * self._applied

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.transform._adjoint(y * self._applied)

    def apply_mask(self, y: torch.Tensor) -> torch.Tensor:
        """``M ⊙ y`` for measurements ``y`` on the full grid (e.g. ``Ã x0 = M̃ ⊙ y``)."""
        return y * self._applied

    def restrict(self, mask: torch.Tensor) -> MaskedOperator:
        """The operator with the same transform and a new mask (e.g. the further corruption Ã)."""
        return MaskedOperator(mask, self.transform, coil_axis=self.coil_axis, kind=self.kind)

    def is_subset_of(self, other: MaskedOperator) -> bool:
        """Whether every measurement of ``self`` is also one of ``other`` (``M_self ≤ M_other``)."""
        a, b = torch.broadcast_tensors(self.mask.to(torch.float32), other.mask.to(torch.float32))
        return bool((a <= b).all())
