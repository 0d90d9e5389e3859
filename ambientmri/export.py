"""``ambientmri export``: one shareable model folder with its card, from a trained run.

Layout of a model folder::

    MODEL/weights.pt      the EMA weights only: a state_dict (``torch.load(weights_only=True)``)
    MODEL/recipe.yaml     the resolved recipe, without the exporting machine's paths
    MODEL/model.json      what the card says, as data (format ``ambientmri-model``)
    MODEL/MODEL_CARD.md   the card people read before they let the model leave the hospital

The card ties the weights to the evidence: the training data's provenance (from the store's
manifest: subject counts, pseudonyms, source formats, the corruption), the training budget, the
held-out metrics and the memorization audit, with the SHA-256 of the weights file, of the recipe and
of the audit's ``summary.json``. An audit is attached only if the samples it audited came from this
run's weights (their ``meta.json`` names the weights' fingerprint). Nothing in the folder names a
path of the exporting machine, a source file or a subject.

:func:`~ambientmri.sampling.runs.load_run` reads a model folder wherever it reads a run folder, so
``sample``, ``reconstruct`` and ``audit --run`` accept MODEL too.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import yaml

from ambientmri import __version__
from ambientmri.errors import InputError
from ambientmri.models.checkpoint import find_checkpoint, load_checkpoint, weights_fingerprint
from ambientmri.models.exported import (  # the model folder's reading side, re-exported here
    MODEL_FORMAT,
    RECIPE_FILE,
    WEIGHTS_FILE,
    exported_model_dir,
    exported_weights,
    read_json_object,
    sha256_file,
)
from ambientmri.outputs import check_output_dir, output_dir
from ambientmri.recipes import Recipe, dump_recipe, validate_recipe
from ambientmri.sampling.outputs import samples_checkpoint_hash
from ambientmri.sampling.runs import load_exported
from ambientmri.utils import write_json_atomic, write_text_atomic

__all__ = [
    "MODEL_FORMAT",
    "export_model",
    "exported_model_dir",
    "exported_weights",
    "load_exported",
    "samples_checkpoint_hash",
    "sha256_file",
]

MODEL_VERSION = 1
#: recipe keys that hold paths of the machine that trained the model (removed on export)
MACHINE_PATH_KEYS = (("data", "path"), ("training", "store"), ("training", "heldout_store"),
                     ("training", "init_from"))
_FORMATS = {"fastmri": "fastMRI HDF5", "nifti": "NIfTI", "dicom": "DICOM",
            "synthetic": "synthetic phantoms (written as fastMRI HDF5)"}
_PURPOSE = {
    "ambient": "a diffusion prior of clean {anatomy}MR images learned from corrupted (undersampled) scans "
               "only (Ambient Diffusion). It generates scans (`ambientmri sample`) and reconstructs "
               "undersampled scans with posterior samplers (`ambientmri reconstruct --method a-os|a-dps`).",
    "clean": "a diffusion prior of {anatomy}MR images trained on clean reference images (the oracle baseline). "
             "It generates scans and reconstructs undersampled scans (`--method dps|ddrm`).",
    "naive": "a diffusion prior trained on zero-filled images treated as clean (the naive baseline, for "
             "comparison only: its samples carry the undersampling artefacts).",
}


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------
# what goes on the card
# ----------------------------------------------------------------------------------------------
def _shareable_recipe(recipe: Recipe) -> tuple[Recipe, list[str]]:
    """The recipe without the keys that hold paths of this machine, and the keys removed."""
    tree = recipe.model_dump(mode="json")
    removed = []
    for section, key in MACHINE_PATH_KEYS:
        if tree.get(section, {}).get(key) is not None:
            tree[section][key] = None
            removed.append(f"{section}.{key}")
    return validate_recipe(tree, "exported recipe"), removed


def _stores(recipe: Recipe, run_dir: Path | None) -> tuple[Path | None, Path | None]:
    cfg = recipe.training
    store = Path(cfg.store) if cfg.store else (run_dir / "data" / "store" if run_dir else None)
    held = Path(cfg.heldout_store) if cfg.heldout_store else (
        run_dir / "data" / "heldout_store" if run_dir else None)
    return (store if store and (store / "manifest.json").is_file() else None,
            held if held and (held / "manifest.json").is_file() else None)


def _corruption_facts(recipe: Recipe) -> dict[str, Any]:
    """The corruption family and its parameters (R, R̃, δ ...) from the recipe."""
    c = recipe.corruption
    facts: dict[str, Any] = {"family": c.kind, "description": c.build().describe(), "seed_mode": c.seed_mode}
    further = getattr(c, "further", None)
    if c.kind in ("cartesian", "kspace2d"):
        rs = list(c.accelerations) if c.kind == "cartesian" else [c.acceleration]
        facts["R"] = rs
        if c.kind == "cartesian":
            facts["mask_type"] = c.mask_type
            facts["center_fractions"] = list(c.center_fractions)
        else:
            facts["pattern"] = c.pattern
            facts["calib"] = list(c.calib)
        inc = further.acceleration_increase
        if isinstance(inc, tuple):
            facts["R_further"] = [[r + inc[0], r + inc[1]] for r in rs]
        elif inc is not None:
            facts["R_further"] = [r + inc for r in rs]
        elif further.extra is not None:
            facts["further_extra"] = further.extra
        else:
            facts["further_extra_fraction"] = further.extra_fraction
    elif c.kind in ("inpainting", "gaussian"):
        facts.update({"p": c.p, "delta": c.delta})
        if c.kind == "gaussian":
            facts["m"] = c.m
    elif c.kind == "block":
        facts.update({"size": c.size, "blocks": c.blocks, "extra_blocks": c.extra_blocks})
    if further is not None:
        facts["further_redraw"] = further.redraw
    return facts


def _store_facts(store: Path | None) -> dict[str, Any] | None:
    """Counts and flags from a store manifest (no file names, no pseudonyms, no paths)."""
    if store is None:
        return None
    manifest = read_json_object(store / "manifest.json")
    data = (manifest.get("recipe") or {}).get("data") or {}
    return {
        "subjects": manifest.get("num_subjects"),
        "volumes": manifest.get("num_volumes"),
        "slices": manifest.get("num_slices"),
        "source_format": _FORMATS.get(str(data.get("kind")), str(data.get("kind"))),
        "challenge": data.get("challenge"),
        "pseudonyms": manifest.get("pseudonyms"),
        "contains_clean_images": bool(manifest.get("contains_clean_images", False)),
        "grid": manifest.get("grid"),
        "coils": manifest.get("coils"),
        "config_hash": manifest.get("config_hash"),
    }


def _budget(state: dict[str, Any], run_dir: Path | None, recipe: Recipe) -> dict[str, Any]:
    """Steps, images, wall time, device and the last held-out numbers of training."""
    budget: dict[str, Any] = {
        "steps": int(state["step"]), "images_seen": int(state.get("images_seen", 0)),
        "batch_size": recipe.training.batch_size, "device": state.get("device"),
        "processes": state.get("world_size"), "seconds": None, "last_loss": None, "heldout": None,
    }
    from ambientmri.training.trainer import read_metrics

    records = [r for r in read_metrics(run_dir) if int(r.get("step", 0)) <= budget["steps"]] if run_dir else []
    if not records:
        return budget
    # each (resumed) `train` restarts its clock: add up the last time of every segment
    total, segment = 0.0, 0.0
    for record in records:
        seconds = float(record.get("seconds") or 0.0)
        if seconds < segment:
            total += segment
        segment = seconds
    budget["seconds"] = round(total + segment, 1)
    budget["last_loss"] = records[-1].get("loss")
    evals = [r for r in records if any(k.startswith("heldout_") for k in r)]
    if evals:
        last = evals[-1]
        budget["heldout"] = {"step": last["step"], **{k: v for k, v in last.items() if k.startswith("heldout_")}}
    return budget


def _evaluation_facts(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    result = read_json_object(path)
    mean = result.get("mean")
    if not isinstance(mean, dict) or not isinstance(result.get("volumes"), dict):
        raise InputError(path, "not the JSON of `ambientmri evaluate --json` (no 'mean' and 'volumes')")
    return {
        "volumes": len(result["volumes"]),
        "mean": {k: mean.get(k) for k in ("nmse", "psnr", "ssim")},
        "std": {k: (result.get("std") or {}).get(k) for k in ("nmse", "psnr", "ssim")} if result.get("std") else None,
        "sha256": sha256_file(path),
    }


def _audit_facts(audit: Path | None, checkpoint_hash: str) -> dict[str, Any] | None:
    """The audit's verdict and numbers, after checking that it audited this model's samples."""
    if audit is None:
        return None
    summary_path = audit / "summary.json" if audit.is_dir() else audit
    summary = read_json_object(summary_path)
    if "memorized_fraction" not in summary:
        raise InputError(summary_path, "not the summary.json of `ambientmri audit` (no memorized_fraction)")
    samples = (summary.get("inputs") or {}).get("samples") or {}
    recorded = samples.get("checkpoint_hash")
    if not recorded and samples.get("path"):
        recorded = samples_checkpoint_hash(samples["path"])
    if not recorded:
        raise InputError(
            audit, "cannot tell which model generated the audited samples (no checkpoint_hash in summary.json "
            "nor in the samples' meta.json); sample this run again and rerun the audit on those samples",
        )
    if recorded != checkpoint_hash:
        raise InputError(
            audit, f"the audit was made from another model's samples (weights {recorded[:12]}, this run's "
            f"{checkpoint_hash[:12]}); sample this run and audit those samples",
        )
    controls = summary.get("controls") or None
    ci95 = summary.get("ci95")
    if isinstance(ci95, dict):  # tolerate an interval written as an object
        ci95 = [ci95.get("lo", ci95.get("low")), ci95.get("hi", ci95.get("high"))]
    verdict = summary.get("verdict")
    if isinstance(verdict, dict):
        verdict = verdict.get("label") or verdict.get("text") or json.dumps(verdict, sort_keys=True)
    failed = summary.get("failed_controls")
    if failed is None and isinstance(summary.get("checks"), list):
        failed = [c for c in summary["checks"] if isinstance(c, dict) and not c.get("passed", True)]
    return {
        "verdict": None if verdict is None else str(verdict),
        "verdict_sentence": summary.get("verdict_sentence"),
        "failed_checks": [
            {k: c.get(k) for k in ("check", "label", "measured", "target")} for c in failed or [] if isinstance(c, dict)
        ],
        "expected_false_positive_rate": summary.get("expected_false_positive_rate"),
        "ci_method": (summary.get("settings") or {}).get("ci"),
        "memorized_fraction": summary.get("memorized_fraction"),
        "ci95": ci95 if isinstance(ci95, list | tuple) and len(ci95) >= 2 else None,
        "threshold": summary.get("threshold"),
        "quantile": (summary.get("settings") or {}).get("quantile"),
        "p_value": summary.get("p_value"),
        "space": summary.get("space_label") or summary.get("space"),
        "n_samples": summary.get("n_samples"),
        "n_train": summary.get("n_train"),
        "n_heldout": summary.get("n_heldout"),
        "controls": {
            name: {"flagged": c.get("flagged"), "passed": c.get("passed")}
            for name, c in controls.items() if isinstance(c, dict)
        } if isinstance(controls, dict) else None,
        "summary_sha256": sha256_file(summary_path),
    }


# ----------------------------------------------------------------------------------------------
# the card
# ----------------------------------------------------------------------------------------------
def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.1%}"


def _num(x: Any, fmt: str = ".4g") -> str:
    return "n/a" if x is None else format(float(x), fmt)


def _list(values: Any) -> str:
    if isinstance(values, list):
        return " / ".join(_list(v) if not isinstance(v, list) else "–".join(f"{float(u):g}" for u in v)
                          for v in values)
    return f"{float(values):g}"


def _verdict_text(verdict: str | None) -> str:
    """A verdict code (``no_evidence_of_memorization``) in words and bold; an older audit's sentence as is."""
    if not verdict:
        return "not recorded by this audit"
    if verdict.replace("_", "").isalpha() and verdict.islower():
        return f"**{verdict.replace('_', ' ')}** (`{verdict}`)"
    return verdict


