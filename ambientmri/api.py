"""The Python API for notebooks: ``import ambientmri as am`` (docs/api.md).

Each function mirrors a CLI command with the same defaults and calls the same library code:

- :func:`load_run` → a :class:`Run`: ``run.sample(16, seed=0)`` (``ambientmri sample``) and
  ``run.reconstruct(kspace, mask=None, method="a-os")`` (``ambientmri reconstruct`` on arrays);
- :func:`prepare` (``ambientmri prepare``), :func:`train` (``ambientmri train``),
  :func:`audit` (``ambientmri audit``).

``run.reconstruct`` writes the arrays as a temporary fastMRI-format file (the project's own
:func:`~ambientmri.data.fastmri.write_fastmri`) and runs the library
:func:`~ambientmri.sampling.reconstruct.reconstruct` on it: the run's crop, the coil maps (ESPIRiT
from the ACS lines, as ``prepare`` computes them), the per-slice scaling and the mask seeding are
exactly those of the command on a file holding the same k-space.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from ambientmri.data.store import PrepareResult
    from ambientmri.recipes import Recipe
    from ambientmri.sampling.runs import LoadedRun
    from ambientmri.training.trainer import TrainResult

__all__ = ["Run", "audit", "load_run", "prepare", "train"]


def _recipe(recipe: str | Path | Recipe, overrides: Sequence[str] | None) -> Recipe:
    """A recipe object as given, or a YAML file / built-in name read with ``--set``-style overrides."""
    from ambientmri.recipes import Recipe, load_recipe

    if isinstance(recipe, Recipe):
        if overrides:
            raise ValueError("overrides apply to a recipe file or name, not to a Recipe object")
        return recipe
    return load_recipe(recipe, list(overrides or []))


@dataclass
class Run:
    """A trained model loaded for sampling and reconstruction (see :func:`load_run`).

    Attributes:
        loaded: the underlying :class:`~ambientmri.sampling.runs.LoadedRun` (recipe, EMA model,
            image shape, objective, step, checkpoint).
        device: ``cpu`` or ``cuda``: where the model sits and the methods run.
    """

    loaded: LoadedRun
    device: str

    @property
    def recipe(self) -> Recipe:
        """The resolved recipe the model was trained with."""
        return self.loaded.recipe

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The image grid ``(H, W)`` the model was trained on (after ``data.crop``)."""
        return tuple(self.loaded.image_shape)

    @property
    def objective(self) -> str:
        """``ambient``, ``clean`` or ``naive``."""
        return self.loaded.objective

    def sample(
        self,
        num: int = 16,
        *,
        seed: int = 0,
        steps: int = 18,
        sampler: str = "heun",
        batch_size: int = 8,
        churn: float = 0.0,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        guidance_weight: float = 0.0,
        guidance_masks: int = 0,
    ) -> np.ndarray:
        """Generate ``num`` scans, as ``ambientmri sample`` does with the same arguments (its defaults).

        Args:
            num: how many scans.
            seed: seed of the noise and of the masks Ã.
            steps: sampler steps (Heun: NFE = 2·steps − 1).
            sampler: ``heun`` or ``euler``.
            batch_size: samples per network batch.
            churn: EDM stochastic churn (0: deterministic ODE).
            sigma_min, sigma_max: the noise-level range.
            guidance_weight, guidance_masks: reconstruction guidance (ambient runs).

        Returns:
            complex64 ``(num, H, W)``: the images ``ambientmri sample`` writes to ``samples.npy``
            (in the store's normalised units).
        """
        from ambientmri.workflows.sample import sample_scans

        result = sample_scans(
            self.loaded, num, steps=steps, sampler=sampler, seed=seed, batch_size=batch_size, churn=churn,
            sigma_min=sigma_min, sigma_max=sigma_max, guidance_weight=guidance_weight,
            guidance_masks=guidance_masks, device=self.device,
        )
        return np.asarray(result.samples, dtype=np.complex64)

    def reconstruct(
        self,
        kspace: np.ndarray,
        mask: np.ndarray | None = None,
        method: str = "a-os",
        *,
        multicoil: bool | None = None,
        output: Literal["magnitude", "complex"] = "magnitude",
        name: str = "kspace.h5",
        recon_size: tuple[int, int] | None = None,
        steps: int | None = None,
        sigma: float | None = None,
        mask_channel: str = "measured",
        l_ss: float | None = None,
        zeta: float | None = None,
        num_samples: int = 1,
        lam: float | None = None,
        seed: int = 0,
        dc_step: str | None = None,
        batch_size: int = 8,
    ) -> np.ndarray:
        """Reconstruct one slice or one volume of raw k-space, exactly as ``ambientmri reconstruct`` a file.

        The k-space goes through what the command does to a fastMRI file holding it: the run's
        ``data.crop``, the run's corruption (with ``mask=None``: fully sampled input undersampled
        with the recipe's mask, seeded by ``name`` like fastMRI's validation masks; with a 1-D
        ``mask``: the k-space is taken as already undersampled by it), ESPIRiT coil maps from the
        ACS lines, per-slice scaling, the method, and the scale multiplied back.

        Args:
            kspace: complex, single-coil ``(H, W)`` (one slice) or ``(S, H, W)``; multi-coil
                ``(C, H, W)`` (one slice) or ``(S, C, H, W)``.
            mask: None, or the 1-D ``(W,)`` sampling mask the k-space was acquired with (columns
                where it is 0 are treated as unmeasured).
            method: ``a-os``, ``a-dps``, ``dps``, ``ddrm``, ``zero-filled``, ``sense`` or ``l1-wavelet``.
            multicoil: whether a 3-D ``kspace`` is ``(C, H, W)`` (True) or ``(S, H, W)`` (False);
                default: the run's ``data.challenge`` when it has one.
            output: ``magnitude`` (float32, as the command's ``reconstruction`` dataset) or
                ``complex`` (complex64, the same crop).
            name: the volume's file name (it seeds the mask when ``mask`` is None).
            recon_size: the fastMRI target size ``(h, w)`` to center-crop to (clipped to the image
                grid); default: fastMRI's default for the k-space size, as for a file without one.
            steps, sigma, mask_channel, l_ss, zeta, num_samples, lam, seed, dc_step: the method
                options of ``ambientmri reconstruct`` (same names, same defaults; None: the method's).
            batch_size: slices per batch.

        Returns:
            ``(h, w)`` for one slice or ``(S, h, w)`` for a volume, float32 magnitude or complex64.

        Raises:
            ValueError: a k-space shape, dtype, mask or option that does not fit.
        """
        import h5py

        from ambientmri.data.fastmri import build_ismrmrd_header, write_fastmri
        from ambientmri.sampling.methods import method_config
        from ambientmri.sampling.reconstruct import reconstruct

        if output not in ("magnitude", "complex"):
            raise ValueError(f"output {output!r}: allowed: magnitude, complex")
        k, one_slice = self._volume(kspace, multicoil)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.ndim != 1 or mask.shape[0] != k.shape[-1]:
                raise ValueError(f"mask must be 1-D of length W={k.shape[-1]} (the k-space width), got {mask.shape}")
        name = f"{Path(name).name.removesuffix('.h5')}.h5"
        header = None
        if recon_size is not None:
            h, w = k.shape[-2:]
            header = build_ismrmrd_header((h, w, 1), (int(recon_size[0]), int(recon_size[1]), 1), w // 2, w - 1)
        config = method_config(method, seed=seed, steps=steps, sigma=sigma, mask_channel=mask_channel,
                               l_ss=l_ss, zeta=zeta, num_samples=num_samples, lam=lam, dc_step=dc_step)
        with tempfile.TemporaryDirectory(prefix="ambientmri-api-") as tmp:
            (Path(tmp) / "input").mkdir()
            src = write_fastmri(Path(tmp) / "input" / name, k, mask=mask, header=header)
            out = Path(tmp) / "output"
            reconstruct(src, out, method, run=self.loaded, config=config, batch_size=batch_size,
                        device=self.device, nifti=False, previews=False, keep_complex=output == "complex")
            dataset = "reconstruction" if output == "magnitude" else "reconstruction_complex"
            with h5py.File(out / name, "r") as f:
                image = np.asarray(f[dataset][()])
        return image[0] if one_slice else image

    def _volume(self, kspace: np.ndarray, multicoil: bool | None) -> tuple[np.ndarray, bool]:
        """``kspace`` as a fastMRI ``(S, H, W)`` or ``(S, C, H, W)`` volume, and whether it was one slice."""
        k = np.asarray(kspace)
        if not np.iscomplexobj(k):
            raise ValueError(f"kspace must be complex (raw k-space), got dtype {k.dtype}")
        if k.ndim == 3 and multicoil is None:
            challenge = getattr(self.recipe.data, "challenge", None)
            if challenge is None:
                raise ValueError("a 3-D kspace is (S, H, W) single-coil or (C, H, W) multi-coil: "
                                 "pass multicoil=True or multicoil=False")
            multicoil = challenge == "multicoil"
        if k.ndim == 2:
            return k[None], True
        if k.ndim == 3:
            return (k[None], True) if multicoil else (k, False)
        if k.ndim == 4:
            return k, False
        raise ValueError(f"kspace must be (H, W), (S, H, W), (C, H, W) or (S, C, H, W); got shape {k.shape}")


def load_run(run: str | Path, *, device: str = "auto", weights: Literal["ema", "model"] = "ema") -> Run:
    """Load a trained run folder, a checkpoint file or an exported model folder (as ``--run`` reads them).

    Args:
        run: the run folder (its ``checkpoints/last.pt``), a checkpoint, or an ``ambientmri export``
            model folder.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        weights: ``ema`` (what the commands use) or ``model`` (the raw weights; runs only).

    Returns:
        A :class:`Run`.

    Raises:
        InputError: no readable checkpoint there.
        ValueError: an unknown ``device``.
    """
    from ambientmri.sampling.runs import load_run as _load
    from ambientmri.utils import resolve_device

    dev = resolve_device(device)
    return Run(_load(run, device=dev, weights=weights), dev)


def prepare(
    src: str | Path,
    out: str | Path,
    recipe: str | Path | Recipe,
    *,
    overrides: Sequence[str] | None = None,
    workers: int | None = None,
) -> PrepareResult:
    """Raw scans → corrupted store, as ``ambientmri prepare SRC --out OUT --recipe RECIPE``.

    Args:
        src: fastMRI file/folder, NIfTI file/folder, or folder of DICOM series.
        out: the store folder to write.
        recipe: a recipe YAML, a built-in recipe name, or a :class:`~ambientmri.recipes.Recipe`.
        overrides: ``--set``-style ``key=value`` overrides of a recipe file or name.
        workers: processes preparing volumes in parallel (default ``prepare.workers``).

    Returns:
        The :class:`~ambientmri.data.store.PrepareResult` (store, volumes, slices, seconds).
    """
    from ambientmri.data.store import prepare_store

    return prepare_store(src, out, _recipe(recipe, overrides), workers=workers)


def train(
    recipe: str | Path | Recipe,
    out: str | Path = "run",
    *,
    steps: int | None = None,
    resume: bool = False,
    log_every: int | None = None,
    overrides: Sequence[str] | None = None,
    init_from: str | Path | None = None,
    store: str | Path | None = None,
    heldout_store: str | Path | None = None,
) -> TrainResult:
    """Train a model, as ``ambientmri train RECIPE --out OUT`` with the same flags and defaults.

    Args:
        recipe: a recipe YAML, a built-in recipe name, or a :class:`~ambientmri.recipes.Recipe`.
        out: the run folder.
        steps: train until this step (default ``training.steps``).
        resume: continue the run in ``out`` from its last checkpoint.
        log_every: log every K steps (default ``training.log_every``).
        overrides: ``--set``-style ``key=value`` overrides of a recipe file or name.
        init_from: finetune from a run, checkpoint or exported model (its EMA weights).
        store, heldout_store: prepared stores (``training.store`` / ``training.heldout_store``).

    Returns:
        The :class:`~ambientmri.training.trainer.TrainResult` (steps, last loss, checkpoint, speed).
    """
    from ambientmri.training.run import train_run, with_training

    rec = _recipe(recipe, overrides)
    for key, value in (("steps", steps), ("init_from", init_from), ("store", store),
                       ("heldout_store", heldout_store)):
        if value is not None:
            rec = with_training(rec, **{key: value if key == "steps" else Path(value)})
    return train_run(rec, out, resume=resume, log_every=log_every)


def audit(
    samples: str | Path,
    train: str | Path,
    heldout: str | Path,
    out: str | Path,
    *,
    quantile: float = 0.99,
    k: int = 3,
    controls: bool = True,
    seed: int = 0,
    run: str | Path | None = None,
    probe: str | None = None,
    probe_fraction: float | None = None,
    overwrite: bool = False,
    search: str = "auto",
) -> dict[str, Any]:
    """Memorization audit, as ``ambientmri audit`` (``controls=False`` is ``--no-controls``).

    Args:
        samples: generated scans (an ``ambientmri sample`` folder or a ``.npy``).
        train: the training set: a corrupted store, fastMRI, NIfTI or DICOM input.
        heldout: real scans of subjects NOT in training, same kinds as ``train``.
        out: the output folder (``report.html``, ``summary.json``).
        quantile, k, controls, seed, run, probe, probe_fraction, overwrite, search: as the command's flags.

    Returns:
        The summary written to ``out/summary.json`` (``verdict``, ``memorized_fraction``,
        ``threshold``, ``n_samples``...).
    """
    from ambientmri.audit.run import run_audit

    return run_audit(samples, train, heldout, out, quantile=quantile, k=k, controls=controls, seed=seed,
                     run=run, probe=probe, probe_fraction=probe_fraction, overwrite=overwrite, search=search)
