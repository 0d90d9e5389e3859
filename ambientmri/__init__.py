"""ambientmri: learn the distribution of clean MRI from corrupted scans only.

Ambient Diffusion (Daras et al., NeurIPS 2023) and Ambient Diffusion Posterior Sampling
(Aali et al., ICLR 2025) for undersampled k-space, block-masked and pixel-masked MRI.
"""

__version__ = "0.1.0"

from ambientmri.errors import AmbientError, InputError, RecipeError

__all__ = ["AmbientError", "InputError", "RecipeError", "__version__"]