def _corruption_lines(c: dict[str, Any]) -> list[str]:
    lines = [f"- Corruption family: **{c['family']}** ({c['description']}); A seeded per {c['seed_mode']}."]
    if "R" in c:
        lines.append(f"- Acceleration R = {_list(c['R'])}; the further corruption Ã: "
                     + (f"R̃ = {_list(c['R_further'])}" if "R_further" in c else
                        f"{c.get('further_extra', c.get('further_extra_fraction'))} more removed")
                     + f" (drawn per {c['further_redraw']}).")
    if "delta" in c:
        lines.append(f"- Erased fraction p = {c['p']:g}; further corruption δ = {c['delta']:g} "
                     f"(drawn per {c['further_redraw']}).")
    if "blocks" in c:
        lines.append(f"- {c['blocks']} block(s) of {c['size']:g}·side erased; Ã erases {c['extra_blocks']} more.")
    return lines


def render_model_card(info: dict[str, Any]) -> str:
    """``MODEL_CARD.md`` from the ``model.json`` dict: one function per section."""
    out = [*_card_purpose(info), *_card_data(info), *_card_budget(info["training_budget"]),
           *_card_metrics(info["evaluation"]), *_card_audit(info["audit"]), *_card_files(info)]
    return "\n".join(out)


def _card_purpose(info: dict[str, Any]) -> list[str]:
    data = info["training_data"]
    anatomy = f"{data['anatomy']} " if data.get("anatomy") else ""
    return [
        f"# Model card: {info['name']}",
        "",
        f"Exported by ambientmri {info['ambientmri_version']} on {info['exported']}. "
        "Every number below comes from the run's checkpoint, its store's manifest, its metrics log and the "
        "files attached at export; the fingerprints at the end tie them to the weights.",
        "",
        "## What the model is for",
        "",
        f"{'An MLP' if info['model']['kind'] == 'mlp' else 'A UNet'} denoiser "
        f"({info['model']['parameters']:,} parameters) on "
        f"{info['image_shape'][0]}×{info['image_shape'][1]} images, trained with the **{info['objective']}** "
        f"objective: {_PURPOSE.get(info['objective'], '').format(anatomy=anatomy)}",
        "It is a research model: its outputs are not a diagnosis and have not been validated for clinical use.",
    ]


