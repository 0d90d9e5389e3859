"""Score networks: MONAI's DiffusionModelUNet factory and the EDM preconditioning wrapper."""

from ambientmri.models.precond import EDMPrecond, SkipMode
from ambientmri.models.unet import ModelConfigError, build_unet, unet_problems

__all__ = ["EDMPrecond", "ModelConfigError", "SkipMode", "build_unet", "unet_problems"]
