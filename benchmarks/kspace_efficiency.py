"""How fast ambient k-space training learns what the masks hide: an ablation at equal compute.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/kspace_efficiency.py --out keff [--cases c1 c2 ...] [--list]
    python benchmarks/kspace_efficiency.py --out keff --report      # merge finished cases into a table

Every case trains one model through ``train_run`` (what ``ambientmri train`` does) on a synthetic
cohort and scores it with the package's own code: held-out denoising NMSE at σ = 0.01 and 0.1 and its
ratio to the input's NMSE (``HeldoutEvaluator``), A-OS and A-DPS restoration of held-out undersampled
scans (``reconstruct`` + ``evaluate``, fastMRI metrics), and generated samples' SWD and
rarely-sampled energy ratio (``sampleset_report``). Baselines per setting: zero-filled, L1-wavelet,
DPS with a clean-trained model (the oracle, same steps), the naive model's samples.

Settings (``data``): ``sc32`` = the study's cpu profile (32 × 32 single-coil, 256 training slices),
``sc32-small`` = the same with 32 training slices, ``mc32`` / ``mc32-small`` = 32 × 32 4-coil SENSE
with 256 / 32 slices, ``demo`` = the demo recipe's data and network (64 × 64, 4 coils, 32 slices),
``demo-large`` = the same with 128 training slices.
Variants: ``base`` (Ã fixed per slice, equal weights: the papers' and 0.1.0's training), ``redraw``
(new Ã every step), ``bal`` (balanced weighting), ``bal+redraw``, ``bal+redraw+range`` (R̃ − R drawn
from [0.5, 3] for every Ã), ``bal+redraw+k2`` (2 Ã per sample at half the batch: equal compute).

Cases are cached under OUT (a rerun skips finished ones), so several single-thread processes can
split the list (``--cases``) and ``--report`` merges what is there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from study import PROFILES, Profile, Study, _tag, kspace_setting, make_recipe, pixel_setting, with_corruption_of

from ambientmri.evaluation.metrics import evaluate_folders
from ambientmri.recipes import validate_recipe
from ambientmri.sampling.reconstruct import reconstruct
from ambientmri.sampling.runs import load_run
from ambientmri.utils import write_json_atomic

_CPU = PROFILES["cpu"]
DATA: dict[str, Profile] = {
    "sc32": dataclasses.replace(_CPU, name="sc32", eval_sigmas=(0.01, 0.1)),
    "sc32-small": dataclasses.replace(_CPU, name="sc32-small", train_subjects=8, eval_sigmas=(0.01, 0.1)),
    # the data-size curve at a fixed budget: 32 (small), 64 (quarter), 128 (half) and 256 (sc32) slices
    "sc32-quarter": dataclasses.replace(_CPU, name="sc32-quarter", train_subjects=16, eval_sigmas=(0.01, 0.1)),
    "sc32-half": dataclasses.replace(_CPU, name="sc32-half", train_subjects=32, eval_sigmas=(0.01, 0.1)),
    "mc32": dataclasses.replace(_CPU, name="mc32", challenge="multicoil", coils=4, eval_sigmas=(0.01, 0.1)),
    "mc32-small": dataclasses.replace(_CPU, name="mc32-small", challenge="multicoil", coils=4, train_subjects=8,
                                      eval_sigmas=(0.01, 0.1)),
    # the demo recipe's data (8 training + 4 held-out subjects, 4 slices each) and network
    "demo": dataclasses.replace(_CPU, name="demo", challenge="multicoil", coils=4, matrix=(128, 64), crop=(64, 64),
                                ema_images=500, train_subjects=8, heldout_subjects=4, recon_subjects=4,
                                eval_sigmas=(0.01, 0.1)),
    # the demo with 4x the training subjects (128 slices): is the demo data-starved?
    "demo-large": dataclasses.replace(_CPU, name="demo-large", challenge="multicoil", coils=4, matrix=(128, 64),
                                      crop=(64, 64), ema_images=500, train_subjects=32, heldout_subjects=4,
                                      recon_subjects=4, eval_sigmas=(0.01, 0.1)),
    "smoke": dataclasses.replace(PROFILES["smoke"], eval_sigmas=(0.01, 0.1)),  # tests
}
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "redraw": {"further": {"redraw": "step"}},
    "bal": {"training": {"weighting": "balanced"}},
    "bal+redraw": {"training": {"weighting": "balanced"}, "further": {"redraw": "step"}},
    "bal+redraw+range": {"training": {"weighting": "balanced"},
                         "further": {"redraw": "step", "acceleration_increase": [0.5, 3.0]}},
    "bal+redraw+k2": {"training": {"weighting": "balanced"}, "further": {"redraw": "step", "draws": 2},
                      "batch_factor": 0.5},
    "bal+redraw+pmean": {"training": {"weighting": "balanced", "p_mean": -2.0}, "further": {"redraw": "step"}},
    "bal+redraw+range+pmean": {"training": {"weighting": "balanced", "p_mean": -2.0},
                               "further": {"redraw": "step", "acceleration_increase": [0.5, 3.0]}},
}


def case_name(data: str, code: str, variant: str, steps: int, seed: int) -> str:
    return f"{data}_{code}_{variant}_{steps}_s{seed}"


def parse_case(name: str) -> tuple[str, str, str, int, int]:
    """``DATA_CODE_VARIANT_STEPS_sSEED``; CODE is ``R4`` (Cartesian k-space, R = 4), ``V6`` (2-D
    variable-density Poisson-disc k-space, R = 6, as ``poisson_cs``) or ``P60`` (pixel inpainting,
    60% erased)."""
    data, code, variant, steps, seed = name.split("_")
    setting(code)  # validates
    return data, code, variant, int(steps), int(seed[1:])


def setting(code: str) -> dict[str, Any]:
    """The corruption of a setting code."""
    if code.startswith("R"):
        return kspace_setting(int(code[1:]))
    if code.startswith("P"):
        return pixel_setting(int(code[1:]) / 100)
    if code.startswith("V"):  # poisson_cs's corruption; its 16 × 16 box of 64 × 64 scaled to the 32 × 32 grid
        return {"kind": "kspace2d", "pattern": "poisson", "acceleration": float(code[1:]), "calib": [8, 8],
                "crop_corner": False, "further": {"acceleration_increase": 1.0}}
    raise ValueError(f"setting {code!r}: expected R<acceleration>, V<acceleration> or P<percent erased>")


#: the settings whose baselines include trained models (the clean oracle's DPS, the naive model's samples);
#: the others get zero-filled and L1-wavelet only (their question is ambient against ambient)
MODEL_BASELINES = ("sc32",)

#: the default list, most informative first (both processes of a 2-way split take turns from it)
DEFAULT_CASES = [
    "sc32_R4_base_1000_s0", "sc32_R4_bal+redraw_1000_s0", "sc32_R4_bal_1000_s0", "sc32_R4_redraw_1000_s0",
    "mc32_R4_base_1000_s0", "mc32_R4_bal+redraw_1000_s0",
    "sc32-small_R4_base_1000_s0", "sc32-small_R4_bal+redraw_1000_s0",
    "mc32-small_R4_base_1000_s0", "mc32-small_R4_bal+redraw_1000_s0",
    "sc32_R8_base_1000_s0", "sc32_R8_bal+redraw_1000_s0",
    "demo_R4_base_600_s0", "demo_R4_bal+redraw_600_s0",
    "sc32_R4_base_1000_s1", "sc32_R4_bal+redraw_1000_s1",
    "sc32_R4_bal+redraw+range_1000_s0", "sc32_R4_bal+redraw+k2_1000_s0", "sc32_R4_bal+redraw+pmean_1000_s0",
]


class Efficiency(Study):
    """The study's cohorts, stores, training cache and metrics, with per-variant recipes."""

    def recipe(self, key: str, code: str, variant: str, steps: int, seed: int, objective: str = "ambient"):
        pr = self.pr
        spec = VARIANTS[variant]
        further = {**spec.get("further", {})}
        # keys that change the stored Ã (not redraw/draws) need a store of their own
        stored = {k: v for k, v in further.items() if k not in ("redraw", "draws")}
        tree = make_recipe(pr, key, setting(code), objective, steps=steps,
                           store=self.store_path(code, stored), device=self.device).model_dump(mode="json")
        if "acceleration_increase" in further and tree["corruption"]["kind"] != "cartesian":
            raise ValueError(f"variant {variant!r} is for k-space settings only")
        tree["corruption"] = {**tree["corruption"], "further": {**tree["corruption"]["further"], **further}}
        tree["training"].update(spec.get("training", {}))
        tree["training"]["seed"] = seed
        tree["training"]["batch_size"] = max(1, round(pr.batch * spec.get("batch_factor", 1.0)))
        return validate_recipe(tree, key)

    def store_path(self, code: str, further: dict[str, Any] | None = None) -> Path:
        train = self.cohort(f"train_{self.pr.train_subjects}", subjects=self.pr.train_subjects)
        corruption = setting(code)
        name = f"train_{self.pr.train_subjects}_{code}"
        if further:
            corruption = {**corruption, "further": {**corruption.get("further", {}), **further}}
            name += "_" + _tag(json.dumps(further, sort_keys=True))
        return self.store(name, train, corruption)

    def heldout_store(self, code: str) -> Path:
        heldout = self.cohort("brain_heldout", subjects=self.pr.heldout_subjects, split="val")
        return self.store(f"heldout_{code}", heldout, setting(code))

    def recon(self, key: str, run: Any, method: str, options: dict[str, Any]) -> dict[str, float]:
        heldout = self.cohort("recon_heldout", subjects=self.pr.recon_subjects, split="val")

        def work(tmp: Path) -> dict[str, float]:
            pred = tmp / "reconstructions"
            summary = reconstruct(heldout, pred, method, run=run, options={"seed": 0, **options},
                                  device=self.device, nifti=False)
            m = evaluate_folders(heldout, pred)["mean"]
            return {**{k: float(v) for k, v in m.items()}, "seconds_per_slice": summary["seconds_per_slice"]}
        inputs = {"run": run.checkpoint_hash, "heldout": self.fp[str(heldout)], "method": method, "options": options,
                  "corruption": run.recipe.corruption.model_dump(mode="json")}
        return self._stage(f"recon {key} {method}", self.out / "recon" / _tag(key) / method, inputs, work)["result"]

    def case(self, name: str) -> dict[str, Any]:
        data, r, variant, steps, seed = parse_case(name)
        key = _tag(name)
        run = self.train(key, self.recipe(key, r, variant, steps, seed))
        row: dict[str, Any] = {"case": name, "data": data, "R": r, "variant": variant, "steps": steps, "seed": seed,
                               "train_seconds": self.timings.get(key)}
        row.update(self.denoising(key, run, self.heldout_store(r)))
        row["a-os"] = self.recon(key, run, "a-os", {"sigma": 0.1})
        row["a-dps"] = self.recon(key, run, "a-dps", {"steps": self.pr.adps_steps})
        row.update({f"sample_{k}": v for k, v in self.sample_metrics(key, run, self.store_path(r)).items()})
        return row

    def baselines(self, r: str, steps: int, models: bool) -> dict[str, Any]:
        """Zero-filled and L1-wavelet; with ``models`` also DPS with the clean oracle (same steps) and the
        oracle's and naive model's samples."""
        out: dict[str, Any] = {}
        key = _tag(case_name(self.pr.name, r, "base", steps, 0))
        amb = self.train(key, self.recipe(key, r, "base", steps, 0))
        out["zero-filled"] = self.recon(f"zf_{self.pr.name}_{r}", amb, "zero-filled", {})
        if r[0] in "RV":  # k-space only
            out["l1-wavelet"] = self.recon(f"l1_{self.pr.name}_{r}", amb, "l1-wavelet", {})
        if not models:
            return out
        oracle_key = f"oracle_{self.pr.name}_{steps}"
        oracle = self.train(oracle_key, self.recipe(oracle_key, r, "base", steps, 0, objective="clean"))
        clean = with_corruption_of(oracle, amb)
        out["dps-oracle"] = self.recon(f"dps_{self.pr.name}_{r}_{steps}", clean, "dps", {"steps": self.pr.dps_steps})
        out["oracle-denoise"] = self.denoising(oracle_key, oracle, self.heldout_store(r))
        out["oracle-samples"] = self.sample_metrics(oracle_key, oracle, self.store_path(r))
        naive_key = f"naive_{self.pr.name}_{r}_{steps}"
        naive = self.train(naive_key, self.recipe(naive_key, r, "base", steps, 0, objective="naive"))
        out["naive-samples"] = self.sample_metrics(naive_key, naive, self.store_path(r))
        return out