def _card_data(info: dict[str, Any]) -> list[str]:
    data = info["training_data"]
    out = ["", "## Training data", ""]
    store = data.get("store")
    if store:
        out.append(f"- {store['subjects']} subject(s), {store['volumes']} volume(s), {store['slices']} slice(s); "
                   f"source format: {store['source_format']}"
                   + (f", {store['challenge']}" if store.get("challenge") else "") + ".")
        scheme = store.get("pseudonyms")
        keyed = "a keyed HMAC-SHA256" if scheme == "hmac-sha256" else "an unkeyed SHA-256"
        out.append(f"- Pseudonymized: yes; subject identifiers were replaced by {keyed} pseudonym when the store "
                   "was prepared. No subject identifier, file name or path is in this folder.")
    else:
        out.append(f"- The training store was not found at export; source format from the recipe: "
                   f"{data['source_format']}. Subject counts: not recorded.")
    out += _corruption_lines(data["corruption"])
    if info["objective"] == "ambient":
        out.append("- **No clean image was used** in training: the model learned from the corrupted measurements "
                   "y = A x₀ only (the store holds no clean image or fully sampled k-space).")
    elif info["objective"] == "clean":
        out.append("- Clean reference images were used in training (the oracle objective).")
    else:
        out.append("- Zero-filled images of the measurements were used as if they were clean (naive objective).")
    held = data.get("heldout_store")
    if held:
        out.append(f"- Held-out store: {held['subjects']} other subject(s), {held['slices']} slice(s); their clean "
                   "images are for evaluation only, never for training.")
    return out


