"""Linear operators, corruptions (A and the further corruption Ã), sampling masks and the
full-rank condition check."""

from ambientmri.operators.base import AdjointOperator, ComposedOperator, Identity, LinearOperator
from ambientmri.operators.condition import ConditionReport, check_full_rank
from ambientmri.operators.corruptions import (
    BlockCorruption,
    CartesianCorruption,
    Corruption,
    GaussianCorruption,
    InpaintingCorruption,
    KSpace2DCorruption,
)
from ambientmri.operators.fft import fft2c, ifft2c
from ambientmri.operators.linear import FFT2, CoilSensitivity, Diagonal, MaskedOperator, Matrix

__all__ = [
    "FFT2",
    "AdjointOperator",
    "BlockCorruption",
    "CartesianCorruption",
    "CoilSensitivity",
    "ComposedOperator",
    "ConditionReport",
    "Corruption",
    "Diagonal",
    "GaussianCorruption",
    "Identity",
    "InpaintingCorruption",
    "KSpace2DCorruption",
    "LinearOperator",
    "MaskedOperator",
    "Matrix",
    "check_full_rank",
    "fft2c",
    "ifft2c",
]
