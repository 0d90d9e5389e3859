"""The linear-operator contract.

Every operator maps batched tensors ``(*batch, *in_shape) -> (*batch, *out_shape)``; leading batch
dimensions are free and broadcast against the operator's own per-sample parameters (a mask of shape
``(B, H, W)`` applies one mask per batch element, one of shape ``(H, W)`` the same mask to all).
Concrete operators implement :meth:`LinearOperator._forward` and :meth:`LinearOperator._adjoint`;
shape checks, the normal operator, the adjoint view ``.H`` and composition ``A @ B`` come from here.
MRI data is complex64 (complex128 works as well, which the contract tests use).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Shape = tuple[int, ...]


class LinearOperator:
    """Base class: a linear map with declared per-sample input and output shapes.

    Args:
        in_shape: trailing shape of the input, e.g. ``(H, W)``.
        out_shape: trailing shape of the output, e.g. ``(C, H, W)``.
        name: a short name used in error messages.
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], name: str = "") -> None:
        self.in_shape: Shape = tuple(int(s) for s in in_shape)
        self.out_shape: Shape = tuple(int(s) for s in out_shape)
        self.name = name or type(self).__name__

    # -- implemented by concrete operators -------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- the contract ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the operator: ``(*batch, *in_shape) -> (*batch, *out_shape)``."""
        _check_shape(self.name, "input", x, self.in_shape)
        return self._forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply the adjoint: ``(*batch, *out_shape) -> (*batch, *in_shape)``."""
        _check_shape(self.name, "adjoint input", y, self.out_shape)
        return self._adjoint(y)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``AᴴA``."""
        return self.adjoint(self.forward(x))

    __call__ = forward

    @property
    def H(self) -> LinearOperator:
        """The adjoint as an operator of its own."""
        return AdjointOperator(self)

    def __matmul__(self, other: LinearOperator) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return ComposedOperator(self, other)

    def __repr__(self) -> str:
        return f"{self.name}({self.in_shape} -> {self.out_shape})"


def _check_shape(name: str, what: str, x: torch.Tensor, shape: Shape) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: {what} must be a torch.Tensor, got {type(x).__name__}")
    n = len(shape)
    if x.ndim < n or tuple(x.shape[x.ndim - n :]) != shape:
        raise ValueError(
            f"{name}: {what} has shape {tuple(x.shape)}, expected (*batch, {', '.join(map(str, shape))})"
        )


class AdjointOperator(LinearOperator):
    """The adjoint ``Aᴴ`` of an operator, as an operator."""

    def __init__(self, op: LinearOperator) -> None:
        super().__init__(op.out_shape, op.in_shape, name=f"{op.name}ᴴ")
        self.op = op

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op._adjoint(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op._forward(y)

    @property
    def H(self) -> LinearOperator:
        return self.op


class ComposedOperator(LinearOperator):
    """``outer @ inner``: apply ``inner`` first, then ``outer``."""

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        if outer.in_shape != inner.out_shape:
            raise ValueError(
                f"cannot compose {outer.name} (input {outer.in_shape}) after "
                f"{inner.name} (output {inner.out_shape})"
            )
        super().__init__(inner.in_shape, outer.out_shape, name=f"{outer.name}·{inner.name}")
        self.outer = outer
        self.inner = inner

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer._forward(self.inner._forward(x))

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner._adjoint(self.outer._adjoint(y))


class Identity(LinearOperator):
    """The identity on ``shape``."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__(shape, shape, name="Identity")

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y