def _score(folder: Path, pred: Path, method: str, run: Any, options: dict[str, Any]) -> dict[str, float]:
    """Reconstruct ``folder`` into the scratch folder ``pred`` (removed again) and score it: fastMRI PSNR,
    SSIM and the seconds it took."""
    if pred.exists():
        shutil.rmtree(pred)
    t0 = time.perf_counter()
    reconstruct(folder, pred, method, run=run, options={"seed": 0, **options}, device="cpu", nifti=False,
                previews=False)
    m = evaluate_folders(folder, pred)["mean"]
    shutil.rmtree(pred)
    return {"psnr": float(m["psnr"]), "ssim": float(m["ssim"]), "seconds": time.perf_counter() - t0}


#: inference settings tuned on a validation cohort (other subjects than the reported held-out scans)
A_OS_SIGMAS = (0.02, 0.05, 0.1, 0.2, 0.4)
A_DPS_LSS = (0.3, 1.0, 3.0)


def sweep_case(out: Path, name: str, adps: bool) -> dict[str, Any]:
    """A-OS σ × mask channel (and A-DPS l_ss) chosen on validation scans, then scored on the held-out ones."""
    path = out / "sweeps" / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    st, key, run = _trained(out, name)
    val = st.out / "raw" / "validation"
    st.cohort("validation", subjects=st.pr.recon_subjects, split="val", seed=1)  # other subjects than recon_heldout

    def score(folder: Path, method: str, options: dict[str, Any], tag: str) -> float:
        return _score(folder, st.out / "sweep" / key / tag, method, run, options)["psnr"]

    grid = {(s, m): score(val, "a-os", {"sigma": s, "mask": m}, f"aos_{s}_{m}")
            for s in A_OS_SIGMAS for m in ("measured", "further")}
    (best_s, best_m) = max(grid, key=grid.get)
    row: dict[str, Any] = {"case": name, "a-os_validation": {f"{s}/{m}": v for (s, m), v in grid.items()},
                           "a-os_choice": {"sigma": best_s, "mask": best_m},
                           "a-os_test": st.recon(f"{key}_aos_{best_s}_{best_m}", run, "a-os",
                                                 {"sigma": best_s, "mask": best_m})}
    if adps:
        lss = {v: score(val, "a-dps", {"steps": st.pr.adps_steps, "l_ss": v}, f"adps_{v}") for v in A_DPS_LSS}
        best = max(lss, key=lss.get)
        row.update({"a-dps_validation": lss, "a-dps_choice": best,
                    "a-dps_test": st.recon(f"{key}_adps_{best}", run, "a-dps",
                                           {"steps": st.pr.adps_steps, "l_ss": best})})
    write_json_atomic(path, row)
    print(f"[keff] sweep {name}: A-OS σ={best_s} mask={best_m} -> {row['a-os_test']['psnr']:.2f} dB"
          + (f", A-DPS l_ss={row['a-dps_choice']} -> {row['a-dps_test']['psnr']:.2f} dB" if adps else ""),
          flush=True)
    return row


