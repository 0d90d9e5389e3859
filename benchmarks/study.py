"""The study: does ambient training learn the clean distribution, restore, and memorize less?

Usage:
    python benchmarks/study.py --profile cpu --out study_cpu [--only q1 q2 ...] [--steps-scale 1.0]
    python benchmarks/study.py --profile gpu --out study_gpu --device cuda

It answers the research questions of Daras et al. 2023 (Ambient Diffusion) on synthetic cohorts
(``ambientmri synth``), every model trained by ``ambientmri.training.run.train_run`` exactly as
``ambientmri train`` would, with the same network and budget per question:

- **q1** distribution learning: an oracle trained on the clean scans vs a *naive* model trained on
  zero-filled corrupted scans as if clean vs an *ambient* model, at k-space R = 2, 4, 6, 8, pixel
  inpainting p = 0.4 … 0.9 and block masking. Measured on held-out clean scans by the sample-set
  metrics of ``ambientmri compare-samples`` (patch SWD, radial spectrum distance, rarely-sampled
  k-space energy, zero pixels) and by the held-out denoising NMSE of the model's posterior-mean
  estimate at three noise levels (``HeldoutEvaluator``).
- **q2** restoration: method × setting → PSNR, SSIM, NMSE, NFE, seconds per slice, through
  ``ambientmri reconstruct``'s code (A-OS and A-DPS with the ambient model; DPS and DDRM with the
  oracle model; L1-wavelet; zero-filled), scored with fastMRI's metrics.
- **q3** memorization vs training-set size: ambient vs clean-trained models on 3 cohort sizes, audited
  by ``ambientmri audit``'s code (nearest training neighbour, threshold calibrated on held-out subjects).
- **q4** the effect of δ (the further corruption), including δ = 0.
- **q5** finetuning: a model pretrained on clean knee scans, finetuned on a small brain cohort with the
  ambient objective on corrupted scans vs on the clean scans (and both from scratch).

Every trained run, sample set and evaluation is cached under OUT: rerunning resumes where it stopped.
Writes OUT/results.json, OUT/results.md (the tables) and OUT/figures/*.png (one figure per question).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from ambientmri import __version__
from ambientmri.audit.run import load_scan_set, run_audit
from ambientmri.data.store import CorruptedStore, prepare_store
from ambientmri.data.synth import synth_cohort
from ambientmri.evaluation.metrics import evaluate_folders
from ambientmri.evaluation.sampleset import sampleset_report, unmeasured_energy_fraction
from ambientmri.operators.fft import center_crop
from ambientmri.recipes import Recipe, apply_overrides, validate_recipe
from ambientmri.sampling.generate import generate
from ambientmri.sampling.reconstruct import reconstruct
from ambientmri.sampling.runs import LoadedRun, load_run
from ambientmri.training.evaluation import HeldoutEvaluator
from ambientmri.training.run import train_run
from ambientmri.utils import resolve_device, save_npy_atomic, write_json_atomic, write_text_atomic
from ambientmri.workflows.stages import STAGE_FILE, StageCache

QUESTIONS = ("q1", "q2", "q3", "q4", "q5")
MODELS = ("oracle", "ambient", "naive")


@dataclass(frozen=True)
class Profile:
    """Sizes and budgets of one study profile (every model of a question gets the same budget)."""

    name: str
    challenge: str
    coils: int
    matrix: tuple[int, int]  # k-space (2x oversampled readout) x phase encodes
    crop: tuple[int, int]  # the image grid the models work on
    model: dict[str, Any]
    batch: int
    lr: float
    steps: int  # q1, q2, q4 and the q5 pretraining
    ema_images: float
    train_subjects: int  # 4 slices each
    heldout_subjects: int  # calibration / reference set (clean, never trained on)
    recon_subjects: int  # held-out subjects reconstructed in q2 (a prefix of the held-out set)
    sizes: tuple[int, ...]  # q3 training-set sizes in subjects
    mem_steps: int
    mem_long: tuple[int, int]  # (subjects, steps): a small set trained long
    pretrain_subjects: int
    finetune_subjects: int
    finetune_steps: int
    samples: int
    sample_steps: int
    dps_steps: int
    adps_steps: int
    kspace_r: tuple[int, ...] = (2, 4, 6, 8)
    pixel_p: tuple[float, ...] = (0.4, 0.6, 0.8, 0.9)
    eval_sigmas: tuple[float, ...] = (0.1, 0.3, 1.0)
    slices: int = 4
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_SMALL_UNET = {"kind": "unet", "channels": [32, 64, 64], "num_res_blocks": 1, "attention_levels": [False, False, True],
               "norm_num_groups": 16, "num_head_channels": 32}
PROFILES: dict[str, Profile] = {
    "cpu": Profile(
        name="cpu", challenge="singlecoil", coils=1, matrix=(64, 32), crop=(32, 32), model=_SMALL_UNET, batch=8,
        lr=5e-4, steps=1000, ema_images=1000, train_subjects=64, heldout_subjects=16, recon_subjects=4,
        sizes=(25, 75, 250), mem_steps=1000, mem_long=(8, 4000),
        pretrain_subjects=64, finetune_subjects=8, finetune_steps=600,
        samples=64, sample_steps=18, dps_steps=100, adps_steps=100,
        note="32x32 single-coil synthetic scans, 1.1 M-parameter UNet; about 60-90 min on 2 CPU cores",
    ),
    "scale": Profile(
        name="scale", challenge="singlecoil", coils=1, matrix=(64, 32), crop=(32, 32), model=_SMALL_UNET, batch=64,
        lr=5e-4, steps=2500, ema_images=16000, train_subjects=64, heldout_subjects=16, recon_subjects=4,
        sizes=(25, 75, 250), mem_steps=2500, mem_long=(8, 10000),
        pretrain_subjects=64, finetune_subjects=8, finetune_steps=1500,
        samples=64, sample_steps=18, dps_steps=100, adps_steps=100,
        note="the cpu profile's data and network with 20x the training images (batch 64 x 2500 steps): "
        "does more training close the gaps? For a GPU",
    ),
    "gpu": Profile(
        name="gpu", challenge="multicoil", coils=4, matrix=(640, 320), crop=(320, 320),
        model={"kind": "unet", "channels": [64, 128, 256, 256], "num_res_blocks": 2,  # the fastMRI recipes' network
               "attention_levels": [False, False, False, True], "norm_num_groups": 32, "num_head_channels": 64,
               "use_flash_attention": True},
        batch=16, lr=2e-4, steps=20000, ema_images=50000, train_subjects=250, heldout_subjects=25, recon_subjects=5,
        sizes=(25, 75, 250), mem_steps=20000, mem_long=(8, 40000),
        pretrain_subjects=250, finetune_subjects=8, finetune_steps=5000,
        samples=256, sample_steps=18, dps_steps=1000, adps_steps=500,
        note="320x320 4-coil synthetic scans (fastMRI-like), 25 M-parameter UNet; 640k training steps x 16 "
        "images, about 32 H200-hours of training at the measured 89 images/s, plus sampling",
    ),
    "smoke": Profile(
        name="smoke", challenge="singlecoil", coils=1, matrix=(32, 16), crop=(16, 16),
        model={"kind": "unet", "channels": [16, 16], "num_res_blocks": 1, "attention_levels": [False, False],
               "norm_num_groups": 8, "num_head_channels": 8},
        batch=4, lr=5e-4, steps=3, ema_images=50, train_subjects=3, heldout_subjects=3, recon_subjects=1,
        sizes=(2, 3), mem_steps=2, mem_long=(2, 3),
        pretrain_subjects=2, finetune_subjects=2, finetune_steps=2,
        samples=4, sample_steps=3, dps_steps=3, adps_steps=3, kspace_r=(4,), pixel_p=(0.6,), eval_sigmas=(1.0,),
        slices=2, note="a few seconds per model: checks that the whole study runs (tests)",
    ),
}


# ----------------------------------------------------------------------------------------------
# settings and recipes
# ----------------------------------------------------------------------------------------------
def kspace_setting(r: int, *, increase: float | None = 1.0, extra: int | None = None) -> dict[str, Any]:
    further: dict[str, Any] = {"acceleration_increase": increase} if extra is None else {"extra": extra}
    return {"kind": "cartesian", "mask_type": "random", "center_fractions": [0.5 / r], "accelerations": [r],
            "further": further}


def pixel_setting(p: float, delta: float = 0.1) -> dict[str, Any]:
    return {"kind": "inpainting", "p": p, "delta": delta}


BLOCK = {"kind": "block", "size": 0.4, "blocks": 1, "extra_blocks": 1}


def q1_settings(pr: Profile) -> dict[str, dict[str, Any]]:
    out = {f"kspace R={r}": kspace_setting(r) for r in pr.kspace_r}
    out.update({f"pixels p={p:g}": pixel_setting(p) for p in pr.pixel_p})
    out["block 40%"] = BLOCK
    return out


def q2_settings(pr: Profile) -> list[str]:
    want = ["kspace R=4", "kspace R=8", "pixels p=0.6", "pixels p=0.9"]
    return [s for s in want if s in q1_settings(pr)]


def q4_settings(pr: Profile) -> dict[str, tuple[str, float, dict[str, Any]]]:
    """name -> (family, δ as reported, corruption); δ for k-space is the fraction of A's lines Ã removes."""
    p = 0.8 if 0.8 in pr.pixel_p else pr.pixel_p[-1]
    r = 4 if 4 in pr.kspace_r else pr.kspace_r[0]
    out: dict[str, tuple[str, float, dict[str, Any]]] = {}
    for d in (0.0, 0.02, 0.1, 0.3):
        name = f"pixels p={p:g}" if d == 0.1 else f"pixels p={p:g} delta={d:g}"
        out[name] = (f"pixels p={p:g}", d, pixel_setting(p, d))
    for inc in (0.0, 1.0, 3.0):
        name = f"kspace R={r}" if inc == 1.0 else f"kspace R={r} R~={r + inc:g}" + (" (A~ = A)" if inc == 0 else "")
        cfg = kspace_setting(r, extra=0) if inc == 0 else kspace_setting(r, increase=inc)
        out[name] = (f"kspace R={r}", 1.0 - r / (r + inc), cfg)
    return out


