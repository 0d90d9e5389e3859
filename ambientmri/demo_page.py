"""The demo's page (``OUT/index.html``): every number of ``summary.json`` with its figure.

Links are relative (open the page inside the demo folder). :func:`render_index` builds the page
from the summary alone, one function per section.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["LABELS", "render_index", "restoration_markdown"]

LABELS = {"a-os": "A-OS (ambient, one step)", "a-dps": "A-DPS (ambient posterior sampling)",
          "zero-filled": "zero-filled Aᴴy", "l1-wavelet": "L1-wavelet (compressed sensing)"}


def restoration_markdown(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| method | PSNR (dB) | SSIM | NMSE | NFE | s/slice |", "|---|---|---|---|---|---|"]
    for m, r in rows.items():
        lines.append(f"| {LABELS.get(m, m)} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['nmse']:.4f} | {r['nfe']} | "
                     f"{r['seconds_per_slice']:.3f} |")
    return "\n".join(lines) + "\n"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: str, alt: str) -> str:
    return f'<a href="{_e(path)}"><img alt="{_e(alt)}" src="{_e(path)}"></a>'


def _link(path: str, text: str | None = None) -> str:
    return f'<a href="{_e(path)}">{_e(text or path)}</a>'


#: users' names of the audit's controls (summary keys stay machine names)
CONTROL_LABELS = {
    "empirical_optimal_denoiser": "positive control: samples of the empirical optimal denoiser (copies by design)",
    "perturbed_copies": "positive control: slightly perturbed copies of training scans",
}

_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
          "table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;border-bottom:1px solid #ddd;"
          "text-align:left}img{max-width:100%}.note{color:#555;font-size:90%}")


def render_index(s: dict[str, Any]) -> str:
    """The demo's page: every number of ``summary.json`` with its figure, and links to every file."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>ambientmri demo</title><style>{_STYLE}</style>"
        "</head><body>",
        f"<h1>ambientmri demo</h1><p>ambientmri {_e(s['ambientmri_version'])}, recipe <code>{_e(s['recipe'])}</code>, "
        f"device {_e(s['device'])}, this run {s['seconds']:.1f} s, finished {_e(s['finished'])}. "
        f"Numbers: {_link('summary.json')}; recipe: {_link('recipe.resolved.yaml')}.</p>",
        "<h2>Stages</h2>",
        _table(["stage", "folder", "seconds (when it ran)", "this run"],
               [[_e(k), _link(v["folder"] + "/"), _fmt(v["seconds"], ".1f"), "reused" if v["reused"] else "ran"]
                for k, v in s["stages"].items()]),
        *_data_section(s), *_training_section(s), *_samples_section(s), *_restoration_section(s),
        *_audit_section(s["audit"]),
        "<h2>Versions</h2>",
        _table(["package", "version"], [[_e(k), _e(v)] for k, v in s["versions"].items()]),
        "<p class='note'>Rerun <code>ambientmri demo</code> with the same options to reuse every stage; change an "
        "option (e.g. <code>--steps</code>) and the stages that depend on it are redone.</p>",
        "</body></html>\n",
    ]
    return "".join(parts)


def _data_section(s: dict[str, Any]) -> list[str]:
    return [
        "<h2>1–2. Data and the corrupted store</h2>",
        "<p>Synthetic multi-coil brain subjects in fastMRI format (<code>raw/train</code>, and clean held-out "
        "subjects in <code>raw/heldout</code>). The store holds only undersampled k-space <i>y = A x₀</i>, "
        "the masks of A and of the further corruption Ã, and ESPIRiT coil maps: never a clean image.</p>",
        _table(["quantity", "value"], [[_e(k), _e(v)] for k, v in s["store"].items()]),
        f"<p><b>Full-rank condition</b> ({_link('prepared/condition.json', 'condition.json')}): "
        f"{_e(s['condition_message'])}</p>",
        _img(s["figures"][0], "masks"), _img(s["figures"][1], "mask psf"),
    ]


def _training_section(s: dict[str, Any]) -> list[str]:
    t = s["training"]
    parts = [
        "<h2>3. Training the ambient model</h2>",
        f"<p>{t['steps']} steps ({_e(t['chosen_by'])}), {_fmt(t['images_per_second'], '.1f')} images/s; loss "
        f"{_fmt(t['first_loss'])} → {_fmt(t['final_loss'])}. Run folder {_link('run/')}, "
        f"log {_link('run/metrics.jsonl', 'metrics.jsonl')}, checkpoint "
        f"{_link('run/checkpoints/last.pt', 'last.pt')}.</p>",
    ]
    if t.get("heldout"):
        h = t["heldout"]
        sigmas = sorted({k.split("@")[1] for k in h if k.startswith("heldout_nmse@")}, key=float)
        parts.append(f"<p>Held-out denoising NMSE at step {h.get('step')} (EMA model given Ãᴴ Ã x_t, against the "
                     "clean held-out image; the input's own NMSE for comparison):</p>")
        parts.append(_table(["σ", "model NMSE", "input NMSE"],
                            [[sg, _fmt(h.get(f"heldout_nmse@{sg}")), _fmt(h.get(f"heldout_input_nmse@{sg}"))]
                             for sg in sigmas]))
    parts.append(_img("evaluation/training_curves.png", "training curves"))
    return parts