#: data-consistency steps of the posterior samplers, swept on validation scans (``--dc-sweep``): the papers'
#: fixed-length normalised step (``fixed``) and a fraction of the least-squares step (``relative``)
DC_GRID: dict[str, dict[str, tuple[float, ...]]] = {
    "dps": {"fixed": (0.3, 1.0, 3.0, 10.0), "relative": (0.3, 0.6, 1.0, 1.5)},
    "a-dps": {"fixed": (0.3, 1.0, 3.0), "relative": (0.3, 0.6, 1.0, 1.5)},
}
DC_OPTION = {"dps": "zeta", "a-dps": "l_ss"}


def dc_sweep(out: Path, name: str, grid: dict[str, dict[str, tuple[float, ...]]] | None = None,
             runs: tuple[Path, Path] | None = None, validation: bool = True) -> dict[str, Any]:
    """DPS (with the clean oracle of the case's data, same steps) and A-DPS (with the case's ambient model):
    every data-consistency step of ``grid`` scored on validation scans (other subjects), and the held-out
    scores of every setting, so that a default can be chosen on validation and checked on held-out scans.
    ``runs``: (ambient, oracle) run folders trained elsewhere (e.g. by the study) instead of training them;
    ``validation=False``: held-out scores only (checking on other data a choice made elsewhere)."""
    path = out / "dcsweeps" / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    grid = grid or DC_GRID
    data, r, _, steps, _ = parse_case(name)
    if runs is None:
        st, key, ambient = _trained(out, name)
        oracle_key = f"oracle_{st.pr.name}_{steps}"
        oracle = st.train(oracle_key, st.recipe(oracle_key, r, "base", steps, 0, objective="clean"))
    else:
        st, key = _study(out, data), _tag(name)
        ambient, oracle = (load_run(p, device="cpu") for p in runs)
    clean = with_corruption_of(oracle, ambient)
    val = st.out / "raw" / "validation"
    st.cohort("validation", subjects=st.pr.recon_subjects, split="val", seed=1)
    heldout = st.cohort("recon_heldout", subjects=st.pr.recon_subjects, split="val")

    def score(folder: Path, method: str, options: dict[str, Any]) -> dict[str, float]:
        pred = st.out / "dcsweep" / key / f"{folder.name}_{method}_{options['dc_step']}_{options[DC_OPTION[method]]}"
        return _score(folder, pred, method, clean if method == "dps" else ambient,
                      {"steps": st.pr.dps_steps, **options})

    row: dict[str, Any] = {"case": name, "data": data, "R": r, "steps": steps,
                           "zero-filled": st.recon(f"zf_{st.pr.name}_{r}", ambient, "zero-filled", {})}
    for method, modes in grid.items():
        for mode, values in modes.items():
            for v in values:
                options = {"dc_step": mode, DC_OPTION[method]: v}
                tag = f"{method}/{mode}/{v:g}"
                row[tag] = {"heldout": score(heldout, method, options)}
                if validation:
                    row[tag]["validation"] = score(val, method, options)
                print(f"[keff] dc {name} {tag}: validation "
                      f"{row[tag]['validation']['psnr'] if validation else float('nan'):.2f} dB, held-out "
                      f"{row[tag]['heldout']['psnr']:.2f} dB ({row[tag]['heldout']['seconds']:.0f} s)", flush=True)
    write_json_atomic(path, row)
    return row