def make_recipe(pr: Profile, name: str, corruption: dict[str, Any], objective: str, *, steps: int, store: Path,
                device: str, anatomy: str = "brain", init_from: Path | None = None, skip: str = "auto") -> Recipe:
    """A study recipe. ``skip: auto`` is ambient preconditioning for the ambient objective and EDM's for
    clean and naive training (each objective's right choice, see docs/training.md)."""
    return validate_recipe({
        "name": name,
        "data": {"kind": "synthetic", "challenge": pr.challenge, "anatomy": anatomy, "volumes": 1,
                 "heldout_volumes": 0, "slices": pr.slices, "matrix": list(pr.matrix), "coils": max(pr.coils, 1),
                 "crop": list(pr.crop), "seed": 0},
        "corruption": corruption,
        "model": {**pr.model, "skip": skip},
        "training": {"objective": objective, "steps": steps, "batch_size": pr.batch, "lr": pr.lr,
                     "warmup_steps": min(50, max(steps // 10, 1)), "ema_halflife_images": pr.ema_images,
                     "log_every": max(1, min(100, steps)), "checkpoint_every": max(steps, 1), "eval_every": 0,
                     "device": device, "store": str(store),
                     **({"init_from": str(init_from)} if init_from is not None else {})},
    }, f"study:{name}")


# ----------------------------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------------------------
class Study:
    """The study's stages, all through one :class:`~ambientmri.workflows.stages.StageCache` over OUT:
    cohorts (``raw/``), stores (``stores/``), runs (``runs/``, resumable), samples, audits and
    reconstructions, and the metric values (``cache/``), each fingerprinted by its inputs and the
    fingerprints of the stages it reads (parallel ``--jobs`` wait for each other's stages)."""

    def __init__(self, pr: Profile, out: Path, device: str, steps_scale: float = 1.0,
                 only_settings: list[str] | None = None, time_budget: float | None = None,
                 ambient_overrides: list[str] | None = None, models: tuple[str, ...] = MODELS) -> None:
        self.pr, self.out, self.device = pr, out, device
        #: ``key.sub=value`` recipe overrides for every ambient-objective model (a training variant)
        self.ambient_overrides = list(ambient_overrides or [])
        #: the q1/q2 models to train and score (the others' rows are left out)
        self.models = tuple(models)
        self.only_settings = only_settings
        self.deadline = time.perf_counter() + time_budget if time_budget else None
        self.scale = steps_scale
        self.results: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.cache = StageCache(out, log=lambda line: print(line, flush=True))
        self.fp: dict[str, str] = {}  # stage output (path or run key) -> its fingerprint
        self._heldout_images: np.ndarray | None = None
        self._runs: dict[str, LoadedRun] = {}

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def _stage(self, key: str, folder: Path, inputs: dict[str, Any], work: Any) -> dict[str, Any]:
        record = self.cache.run(key, folder, inputs, work)
        self.fp[str(folder)] = record["fingerprint"]
        return record

    # -- data ---------------------------------------------------------------------------------
    def steps(self, n: int) -> int:
        return max(1, round(n * self.scale))

    def cohort(self, name: str, *, subjects: int, split: str = "train", anatomy: str = "brain", seed: int = 0
               ) -> Path:
        pr, path = self.pr, self.out / "raw" / name
        inputs = {"challenge": pr.challenge, "subjects": subjects, "slices": pr.slices, "matrix": list(pr.matrix),
                  "coils": max(pr.coils, 1), "anatomy": anatomy, "split": split, "seed": seed}

        def work(tmp: Path) -> dict[str, Any]:
            synth_cohort(tmp, challenge=pr.challenge, volumes=subjects, slices=pr.slices, matrix=pr.matrix,
                         coils=max(pr.coils, 1), anatomy=anatomy, seed=seed, split=split)
            return {"files": len(list(tmp.glob("*.h5")))}

        self._stage(f"cohort {name}", path, inputs, work)
        return path

    def store(self, name: str, raw: Path, corruption: dict[str, Any], anatomy: str = "brain") -> Path:
        folder = self.out / "stores" / name
        rec = make_recipe(self.pr, "store", corruption, "ambient", steps=1, store=folder / "store", device="cpu",
                          anatomy=anatomy)
        tree = rec.model_dump(mode="json")
        inputs = {"raw": self.fp[str(raw)], **{k: tree[k] for k in ("data", "corruption", "prepare")}}

        def work(tmp: Path) -> dict[str, Any]:
            result = prepare_store(raw, tmp / "store", rec, source_kind="fastmri")
            return {"slices": result.slices}

        self._stage(f"store {name}", folder, inputs, work)
        self.fp[str(folder / "store")] = self.fp[str(folder)]
        return folder / "store"

    def heldout_images(self) -> np.ndarray:
        if self._heldout_images is None:
            imgs = np.abs(load_scan_set(self.cohort("brain_heldout", subjects=self.pr.heldout_subjects,
                                                    split="val")).images)
            self._heldout_images = center_crop(imgs, self.pr.crop).astype(np.float32)
        return self._heldout_images

    # -- models ---------------------------------------------------------------------------------
    def trained(self, key: str) -> bool:
        """Whether run ``key`` finished (in this or an earlier invocation)."""
        return (self.out / "runs" / key / STAGE_FILE).is_file()

    def train(self, key: str, recipe: Recipe) -> LoadedRun:
        run_dir = self.out / "runs" / key
        if self.ambient_overrides and recipe.training.objective == "ambient":
            recipe = validate_recipe(apply_overrides(recipe.model_dump(mode="json"), self.ambient_overrides), key)
        tree = recipe.model_dump(mode="json")
        training = {k: v for k, v in tree["training"].items() if k not in ("store", "heldout_store", "device",
                                                                            "num_workers", "init_from")}
        init = recipe.training.init_from
        inputs = {"store": self.fp[str(recipe.training.store)], "model": tree["model"], "training": training,
                  "corruption": tree["corruption"], "init_from": self.fp[str(init)] if init else None}

        def work(partial: Path, resume: bool) -> dict[str, Any]:
            train_run(recipe, partial, resume=resume)
            return {"steps": recipe.training.steps}

        record = self.cache.resumable(f"train {key}", run_dir, inputs, work,
                                      can_resume=lambda p: (p / "checkpoints" / "last.pt").is_file(),
                                      describe=lambda result: f"{result['steps']} steps")
        if not self.cache.stages[f"train {key}"]["reused"]:
            print(f"  trained {key}: {record['result']['steps']} steps in {record['seconds']:.0f} s", flush=True)
        self.fp[key] = self.fp[str(run_dir)] = record["fingerprint"]
        self.timings[key] = record["seconds"]
        if key not in self._runs:
            self._runs[key] = load_run(run_dir, device=self.device)
        return self._runs[key]

    def samples_path(self, key: str) -> Path:
        return self.out / "samples" / key / "samples.npy"

    def samples(self, key: str, run: LoadedRun) -> np.ndarray:
        pr = self.pr
        inputs = {"run": self.fp[key], "num": pr.samples, "steps": pr.sample_steps, "seed": 0}

        def work(tmp: Path) -> dict[str, Any]:
            x = generate(run, pr.samples, steps=pr.sample_steps, seed=0, batch_size=64, device=self.device)
            save_npy_atomic(tmp / "samples.npy", x.numpy())
            return {"num": pr.samples}

        self._stage(f"samples {key}", self.samples_path(key).parent, inputs, work)
        self.fp[f"samples {key}"] = self.fp[str(self.samples_path(key).parent)]
        return np.load(self.samples_path(key))

    def sample_metrics(self, key: str, run: LoadedRun, store: Path | None = None) -> dict[str, Any]:
        gen = self.samples(key, run)

        def compute() -> dict[str, Any]:
            mag = np.abs(gen)
            rep = sampleset_report(mag, self.heldout_images(), seed=0)
            return {"swd": rep["swd"]["mean"], "spectrum": rep["radial_spectrum"]["distance"],
                    "zero_pixels": rep["zero_pixels"]["generated"],
                    "energy_ratio": _energy_ratio(mag, self.heldout_images(), store) if store else None}
        inputs = {"samples": self.fp[f"samples {key}"], "heldout": self._heldout_fp(),
                  "store": self.fp[str(store)] if store else None}
        return self.cache.value(f"samplemetrics_{key}", inputs, compute)

    def _heldout_fp(self) -> str:
        self.cohort("brain_heldout", subjects=self.pr.heldout_subjects, split="val")
        return self.fp[str(self.out / "raw" / "brain_heldout")]

    def denoising(self, key: str, run: LoadedRun, heldout_store: Path) -> dict[str, float]:
        def compute() -> dict[str, float]:
            st = CorruptedStore(heldout_store)
            ev = HeldoutEvaluator(st, self.pr.eval_sigmas, len(st), run.objective, torch.device(self.device))
            res = ev(run.model, run.image_shape)
            st.close()
            return res
        inputs = {"run": self.fp[key], "store": self.fp[str(heldout_store)], "sigmas": list(self.pr.eval_sigmas)}
        return self.cache.value(f"denoise_{key}_{heldout_store.parent.name}", inputs, compute)

    def audit(self, key: str, run: LoadedRun, train_raw: Path) -> dict[str, Any]:
        self.samples(key, run)
        heldout = self.cohort("brain_heldout", subjects=self.pr.heldout_subjects, split="val")
        inputs = {"samples": self.fp[f"samples {key}"], "train": self.fp[str(train_raw)],
                  "heldout": self.fp[str(heldout)], "controls": False}
        record = self._stage(f"audit {key}", self.out / "audits" / key, inputs, lambda tmp: _audit_numbers(
            run_audit(self.samples_path(key), train_raw, heldout, tmp, controls=False)))
        return record["result"]

    # -- questions --------------------------------------------------------------------------------
    def oracle(self) -> LoadedRun:
        pr = self.pr
        train = self.cohort("brain_train", subjects=pr.train_subjects)
        setting = q1_settings(pr)[f"kspace R={pr.kspace_r[0]}"]
        store = self.store(f"q1_kspace R={pr.kspace_r[0]}", train, setting)
        return self.train("oracle", make_recipe(pr, "oracle", setting, "clean", steps=self.steps(pr.steps),
                                                store=store, device=self.device))

    def q1(self) -> dict[str, Any]:
        pr = self.pr
        every = q1_settings(pr)
        names = list(every) if self.only_settings is None else [k for k in self.only_settings if k in every]
        settings = {k: every[k] for k in names}  # in the order given (a second worker can start from the end)
        train = self.cohort("brain_train", subjects=pr.train_subjects)
        heldout = self.cohort("brain_heldout", subjects=pr.heldout_subjects, split="val")
        oracle = self.oracle() if "oracle" in self.models else None
        real = self.cache.value("realmetrics", {"train": self.fp[str(train)], "heldout": self._heldout_fp(),
                                           "samples": pr.samples, "crop": list(pr.crop)},
                           lambda: _real_metrics(train, self.heldout_images(), pr))
        rows: dict[str, Any] = {"real scans (floor)": {"": real}}
        for name, setting in settings.items():
            if self.out_of_time():
                print(f"[q1] {name}: skipped, --time-budget spent", flush=True)
                continue
            print(f"[q1] {name}", flush=True)
            store = self.store(f"q1_{name}", train, setting)
            hstore = self.store(f"heldout_{name}", heldout, setting)
            row: dict[str, Any] = {}
            for objective in (m for m in ("ambient", "naive") if m in self.models):
                key = f"{objective}_{_tag(name)}"
                run = self.train(key, make_recipe(pr, key, setting, objective, steps=self.steps(pr.steps),
                                                  store=store, device=self.device))
                row[objective] = {**self.sample_metrics(key, run, store), **self.denoising(key, run, hstore)}
            if oracle is not None:
                om = self.sample_metrics("oracle", oracle)
                om = {**om, "energy_ratio": _energy_ratio(self.samples("oracle", oracle), self.heldout_images(),
                                                          store)}
                row["oracle"] = {**om, **self.denoising("oracle", oracle, hstore)}
            rows[name] = row
        self.results["q1"] = rows
        return rows

    def q2(self) -> dict[str, Any]:
        pr = self.pr
        heldout = self.cohort("recon_heldout", subjects=pr.recon_subjects, split="val")
        oracle = self.oracle() if "oracle" in self.models else None
        table: dict[str, Any] = {}
        for name in q2_settings(pr):
            if self.only_settings is not None and name not in self.only_settings:
                continue
            if self.out_of_time() and not self.trained(f"ambient_{_tag(name)}"):
                print(f"[q2] {name}: skipped, --time-budget spent", flush=True)
                continue
            setting = q1_settings(pr)[name]
            train = self.cohort("brain_train", subjects=pr.train_subjects)
            store = self.store(f"q1_{name}", train, setting)
            ambient = self.train(f"ambient_{_tag(name)}", make_recipe(
                pr, f"ambient_{_tag(name)}", setting, "ambient", steps=self.steps(pr.steps), store=store,
                device=self.device))
            clean = None if oracle is None else with_corruption_of(oracle, ambient)
            rows: dict[str, Any] = {}
            for label, method, options in _methods(setting, pr):
                if method in ("dps", "ddrm") and clean is None:
                    continue
                run = clean if method in ("dps", "ddrm") else ambient

                def work(tmp: Path, method: str = method, options: dict = options, run: LoadedRun = run
                         ) -> dict[str, Any]:
                    pred = tmp / "reconstructions"
                    summary = reconstruct(heldout, pred, method, run=run, options={"seed": 0, **options},
                                          device=self.device, nifti=False)
                    m = evaluate_folders(heldout, pred)["mean"]
                    return {**{k: float(v) for k, v in m.items()}, "nfe": summary["nfe_per_slice"],
                            "seconds_per_slice": summary["seconds_per_slice"]}
                upstream = ("oracle" if method in ("dps", "ddrm") else f"ambient_{_tag(name)}")
                inputs = {"run": self.fp[upstream], "heldout": self.fp[str(heldout)], "method": method,
                          "options": options, "corruption": setting}
                rows[label] = self._stage(f"recon {name} {label}", self.out / "recon" / _tag(name) / _tag(label),
                                          inputs, work)["result"]
                r = rows[label]
                print(f"[q2] {name:14s} {label:26s} PSNR {r['psnr']:6.2f} SSIM {r['ssim']:.4f} NMSE {r['nmse']:.4f} "
                      f"NFE {r['nfe']:4d} {r['seconds_per_slice']:.3f} s/slice", flush=True)
            table[name] = rows
        self.results["q2"] = table
        return table

    def q3(self) -> dict[str, Any]:
        pr = self.pr
        setting = pixel_setting(0.6) if 0.6 in pr.pixel_p else pixel_setting(pr.pixel_p[0])
        rows: dict[str, Any] = {}
        for subjects in pr.sizes:
            print(f"[q3] {subjects * pr.slices} training slices", flush=True)
            raw = self.cohort(f"brain_train_{subjects}", subjects=subjects)
            store = self.store(f"q3_{subjects}", raw, setting)
            row = {}
            for objective in ("ambient", "clean"):
                key = f"mem_{objective}_{subjects}"
                run = self.train(key, make_recipe(pr, key, setting, objective, steps=self.steps(pr.mem_steps),
                                                  store=store, device=self.device))
                row[objective] = {**self.audit(key, run, raw), "swd": self.sample_metrics(key, run)["swd"]}
            rows[str(subjects * pr.slices)] = row
        subjects, steps = pr.mem_long  # the regime where clean diffusion models are known to copy: few scans, long
        label = f"{subjects * pr.slices} (x{steps * pr.batch // (subjects * pr.slices)} epochs)"
        print(f"[q3] {label}", flush=True)
        raw = self.cohort(f"brain_train_{subjects}", subjects=subjects)
        store = self.store(f"q3_{subjects}", raw, setting)
        row = {}
        for objective in ("ambient", "clean"):
            key = f"mem_{objective}_{subjects}_long"
            run = self.train(key, make_recipe(pr, key, setting, objective, steps=self.steps(steps), store=store,
                                              device=self.device))
            row[objective] = {**self.audit(key, run, raw), "swd": self.sample_metrics(key, run)["swd"]}
        rows[label] = row
        self.results["q3"] = {"corruption": setting, "rows": rows}
        return rows

    def q4(self) -> dict[str, Any]:
        pr = self.pr
        train = self.cohort("brain_train", subjects=pr.train_subjects)
        heldout = self.cohort("brain_heldout", subjects=pr.heldout_subjects, split="val")
        rows: dict[str, Any] = {}
        for name, (family, delta, setting) in q4_settings(pr).items():
            print(f"[q4] {name}", flush=True)
            store = self.store(f"q1_{name}", train, setting)
            hstore = self.store(f"heldout_{family}", heldout, q1_settings(pr)[family])
            key = f"ambient_{_tag(name)}"
            run = self.train(key, make_recipe(pr, key, setting, "ambient", steps=self.steps(pr.steps), store=store,
                                              device=self.device))
            # scored on the family's held-out store with its own (δ = default) Ã: the same inputs for every δ
            rows[name] = {"family": family, "delta": delta, **self.sample_metrics(key, run, store),
                          **self.denoising(key, run, hstore)}
        self.results["q4"] = rows
        return rows

    def q5(self) -> dict[str, Any]:
        pr = self.pr
        setting = pixel_setting(0.6) if 0.6 in pr.pixel_p else pixel_setting(pr.pixel_p[0])
        knee = self.cohort("knee_train", subjects=pr.pretrain_subjects, anatomy="knee")
        knee_store = self.store("q5_knee", knee, setting, anatomy="knee")
        print("[q5] pretraining on clean knee scans", flush=True)
        self.train("knee_pretrained", make_recipe(pr, "knee_pretrained", setting, "clean", anatomy="knee",
                                                  steps=self.steps(pr.steps), store=knee_store, device=self.device))
        pretrained = self.out / "runs" / "knee_pretrained"
        small = self.cohort(f"brain_train_{pr.finetune_subjects}", subjects=pr.finetune_subjects)
        store = self.store(f"q5_brain_{pr.finetune_subjects}", small, setting)
        heldout = self.cohort("brain_heldout", subjects=pr.heldout_subjects, split="val")
        hstore = self.store("heldout_q5", heldout, setting)
        rows: dict[str, Any] = {}
        variants = [("knee model, no finetuning", "knee_pretrained", None, None),
                    ("ambient finetune (corrupted brain)", "ft_ambient", "ambient", pretrained),
                    ("ambient finetune, ambient skip", "ft_ambient_askip", "ambient", pretrained),
                    ("clean finetune (clean brain)", "ft_clean", "clean", pretrained),
                    ("ambient from scratch", "scratch_ambient", "ambient", None),
                    ("clean from scratch", "scratch_clean", "clean", None)]
        for label, key, objective, init in variants:
            print(f"[q5] {label}", flush=True)
            if objective is None:
                run = self.train(key, make_recipe(pr, key, setting, "clean", anatomy="knee",
                                                  steps=self.steps(pr.steps), store=knee_store, device=self.device))
            else:
                # a finetune keeps the pretrained network's preconditioning (EDM's), except the "ambient skip" variant,
                # which switches to c_out = σ_d (the same weights then compute another function at small σ)
                skip = "auto" if init is None or key.endswith("_askip") else "edm"
                run = self.train(key, make_recipe(pr, key, setting, objective, steps=self.steps(pr.finetune_steps),
                                                  store=store, device=self.device, init_from=init, skip=skip))
            rows[label] = {**self.sample_metrics(key, run), **self.audit(key, run, small),
                           **self.denoising(key, run, hstore)}
        self.results["q5"] = {"corruption": setting, "finetune_slices": pr.finetune_subjects * pr.slices,
                              "rows": rows}
        return rows


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def with_corruption_of(oracle: LoadedRun, ambient: LoadedRun) -> LoadedRun:
    """The clean oracle undersampling with ``ambient``'s mask: the same weights, that setting's corruption."""
    recipe = oracle.recipe.model_copy(update={"corruption": ambient.recipe.corruption})
    return dataclasses.replace(oracle, recipe=recipe)


def _tag(name: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in name).strip("_")


def _methods(setting: dict[str, Any], pr: Profile) -> list[tuple[str, str, dict[str, Any]]]:
    rows = [("zero-filled", "zero-filled", {})]
    if setting["kind"] == "cartesian":
        rows.append(("L1-wavelet", "l1-wavelet", {}))
    rows += [("DPS (oracle model)", "dps", {"steps": pr.dps_steps}),
             ("DDRM (oracle model)", "ddrm", {"steps": 20}),
             ("A-OS (ambient)", "a-os", {"sigma": 0.1}),
             ("A-DPS (ambient)", "a-dps", {"steps": pr.adps_steps})]
    return rows


def _audit_numbers(summary: dict[str, Any]) -> dict[str, Any]:
    """The audit's headline numbers: flagged fraction, its CI, the test against held-out, the medians."""
    space = summary.get("spaces", {}).get(summary.get("space"), {})
    return {"verdict": summary.get("verdict"), "memorized_fraction": summary.get("memorized_fraction"),
            "ci95": summary.get("ci95"),
            "p_value": summary.get("p_value"), "threshold": summary.get("threshold"),
            "generated_top1_median": space.get("generated_top1", {}).get("median"),
            "heldout_top1_median": space.get("heldout_top1", {}).get("median"),
            "relative_l2_below_1": summary.get("relative_l2", {}).get("below_1")}


def _real_metrics(train_raw: Path, heldout: np.ndarray, pr: Profile) -> dict[str, Any]:
    """The floor: a set of real training scans (as many as the samples) scored like generated ones."""
    imgs = center_crop(np.abs(load_scan_set(train_raw).images), pr.crop).astype(np.float32)
    idx = np.random.default_rng(0).choice(len(imgs), size=min(pr.samples, len(imgs)), replace=False)
    rep = sampleset_report(imgs[np.sort(idx)], heldout, seed=0)
    return {"swd": rep["swd"]["mean"], "spectrum": rep["radial_spectrum"]["distance"],
            "zero_pixels": rep["zero_pixels"]["generated"], "energy_ratio": None}


def _energy_ratio(samples: np.ndarray, heldout: np.ndarray, store: Path) -> float | None:
    """Generated / held-out energy where ``store``'s masks rarely sample k-space (compare-samples' check);
    None for an image-domain store."""
    st = CorruptedStore(store)
    try:
        if st.corruption.domain != "kspace":
            return None
        frequency = st.mask_frequency()
    finally:
        st.close()
    reference = float(unmeasured_energy_fraction(heldout, frequency).mean())
    ratio = float(unmeasured_energy_fraction(samples, frequency).mean()) / reference if reference > 0 else math.nan
    return ratio if math.isfinite(ratio) else None


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 else f"{v:.{digits}f}"
    return str(v)


def render_markdown(results: dict[str, Any], pr: Profile) -> str:
    meta = results["meta"]
    lines = [f"Profile `{pr.name}`: {pr.note}. Device: {meta['device']}; {meta['torch_threads']} thread(s) per "
             f"process; {meta['elapsed_minutes_since_start']:.0f} min from the study's start to these tables.", ""]
    if meta.get("ambient_overrides"):
        lines += ["Ambient models trained with " + ", ".join(f"`{o}`" for o in meta["ambient_overrides"]) + ".", ""]
    s = pr.eval_sigmas
    if "q1" in results:
        lines += ["### Q1: distribution learning (oracle vs naive vs ambient)", "",
                  f"{pr.samples} samples per model vs {4 * pr.heldout_subjects} held-out clean slices. SWD: patch "
                  "sliced Wasserstein distance (lower is better); spectrum: radial log-power distance; zero px: "
                  "fraction of pixels at zero; energy: generated/real energy where training masks rarely sample "
                  f"k-space (1 is right); NMSE@σ: held-out denoising error of the model's estimate of x0 at σ = "
                  f"{', '.join(f'{x:g}' for x in s)}.", "",
                  "| setting | model | SWD | spectrum | zero px | energy | " + " | ".join(f"NMSE@{x:g}" for x in s)
                  + " |", "|---|---|---|---|---|---|" + "---|" * len(s)]
        for name, row in results["q1"].items():
            for model in ("oracle", "ambient", "naive", ""):
                if model not in row:
                    continue
                r = row[model]
                lines.append(f"| {name} | {model or 'real'} | {_fmt(r['swd'])} | {_fmt(r['spectrum'])} | "
                             f"{_fmt(r['zero_pixels'], 3)} | {_fmt(r.get('energy_ratio'), 3)} | "
                             + " | ".join(_fmt(r.get(f'heldout_nmse@{x:g}')) for x in s) + " |")
        lines.append("")
    if "q2" in results:
        lines += ["### Q2: restoration", "", f"{4 * pr.recon_subjects} held-out slices per setting; fastMRI metrics "
                  "(per volume, then mean).", "", "| setting | method | PSNR (dB) | SSIM | NMSE | NFE | s/slice |",
                  "|---|---|---|---|---|---|---|"]
        for name, rows in results["q2"].items():
            for label, r in rows.items():
                lines.append(f"| {name} | {label} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['nmse']:.4f} | {r['nfe']} "
                             f"| {r['seconds_per_slice']:.3f} |")
        lines.append("")
    if "q3" in results:
        c = results["q3"]["corruption"]
        lines += ["### Q3: memorization vs training-set size", "",
                  f"Ambient models train on pixel inpainting p = {c['p']:g}; clean models on the clean scans; "
                  f"{pr.samples} samples each, audited against the training slices with the threshold at the 99th "
                  "percentile of held-out subjects' similarity.", "",
                  "| training slices | model | memorized fraction | 95% CI | Mann-Whitney p | SWD |",
                  "|---|---|---|---|---|---|"]
        for n, row in results["q3"]["rows"].items():
            for model, r in row.items():
                lines.append(f"| {n} | {model} | {_fmt(r['memorized_fraction'], 3)} | {_fmt(r['ci95'])} | "
                             f"{_fmt(r['p_value'], 3)} | {_fmt(r['swd'])} |")
        lines.append("")
    if "q4" in results:
        lines += ["### Q4: the effect of δ", "", "δ: probability that Ã drops a pixel A kept (pixels), or the fraction "
                  "of A's lines Ã removes on average, 1 − R/R̃ (k-space). NMSE on the family's held-out store.", "",
                  "| setting | δ | SWD | zero px | energy | " + " | ".join(f"NMSE@{x:g}" for x in s) + " |",
                  "|---|---|---|---|---|" + "---|" * len(s)]
        for name, r in results["q4"].items():
            lines.append(f"| {name} | {r['delta']:.2f} | {_fmt(r['swd'])} | {_fmt(r['zero_pixels'], 3)} | "
                         f"{_fmt(r.get('energy_ratio'), 3)} | "
                         + " | ".join(_fmt(r.get(f'heldout_nmse@{x:g}')) for x in s) + " |")
        lines.append("")
    if "q5" in results:
        q = results["q5"]
        lines += ["### Q5: finetuning a knee model on a small brain cohort", "",
                  f"{q['finetune_slices']} brain training slices (pixel inpainting p = {q['corruption']['p']:g} for "
                  "the ambient runs); SWD against held-out brain scans; memorized fraction against the brain "
                  "training slices.", "", "| model | SWD | memorized fraction | 95% CI | Mann-Whitney p | "
                  + " | ".join(f"NMSE@{x:g}" for x in s) + " |", "|---|---|---|---|---|" + "---|" * len(s)]
        for label, r in q["rows"].items():
            lines.append(f"| {label} | {_fmt(r['swd'])} | {_fmt(r['memorized_fraction'], 3)} | {_fmt(r['ci95'])} | "
                         f"{_fmt(r['p_value'], 3)} | " + " | ".join(_fmt(r.get(f'heldout_nmse@{x:g}')) for x in s)
                         + " |")
        lines.append("")
    lines += ["Training seconds per model: " + ", ".join(f"{k} {v:.0f}" for k, v in results["meta"]["train_seconds"]
                                                           .items()), ""]
    return "\n".join(lines)


def make_figures(study: Study, results: dict[str, Any], figdir: Path) -> list[Path]:
    figdir.mkdir(parents=True, exist_ok=True)
    pr = study.pr
    written = []
    if "q1" in results:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        real = results["q1"]["real scans (floor)"][""]["swd"]
        for ax, fam, xs, fmt in ((axes[0], "kspace R=", pr.kspace_r, "{}"), (axes[1], "pixels p=", pr.pixel_p, "{:g}")):
            pairs = [(x, fam + fmt.format(x)) for x in xs if fam + fmt.format(x) in results["q1"]]
            xs, names = [p[0] for p in pairs], [p[1] for p in pairs]
            for model, style in (("oracle", "k--"), ("ambient", "o-"), ("naive", "s-")):
                if all(model in results["q1"][n] for n in names):
                    ax.plot(xs, [results["q1"][n][model]["swd"] for n in names], style, label=model)
            ax.axhline(real, color="0.6", lw=1, ls=":", label="real scans")
            ax.set_xlabel(fam.rstrip("=")), ax.set_ylabel("SWD to held-out (lower is better)")
            ax.set_yscale("log")
        axes[0].legend()
        fig.suptitle("Q1: samples vs held-out clean scans")
        fig.tight_layout()
        written.append(_save(fig, figdir / "study_q1_swd.png"))
        # sample grid: rows = models, 8 samples each
        keys = [("oracle", "oracle")] if "oracle" in study.models else []
        for name in ("kspace R=4", "pixels p=0.8", "block 40%"):
            if name in results["q1"]:
                keys += [(f"{m} {name}", f"{m}_{_tag(name)}") for m in ("ambient", "naive") if m in study.models]
        written.append(_grid_figure(study, keys, figdir / "study_q1_samples.png"))
    if "q2" in results:
        settings = list(results["q2"])
        methods = sorted({m for rows in results["q2"].values() for m in rows}, key=lambda m: (m != "zero-filled", m))
        fig, ax = plt.subplots(figsize=(10, 3.6))
        width = 0.8 / len(methods)
        for i, m in enumerate(methods):
            ax.bar([j + i * width for j in range(len(settings))],
                   [results["q2"][s].get(m, {}).get("psnr", np.nan) for s in settings], width, label=m)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(settings))], settings)
        ax.set_ylabel("PSNR (dB)")
        ax.legend(fontsize=7, ncol=3)
        ax.set_title("Q2: restoration of held-out scans")
        fig.tight_layout()
        written.append(_save(fig, figdir / "study_q2_psnr.png"))
    if "q3" in results:
        rows = results["q3"]["rows"]
        ns = [int(n) for n in rows if n.isdigit()]
        long = [n for n in rows if not n.isdigit()]
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for model, style, color in (("clean", "s-", "C1"), ("ambient", "o-", "C0")):
            ax.plot(ns, [rows[str(n)][model]["memorized_fraction"] for n in ns], style, color=color,
                    label=f"{model}-trained, {results['meta']['profile']['mem_steps']} steps")
            for n in long:
                ax.plot([int(n.split()[0])], [rows[n][model]["memorized_fraction"]], "*", ms=12, color=color,
                        label=f"{model}-trained, {n.split(' ', 1)[1].strip('()')}")
        ax.set_xscale("log"), ax.set_xlabel("training slices"), ax.set_ylabel("memorized fraction")
        ax.set_ylim(-0.02, 1.02)
        ax.legend()
        ax.set_title("Q3: memorization vs training-set size")
        fig.tight_layout()
        written.append(_save(fig, figdir / "study_q3_memorization.png"))
    if "q4" in results:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        sig = f"heldout_nmse@{pr.eval_sigmas[0]:g}"
        for fam in sorted({r["family"] for r in results["q4"].values()}):
            pts = sorted((r["delta"], r[sig], r["swd"]) for r in results["q4"].values() if r["family"] == fam)
            axes[0].plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=fam)
            axes[1].plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=fam)
        axes[0].set_ylabel(f"held-out NMSE at σ = {pr.eval_sigmas[0]:g}"), axes[1].set_ylabel("SWD")
        for ax in axes:
            ax.set_xlabel("δ"), ax.set_yscale("log")
        axes[0].legend()
        fig.suptitle("Q4: the further corruption δ (δ = 0: Ã = A)")
        fig.tight_layout()
        written.append(_save(fig, figdir / "study_q4_delta.png"))
    if "q5" in results:
        rows = results["q5"]["rows"]
        labels = list(rows)
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        axes[0].barh(labels, [rows[k]["swd"] for k in labels])
        axes[0].set_xlabel("SWD to held-out brain (lower is better)")
        axes[1].barh(labels, [rows[k]["memorized_fraction"] or 0 for k in labels])
        axes[1].set_xlabel("memorized fraction"), axes[1].set_yticks([]), axes[1].set_xlim(0, 1)
        fig.suptitle("Q5: finetuning on a small brain cohort")
        fig.tight_layout()
        written.append(_save(fig, figdir / "study_q5_finetune.png"))
    return written