def _samples_section(s: dict[str, Any]) -> list[str]:
    return [
        "<h2>4. Generated scans</h2>",
        f"<p>{s['samples']['num']} scans, Heun sampler, {s['samples']['nfe_per_sample']} network evaluations each, "
        f"one fixed Ã per scan ({_link('samples/samples.h5', 'samples.h5')}, "
        f"{_link('samples/samples.nii.gz', 'NIfTI')}).</p>",
        _img("samples/grid.png", "generated scans"),
        "<p>Sample-set metrics against the clean held-out scans (lower is closer; "
        f"{_link('evaluation/sampleset.json', 'sampleset.json')}). The two yardsticks show the range: the clean "
        "training scans (what a perfect model would reach) and their zero-filled images (what a model that "
        "learned the corrupted data itself would produce).</p>",
        _table(["scan set", "patch SWD", "radial spectrum distance", "pixels at zero (ref.)",
                "energy where training rarely sampled (gen/ref)"],
               [[_e(name), _fmt(r["swd"]), _fmt(r["radial_spectrum_distance"]),
                 f"{_fmt(r['zero_pixels'], '.2%')} ({_fmt(r['zero_pixels_reference'], '.2%')})"
                 + (" flagged" if r["zero_pixels_flagged"] else ""),
                 _fmt(r["unmeasured_energy_ratio"], ".3f") + (" flagged" if r["unmeasured_energy_flagged"] else "")]
                for name, r in s["sampleset"].items()]),
    ]


def _restoration_section(s: dict[str, Any]) -> list[str]:
    parts = [
        "<h2>5–6. Reconstructing the undersampled held-out scans</h2>",
        "<p>The held-out subjects' k-space, undersampled with the recipe's mask (R = 4, seeded per volume as in "
        "fastMRI), reconstructed by each method and scored with fastMRI's metrics against the clean "
        f"<code>reconstruction_rss</code> ({_link('evaluation/restoration.md', 'restoration.md')}, "
        f"{_link('evaluation/restoration.json', 'restoration.json')}).</p>",
        _table(["method", "PSNR (dB)", "SSIM", "NMSE", "NFE", "s/slice", "files"],
               [[_e(LABELS.get(m, m)), _fmt(r["psnr"], ".2f"), _fmt(r["ssim"], ".4f"), _fmt(r["nmse"], ".4f"),
                 _e(r["nfe"]), _fmt(r["seconds_per_slice"], ".3f"),
                 _link(f"reconstructions/{m}/") + ", " + _link(f"evaluation/metrics_{m}.json", "metrics")]
                for m, r in s["restoration"].items()]),
    ]
    for m in s["restoration"]:
        figs = [f for f in s["figures"] if f.startswith(f"reconstructions/{m}/")]
        if figs:
            parts.append(f"<h3>{_e(LABELS.get(m, m))}</h3>" + _img(figs[0], f"{m} reconstruction"))
    return parts


def _audit_section(a: dict[str, Any]) -> list[str]:
    """The verdict once (its sentence already names it and the flagged fraction), then how it was measured."""
    lo, hi = a["ci95"]
    parts = [
        "<h2>7. Memorization audit</h2>",
        f"<p><b>{_e(a.get('verdict_sentence') or a.get('verdict', 'n/a'))}</b></p>",
    ]
    if a.get("failed_controls"):
        parts.append(_table(["failed check", "measured", "target"],
                            [[_e(c["label"]), _e(_fmt(c["measured"], ".1%")), _e(c["target"])]
                             for c in a["failed_controls"]]))
    parts += [
        f"<p>How it was measured: a generated scan is flagged when it is closer to its nearest training scan than "
        f"τ = {_fmt(a['threshold'])}, calibrated on {a['n_heldout']} held-out slices (95% CI of the flagged "
        f"fraction {_fmt(lo, '.1%')}–{_fmt(hi, '.1%')}, exact); {a['n_train']} training slices; "
        f"{_e(a['space'])}.</p>",
        f"<p>Full report: {_link('audit/report.html')} ({_link('audit/summary.json', 'summary.json')}).</p>",
    ]
    if a.get("controls"):
        parts.append(_table(["control", "flagged"], [[_e(CONTROL_LABELS.get(k, k.replace("_", " "))), _fmt(v, ".1%")]
                                                     for k, v in a["controls"].items()]))
    return parts
