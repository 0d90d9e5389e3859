"""ambientmri: learn the distribution of clean MRI from corrupted scans only.

Ambient Diffusion (Daras et al., NeurIPS 2023) and Ambient Diffusion Posterior Sampling
(Aali et al., ICLR 2025) for undersampled k-space, block-masked and pixel-masked MRI.

The Python API (docs/api.md)::

    import ambientmri as am
    run = am.load_run("RUN")
    images = run.sample(16, seed=0)                       # complex64 (16, H, W)
    recon = run.reconstruct(kspace, mask=mask)            # one slice or volume of raw k-space
    am.prepare(SRC, STORE, "demo"); am.train("demo", "RUN"); am.audit(SAMPLES, TRAIN, HELDOUT, OUT)

The names in ``__all__`` are the public API; everything else may change. They load on first use,
so ``import ambientmri`` stays fast (no torch).
"""

__version__ = "0.1.0"

from ambientmri.errors import AmbientError, InputError, OutputError, RecipeError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (2 ms): type checkers read it as True
if TYPE_CHECKING:
    from ambientmri.api import Run, audit, load_run, prepare, train

__all__ = [
    "AmbientError", "InputError", "OutputError", "RecipeError", "Run", "__version__", "audit", "load_run",
    "prepare", "train",
]

_API = ("Run", "audit", "load_run", "prepare", "train")


def __getattr__(name: str) -> object:
    """The API's names, imported from :mod:`ambientmri.api` on first use (PEP 562)."""
    if name == "audit":  # the audit package, callable as the API's audit (see its __init__)
        import importlib

        return importlib.import_module("ambientmri.audit")
    if name in _API:
        from ambientmri import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ambientmri' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