def _grid_figure(study: Study, keys: list[tuple[str, str]], path: Path) -> Path:
    fig, axes = plt.subplots(len(keys), 8, figsize=(8, len(keys) * 1.05), squeeze=False)
    for r, (label, key) in enumerate(keys):
        x = np.abs(np.load(study.samples_path(key)))
        for c in range(8):
            ax = axes[r, c]
            if c < len(x):
                ax.imshow(x[c], cmap="gray", vmin=0, vmax=np.percentile(x[c], 99.5) + 1e-12)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=list(PROFILES), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="default: study_PROFILE")
    parser.add_argument("--only", nargs="*", choices=QUESTIONS, default=list(QUESTIONS))
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every training budget")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--settings", nargs="*", default=None, help="q1/q2 settings to run (default: all)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds; q1/q2 settings not started by then are skipped (the tables say which)")
    parser.add_argument("--ambient-set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override for every ambient model, e.g. training.weighting=balanced "
                        "(repeatable; the papers' training when not given)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="the q1/q2 models to train (default all; q2's DPS and DDRM need the oracle)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes, each with cores/jobs threads (2 single-thread workers are faster on "
                        "2 cores than one two-thread process for these small models)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.jobs > 1:
        _run_jobs(args, argv if argv is not None else sys.argv[1:])
    device = resolve_device(args.device)
    pr = PROFILES[args.profile]
    out: Path = args.out or Path(f"study_{pr.name}")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "started.json").is_file():  # wall clock of the whole study, across resumes and workers
        write_json_atomic(out / "started.json", {"unix_time": time.time() - (time.perf_counter() - t0)})
    started = json.loads((out / "started.json").read_text())["unix_time"]
    study = Study(pr, out, device, args.steps_scale, args.settings, args.time_budget, args.ambient_set,
                  tuple(args.models))
    results: dict[str, Any] = {}
    for q in args.only:
        tq = time.perf_counter()
        results[q] = getattr(study, q)()
        print(f"[{q}] done in {(time.perf_counter() - tq) / 60:.1f} min", flush=True)
    results = dict(study.results)
    results["meta"] = {
        "profile": dataclasses.asdict(pr), "steps_scale": args.steps_scale, "device": device,
        "ambient_overrides": study.ambient_overrides, "models": list(study.models),
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(), "ambientmri": __version__, "torch": torch.__version__,
        "wall_minutes": (time.perf_counter() - t0) / 60, "train_seconds": study.timings,
        "command": "python benchmarks/study.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    results["meta"]["elapsed_minutes_since_start"] = (time.time() - started) / 60
    write_json_atomic(out / "results.json", results)
    figures = make_figures(study, results, out / "figures")
    md = render_markdown(results, pr)
    write_text_atomic(out / "results.md", md + "\n" + "\n".join(f"![{f.stem}](figures/{f.name})" for f in figures)
                      + "\n")
    print(md)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'} and {len(figures)} figures "
          f"({results['meta']['wall_minutes']:.1f} min)")
    return results


def _run_jobs(args: argparse.Namespace, argv: list[str]) -> None:
    """Split the questions over ``args.jobs`` worker processes (models shared between questions are trained
    once: the other worker waits for them), then let this process gather the cached results."""
    order = [q for q in ("q1", "q3", "q5", "q2", "q4") if q in args.only]
    parts: list[list[str]] = [[] for _ in range(args.jobs)]
    heads = {"q1": 0, "q2": 0, "q3": 1, "q5": 1, "q4": 1}
    for q in order:
        parts[heads[q] % args.jobs].append(q)
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    base = [a for i, a in enumerate(argv) if a != "--jobs" and (i == 0 or argv[i - 1] != "--jobs")]
    procs = []
    for k, qs in enumerate(p for p in parts if p):
        cmd = [sys.executable, __file__, *_drop_only(base), "--only", *qs]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        out = Path(args.out or f"study_{args.profile}")
        out.mkdir(parents=True, exist_ok=True)
        log = open(out / f"job{k}.log", "w")
        print(f"job {k}: {' '.join(qs)} ({threads} threads), log {log.name}", flush=True)
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    failed = 0
    for proc, log in procs:
        failed += proc.wait() != 0
        log.close()
    if failed:
        raise SystemExit(f"{failed} study job(s) failed; see job*.log in the output folder")


def _drop_only(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if a == "--only":
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        out.append(a)
    return out


if __name__ == "__main__":
    main()
