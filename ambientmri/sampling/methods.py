"""The reconstruction methods' settings: one typed, frozen config per method, defaults in one place.

``ambientmri reconstruct``, :func:`ambientmri.sampling.reconstruct.reconstruct`, the Python API and
the restoration functions' signatures all take their defaults from these classes, so a default is
written once. :func:`method_config` builds a method's config from keyword settings (the CLI's flags
or an older ``options`` dict); :meth:`MethodConfig.settings` is what ``summary.json`` records.

This module imports nothing of the package, so :mod:`~ambientmri.sampling.restoration` and
:mod:`~ambientmri.sampling.classical` can read their defaults from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "A_OS_SIGMA",
    "CLASSICAL_METHODS",
    "DC_STEPS",
    "L1_WAVELET_LAMBDA",
    "MASK_CHANNELS",
    "METHODS",
    "METHOD_CONFIGS",
    "MODEL_METHODS",
    "ADPSConfig",
    "AOSConfig",
    "DDRMConfig",
    "DPSConfig",
    "L1WaveletConfig",
    "MethodConfig",
    "SenseConfig",
    "ZeroFilledConfig",
    "method_config",
]

#: A-OS's default noise level told to the network (docs/sampling.md: how it was chosen).
A_OS_SIGMA = 0.1
#: L1-wavelet's default regularisation weight λ (in the store's normalised units).
L1_WAVELET_LAMBDA = 1e-3
#: a-os ``--mask-channel`` values: the scan's own mask, or a training-type ``Ã ⊆`` it.
MASK_CHANNELS = ("measured", "further")
#: ``--dc-step`` values of the posterior samplers (a-dps, dps): how their step size is measured.
#: ``relative``: a fraction of the least-squares step ``∇_x ½‖y − A x̂0‖²`` (the same meaning at
#: every image size, intensity scale and coil count); ``fixed``: the papers' normalised gradient
#: ``∇_x‖y − A x̂0‖``, a step of about the step size in ℓ2 norm whatever the image.
DC_STEPS = ("relative", "fixed")


def _check_dc_step(value: str) -> None:
    if value not in DC_STEPS:
        raise ValueError(f"--dc-step {value!r}: allowed: {', '.join(DC_STEPS)}")


@dataclass(frozen=True)
class MethodConfig:
    """Settings shared by every method.

    Attributes:
        seed: seed of the sampler noise (posterior samplers) and of ``Ã`` draws.
    """

    name: ClassVar[str] = ""
    #: whether the method needs a trained model (``--run``).
    needs_model: ClassVar[bool] = False
    seed: int = 0

    def settings(self) -> dict[str, Any]:
        """Every setting of this method, by name (what ``summary.json`` records under ``settings``)."""
        return {"method": self.name, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class ZeroFilledConfig(MethodConfig):
    """``zero-filled``: ``Aᴴ y``, coil-combined (no settings)."""

    name: ClassVar[str] = "zero-filled"


@dataclass(frozen=True)
class SenseConfig(MethodConfig):
    """``sense``: CG-SENSE on ``(AᴴA + λI) x = Aᴴ y``."""

    name: ClassVar[str] = "sense"
    iters: int = 30
    lam: float = 0.0


@dataclass(frozen=True)
class L1WaveletConfig(MethodConfig):
    """``l1-wavelet``: ``argmin ½‖Ax − y‖² + λ‖Wx‖₁``."""

    name: ClassVar[str] = "l1-wavelet"
    iters: int = 100
    lam: float = L1_WAVELET_LAMBDA


@dataclass(frozen=True)
class AOSConfig(MethodConfig):
    """``a-os``: one evaluation of the ambient model at noise level ``sigma``."""

    name: ClassVar[str] = "a-os"
    needs_model: ClassVar[bool] = True
    sigma: float = A_OS_SIGMA
    mask_channel: str = "measured"

    def __post_init__(self) -> None:
        if self.mask_channel not in MASK_CHANNELS:
            raise ValueError(f"--mask-channel {self.mask_channel!r}: allowed: {', '.join(MASK_CHANNELS)}")


@dataclass(frozen=True)
class ADPSConfig(MethodConfig):
    """``a-dps``: ambient posterior sampling, ``steps × num_samples`` network evaluations."""

    name: ClassVar[str] = "a-dps"
    needs_model: ClassVar[bool] = True
    steps: int = 100
    l_ss: float = 1.0
    num_samples: int = 1
    dc_step: str = "relative"

    def __post_init__(self) -> None:
        _check_dc_step(self.dc_step)


@dataclass(frozen=True)
class DPSConfig(MethodConfig):
    """``dps``: diffusion posterior sampling with step size ``zeta``."""

    name: ClassVar[str] = "dps"
    needs_model: ClassVar[bool] = True
    steps: int = 100
    zeta: float = 1.0
    dc_step: str = "relative"

    def __post_init__(self) -> None:
        _check_dc_step(self.dc_step)


@dataclass(frozen=True)
class DDRMConfig(MethodConfig):
    """``ddrm``: denoising diffusion restoration."""

    name: ClassVar[str] = "ddrm"
    needs_model: ClassVar[bool] = True
    steps: int = 20


#: the registry: method name -> its config class, in the order of ``--method``'s choices.
METHOD_CONFIGS: dict[str, type[MethodConfig]] = {
    c.name: c for c in (AOSConfig, ADPSConfig, DPSConfig, DDRMConfig, ZeroFilledConfig, SenseConfig, L1WaveletConfig)
}
MODEL_METHODS = tuple(n for n, c in METHOD_CONFIGS.items() if c.needs_model)
CLASSICAL_METHODS = tuple(n for n, c in METHOD_CONFIGS.items() if not c.needs_model)
METHODS = MODEL_METHODS + CLASSICAL_METHODS
# the old ``options`` dict's name of a-os's mask channel
_ALIASES = {"mask": "mask_channel"}
_KNOWN = {f.name for c in METHOD_CONFIGS.values() for f in dataclasses.fields(c)}


def method_config(method: str, settings: Mapping[str, Any] | None = None, /, **more: Any) -> MethodConfig:
    """The config of ``method`` from keyword settings; ``None`` values keep the method's default.

    Settings another method uses (``zeta`` for a-os, say) are ignored, so one set of CLI flags (or an
    older ``options`` dict) serves every method; a name no method knows is an error.

    Raises:
        ValueError: an unknown method, an unknown setting, or an invalid value.
    """
    if method not in METHOD_CONFIGS:
        raise ValueError(f"--method {method!r}: allowed: {', '.join(METHODS)}")
    cls = METHOD_CONFIGS[method]
    values = {_ALIASES.get(k, k): v for k, v in {**(settings or {}), **more}.items()}
    if values.pop("method", method) != method:
        raise ValueError(f"reconstruct: settings of another method given for {method!r}")
    unknown = sorted(set(values) - _KNOWN)
    if unknown:
        raise ValueError(f"reconstruct: unknown setting {unknown[0]!r}; known: {', '.join(sorted(_KNOWN))}")
    own = {f.name: f.type for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key in own and value is not None:
            kind = {"int": int, "float": float, "str": str}[str(own[key])]
            kwargs[key] = kind(value)
    return cls(**kwargs)