def memorization_case(out: Path, name: str) -> dict[str, Any]:
    """Train a case (typically 32 slices for thousands of epochs) and audit its samples against its
    training scans, with the threshold calibrated on held-out subjects (the study's Q3 regime)."""
    path = out / "memorization" / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    st, key, run = _trained(out, name)
    steps = parse_case(name)[3]
    train_raw = st.cohort(f"train_{st.pr.train_subjects}", subjects=st.pr.train_subjects)
    row = {"case": name, "train_slices": st.pr.train_subjects * st.pr.slices,
           "epochs": steps * st.pr.batch // (st.pr.train_subjects * st.pr.slices),
           **st.audit(key, run, train_raw), "swd": st.sample_metrics(key, run)["swd"]}
    write_json_atomic(path, row)
    print(f"[keff] memorization {name}: {row['memorized_fraction']:.1%} flagged (95% CI {row['ci95']})", flush=True)
    return row


def _trained(out: Path, name: str) -> tuple[Efficiency, str, Any]:
    """The study of a case's data, the case's run key and its trained (or cached) run."""
    data, r, variant, steps, seed = parse_case(name)
    st = _study(out, data)
    key = _tag(name)
    return st, key, st.train(key, st.recipe(key, r, variant, steps, seed))


def _study(out: Path, data: str) -> Efficiency:
    return Efficiency(DATA[data], out / data, "cpu")