def _card_budget(budget: dict[str, Any]) -> list[str]:
    out = ["", "## Training budget", ""]
    seconds = budget["seconds"]
    minutes = "n/a" if seconds is None else f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
    out.append(f"- {budget['steps']} steps, {budget['images_seen']:,} training images seen "
               f"(batch {budget['batch_size']}), {minutes} of training")
    out.append(f"- Device: {budget['device'] or 'not recorded'}"
               + (f", {budget['processes']} process(es)" if budget.get("processes") else "")
               + (f"; last logged loss {_num(budget['last_loss'])}" if budget.get("last_loss") is not None else ""))
    if budget.get("heldout"):
        h = budget["heldout"]
        out.append(f"- Last held-out check during training (step {h['step']}): "
                   + ", ".join(f"{k[len('heldout_'):]} {_num(v)}" for k, v in h.items() if k != "step"))
    return out


def _card_metrics(ev: dict[str, Any] | None) -> list[str]:
    out = ["", "## Held-out metrics", ""]
    if ev:
        m = ev["mean"]
        out.append(f"- {ev['volumes']} held-out volume(s), fastMRI metrics (mean): NMSE {_num(m['nmse'])}, "
                   f"PSNR {_num(m['psnr'], '.2f')} dB, SSIM {_num(m['ssim'])}")
        out.append(f"- Metrics file sha256: `{ev['sha256']}`")
    else:
        out.append("- none attached (export with `--evaluation METRICS.json`, from `ambientmri evaluate --json`)")
    return out