def run_cases(out: Path, cases: list[str], with_baselines: bool) -> None:
    for name in cases:
        data, r, _, steps, _ = parse_case(name)
        path = out / "cases" / f"{name}.json"
        if not path.is_file():
            t0 = time.perf_counter()
            row = _study(out, data).case(name)
            write_json_atomic(path, row)
            print(f"[keff] {name}: A-OS {row['a-os']['psnr']:.2f} dB / {row['a-os']['ssim']:.3f}, A-DPS "
                  f"{row['a-dps']['psnr']:.2f} dB, NMSE@0.01 {row['heldout_nmse@0.01']:.4f} "
                  f"(input {row['heldout_input_nmse@0.01']:.4f}), SWD {row['sample_swd']:.3f}, "
                  f"energy {_num(row['sample_energy_ratio'])} ({time.perf_counter() - t0:.0f} s)", flush=True)
        bpath = out / "baselines" / f"{data}_{r}_{steps}.json"
        if with_baselines and not bpath.is_file():
            write_json_atomic(bpath, _study(out, data).baselines(r, steps, models=data in MODEL_BASELINES))
            print(f"[keff] baselines {data} {r} {steps} steps done", flush=True)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def report(out: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted((out / "cases").glob("*.json"))]
    base = {p.stem: json.loads(p.read_text()) for p in sorted((out / "baselines").glob("*.json"))}
    lines = ["| data | setting | variant | seed | steps | NMSE@0.01 / input | NMSE@0.1 / input | A-OS PSNR / SSIM | "
             "A-DPS PSNR / SSIM | SWD | energy ratio | train s |", "|" + "---|" * 12]
    order = {v: i for i, v in enumerate(VARIANTS)}
    for r in rows:  # cases of earlier runs recorded R as an int
        r["R"] = r["R"] if isinstance(r["R"], str) else f"R{r['R']}"
    rows.sort(key=lambda r: (r["data"], r["R"], r["steps"], order.get(r["variant"], 99), r["seed"]))
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['R']} | {r['variant']} | {r['seed']} | {r['steps']} | "
            f"{r['heldout_nmse@0.01']:.4f} / {r['heldout_input_nmse@0.01']:.4f} | "
            f"{r['heldout_nmse@0.1']:.4f} / {r['heldout_input_nmse@0.1']:.4f} | "
            f"{r['a-os']['psnr']:.2f} / {r['a-os']['ssim']:.3f} | "
            f"{r['a-dps']['psnr']:.2f} / {r['a-dps']['ssim']:.3f} | "
            f"{r['sample_swd']:.3f} | {_num(r['sample_energy_ratio'])} | {r['train_seconds'] or float('nan'):.0f} |")
    lines += ["", "Baselines (same held-out scans):", "",
              "| data / setting / steps | zero-filled | L1-wavelet | DPS (clean oracle) | oracle NMSE@0.01 / 0.1 | "
              "oracle SWD / energy | naive SWD / energy |", "|---|---|---|---|---|---|---|"]
    for k, b in base.items():
        l1 = b.get("l1-wavelet")
        cells = [f"{b['zero-filled']['psnr']:.2f} / {b['zero-filled']['ssim']:.3f}",
                 f"{l1['psnr']:.2f} / {l1['ssim']:.3f}" if l1 else "n/a"]
        if "dps-oracle" in b:
            od = b["oracle-denoise"]
            if "_P" in k:  # image-domain masks: no rarely-sampled k-space (the oracle's samples are cached per model)
                b["oracle-samples"]["energy_ratio"] = b["naive-samples"]["energy_ratio"] = None
            cells += [f"{b['dps-oracle']['psnr']:.2f} / {b['dps-oracle']['ssim']:.3f}",
                      f"{od['heldout_nmse@0.01']:.4f} / {od['heldout_nmse@0.1']:.4f}",
                      f"{b['oracle-samples']['swd']:.3f} / {_num(b['oracle-samples']['energy_ratio'])}",
                      f"{b['naive-samples']['swd']:.3f} / {_num(b['naive-samples']['energy_ratio'])}"]
        else:
            cells += ["not run"] * 4
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    mem = [json.loads(p.read_text()) for p in sorted((out / "memorization").glob("*.json"))]
    if mem:
        lines += ["", "Memorization (samples audited against the training scans, τ at the 99th percentile of "
                  "held-out subjects):", "", "| case | training slices | epochs | memorized fraction | 95% CI | SWD |",
                  "|---|---|---|---|---|---|"]
        for m in mem:
            lo, hi = m["ci95"]
            lines.append(f"| {m['case']} | {m['train_slices']} | {m['epochs']} | {m['memorized_fraction']:.1%} | "
                         f"{lo:.1%}–{hi:.1%} | {m['swd']:.3f} |")
    sweeps = [json.loads(p.read_text()) for p in sorted((out / "sweeps").glob("*.json"))]
    if sweeps:
        lines += ["", "Inference settings chosen on validation scans (other subjects), scored on the held-out ones:",
                  "", "| case | A-OS σ / mask | A-OS PSNR / SSIM | A-DPS l_ss | A-DPS PSNR / SSIM |",
                  "|---|---|---|---|---|"]
        for w in sweeps:
            c = w["a-os_choice"]
            adps = (f"{w['a-dps_choice']:g} | {w['a-dps_test']['psnr']:.2f} / {w['a-dps_test']['ssim']:.3f}"
                    if "a-dps_test" in w else "not run | not run")
            lines.append(f"| {w['case']} | {c['sigma']:g} / {c['mask']} | {w['a-os_test']['psnr']:.2f} / "
                         f"{w['a-os_test']['ssim']:.3f} | {adps} |")
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("keff"))
    parser.add_argument("--cases", nargs="*", default=None, help="case names (default: the whole list)")
    parser.add_argument("--list", action="store_true", help="print the default case list")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--report", action="store_true", help="only merge finished cases into OUT/results.md")
    parser.add_argument("--sweep", action="store_true",
                        help="for finished cases: choose A-OS σ / mask channel (and with --adps A-DPS l_ss) on "
                        "validation scans and score the choice on the held-out ones")
    parser.add_argument("--adps", action="store_true", help="with --sweep: also sweep A-DPS's l_ss")
    parser.add_argument("--dc-sweep", action="store_true",
                        help="for the --cases: DPS (clean oracle) and A-DPS data-consistency steps, fixed and "
                        "relative, on validation and held-out scans")
    parser.add_argument("--ambient-run", type=Path, default=None, help="with --dc-sweep: a trained ambient run")
    parser.add_argument("--oracle-run", type=Path, default=None, help="with --dc-sweep: a trained clean run")
    parser.add_argument("--dc-values", nargs="*", default=None, metavar="METHOD:MODE:VALUE",
                        help="with --dc-sweep: the steps to score (default DC_GRID), e.g. a-dps:relative:1")
    parser.add_argument("--heldout-only", action="store_true", help="with --dc-sweep: no validation scores")
    parser.add_argument("--memorization", action="store_true",
                        help="train the --cases and audit their samples against their training scans")
    args = parser.parse_args()
    if args.list:
        print("\n".join(DEFAULT_CASES))
        return
    if args.memorization:
        for name in args.cases or []:
            memorization_case(args.out, name)
    elif args.dc_sweep:
        runs = (args.ambient_run, args.oracle_run) if args.ambient_run and args.oracle_run else None
        grid = None
        if args.dc_values:
            grid = {}
            for item in args.dc_values:  # METHOD:MODE:VALUE
                method, mode, value = item.split(":")
                grid.setdefault(method, {}).setdefault(mode, ())
                grid[method][mode] += (float(value),)
        for name in args.cases or []:
            dc_sweep(args.out, name, grid, runs=runs, validation=not args.heldout_only)
    elif args.sweep:
        for name in args.cases or [p.stem for p in sorted((args.out / "cases").glob("*.json"))]:
            sweep_case(args.out, name, args.adps)
    elif not args.report:
        run_cases(args.out, args.cases or DEFAULT_CASES, not args.no_baselines)
    print(report(args.out))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