def _card_audit(audit: dict[str, Any] | None) -> list[str]:
    out = ["", "## Memorization audit", ""]
    if audit:
        out.append(f"- Verdict: {_verdict_text(audit.get('verdict'))}")
        if audit.get("verdict_sentence"):
            out.append(f"- In words: {audit['verdict_sentence']}")
        for c in audit.get("failed_checks") or []:
            measured = c.get("measured")
            shown = _pct(measured) if isinstance(measured, float) else "n/a" if measured is None else str(measured)
            out.append(f"- Failed check: {c.get('label') or c.get('check')}: {shown} (target {c.get('target')})")
        lo, hi = (audit["ci95"] or [None, None])[:2]
        method = f", {audit['ci_method']}" if audit.get("ci_method") else ""
        out.append(f"- Memorized fraction: {_pct(audit['memorized_fraction'])} of {audit['n_samples']} generated "
                   f"scans (95% CI {_pct(lo)}–{_pct(hi)}{method})")
        if audit.get("expected_false_positive_rate") is not None:
            out.append(f"- Expected by chance (false-positive rate of real scans): "
                       f"{_pct(audit['expected_false_positive_rate'])}")
        quantile = f" ({audit['quantile']:.0%} quantile of held-out similarities)" if audit.get("quantile") else ""
        out.append(f"- Threshold τ = {_num(audit['threshold'])}{quantile}, compared in {audit['space']}; "
                   f"{audit['n_train']} training and {audit['n_heldout']} held-out slices")
        if audit["controls"]:
            parts = []
            for name, c in audit["controls"].items():
                mark = "" if c.get("passed") in (None, True) else " (below its target)"
                parts.append(f"{name.replace('_', ' ')} {_pct(c.get('flagged'))} flagged{mark}")
            out.append("- Controls: " + "; ".join(parts))
        else:
            out.append("- Controls: not run")
        out.append(f"- Audit summary.json sha256: `{audit['summary_sha256']}`")
    else:
        out.append("- audit: none (run `ambientmri audit` on samples of this model and export with `--audit`)")
    return out


def _card_files(info: dict[str, Any]) -> list[str]:
    return [
        "", "## Files and fingerprints", "",
        f"- `{WEIGHTS_FILE}`: EMA weights only, a state_dict for `torch.load(path, weights_only=True)`; "
        f"sha256 `{info['weights']['sha256']}`",
        f"- Weights fingerprint (what samples' meta.json records as `checkpoint_hash`): `{info['checkpoint_hash']}`",
        f"- `{RECIPE_FILE}`: the resolved recipe; sha256 `{info['recipe']['sha256']}`"
        + (f" (removed machine paths: {', '.join(info['recipe']['removed_keys'])})"
           if info["recipe"]["removed_keys"] else ""),
        f"- ambientmri version: {info['ambientmri_version']} (trained with {info['trained_with'] or 'n/a'})",
        "", "## Use", "", "```text",
        "ambientmri sample MODEL --num 16 --out samples",
        "ambientmri reconstruct SCANS --out recon --method "
        + ("a-os" if info["objective"] == "ambient" else "dps") + " --run MODEL",
        "```", "",
    ]


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------
def _machine_strings(*paths: Path | None) -> list[str]:
    found = set()
    for p in paths:
        if p is None:
            continue
        for q in (Path(p).resolve(), *Path(p).resolve().parents):
            if len(str(q)) > 4 and q != Path(q.anchor):
                found.add(str(q))
    home = str(Path.home())
    if len(home) > 4:
        found.add(home)
    return sorted(found, key=len, reverse=True)


def export_model(
    run: str | Path,
    out: str | Path,
    *,
    audit: str | Path | None = None,
    evaluation: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export a trained run (or one of its checkpoints) as a shareable model folder.

    The folder is written through :func:`ambientmri.outputs.output_dir`: it appears only when
    complete, and replaces only an empty folder or an earlier export (or anything with
    ``overwrite``); it may never be, hold or lie inside the run, the checkpoint or an attachment.

    Args:
        run: a run folder (its ``checkpoints/last.pt``) or a checkpoint file.
        out: the model folder to write (see above).
        audit: an ``ambientmri audit`` output folder (or its ``summary.json``) made from samples of
            this run's weights; without it the card says "audit: none".
        evaluation: held-out metrics, the JSON of ``ambientmri evaluate --json``.
        overwrite: replace an existing ``out`` that is not an earlier export.

    Returns:
        The ``model.json`` dict.

    Raises:
        InputError: no readable checkpoint; an audit of another model's samples or of samples whose
            model cannot be told; unreadable attachments.
        OutputError: an output folder that may not be written (before any work is done).
    """
    run_path, out = Path(run), Path(out)
    ckpt = find_checkpoint(run_path)
    run_dir = run_path if run_path.is_dir() else (
        ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent)
    guard = {"inputs": [run_dir, ckpt, audit, evaluation], "overwrite": overwrite}
    check_output_dir(out, "export", **guard)
    state = load_checkpoint(ckpt, map_location="cpu")
    recipe = validate_recipe(yaml.safe_load(state["recipe"]), str(ckpt))
    ema = {k: v.detach().cpu().clone() for k, v in state["ema"].items()}
    checkpoint_hash = weights_fingerprint(ema)
    audit_info = _audit_facts(Path(audit), checkpoint_hash) if audit is not None else None
    eval_info = _evaluation_facts(Path(evaluation) if evaluation is not None else None)
    store, held = _stores(recipe, run_dir)
    shareable, removed = _shareable_recipe(recipe)
    recipe_text = dump_recipe(shareable)
    data_cfg = recipe.data
    info: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "name": recipe.name,
        "ambientmri_version": __version__,
        "trained_with": state.get("ambientmri_version"),
        "exported": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "objective": str(state.get("objective", recipe.training.objective)),
        "image_shape": [int(s) for s in state["image_shape"]],
        "step": int(state["step"]),
        "model": {"kind": recipe.model.kind, "parameters": int(sum(v.numel() for k, v in ema.items()
                                                                  if v.is_floating_point()))},
        "checkpoint_hash": checkpoint_hash,
        "weights": {"file": WEIGHTS_FILE, "sha256": None, "contents": "EMA weights (state_dict)"},
        "recipe": {"file": RECIPE_FILE, "sha256": hashlib.sha256(recipe_text.encode("utf-8")).hexdigest(),
                   "removed_keys": removed},
        "training_data": {
            "source_format": _FORMATS.get(data_cfg.kind, data_cfg.kind),
            "anatomy": getattr(data_cfg, "anatomy", None),
            "corruption": _corruption_facts(recipe),
            "clean_images_used": recipe.training.objective == "clean",
            "store": _store_facts(store),
            "heldout_store": _store_facts(held),
        },
        "training_budget": _budget(state, run_dir, recipe),
        "evaluation": eval_info,
        "audit": audit_info,
    }
    forbidden = _machine_strings(run_dir, ckpt, store, held, Path(audit) if audit else None,
                                 Path(evaluation) if evaluation else None, out, Path.cwd())
    with output_dir(out, "export", **guard) as tmp:
        torch.save(ema, tmp / WEIGHTS_FILE)
        info["weights"]["sha256"] = sha256_file(tmp / WEIGHTS_FILE)
        write_text_atomic(tmp / RECIPE_FILE, recipe_text)
        card = render_model_card(info)
        for text in (json.dumps(info), card, recipe_text):
            leaked = next((s for s in forbidden if s in text), None)
            if leaked is not None:  # a path in a recipe name or a new field: never ship it
                raise InputError(out, f"the export would contain a path of this machine ({leaked}); nothing written")
        write_json_atomic(tmp / "model.json", info)
        write_text_atomic(tmp / "MODEL_CARD.md", card)
    return info
