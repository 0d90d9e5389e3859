"""The memorization audit's ``report.html``: one self-contained file (PNG figures embedded as base64).

Sections: the verdict first, in one sentence (``no_evidence_of_memorization``,
``memorization_detected`` or ``inconclusive``, with the failed checks named), then the finding with its
exact confidence interval and the comparison used (and any fallback); the generated, held-out and
train-background similarity histograms on one axis with ``τ`` marked (one figure per comparison
space); the top matches as image pairs with their difference images and scores; the controls; the
inputs and settings audited. Nothing is loaded from the network when the file is opened.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DOCS", "controls_png", "doc_link", "histogram_png", "matches_png", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.verdict{font-size:1.15em;background:#f4f6fa;border-left:6px solid #3465a4;padding:.8em 1em}
.verdict-inconclusive{background:#fff6e0;border-left-color:#c77c02}
.verdict-memorization_detected{background:#fdecea;border-left-color:#b00}
.verdict-no_evidence_of_memorization{background:#edf7ed;border-left-color:#2a7a2a}
.fallback{background:#fff6e0;border-left:4px solid #c77c02;padding:.5em 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f0f0f0}.pass{color:#2a7a2a;font-weight:bold}.fail{color:#b00;font-weight:bold}
img{max-width:100%}.note{color:#555;font-size:.92em}code{background:#f3f3f3;padding:0 .2em}
"""


def _png(fig: Any) -> str:
    """A matplotlib figure as an ``<img>`` tag with a base64 PNG (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="figure">'


def _figure(*args: Any, **kwargs: Any) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def histogram_png(arrays: dict[str, np.ndarray], tau: float, title: str) -> str:
    """Generated, held-out and train-background top-1 similarities on one axis, ``τ`` marked."""
    fig, ax = _figure(figsize=(8, 3.6))
    series = [("generated", arrays["gen_s"][:, 0], "#c0392b"), ("held-out (real)", arrays["held"], "#2e86c1"),
              ("train background (other subjects)", arrays["bg"], "#7f8c8d")]
    finite = [s[np.isfinite(s)] for _, s, _ in series]
    allv = np.concatenate([f for f in finite if f.size] + [np.array([tau])])
    lo, hi = float(allv.min()), float(allv.max())
    pad = max(1e-3, 0.05 * (hi - lo))
    bins = np.linspace(lo - pad, hi + pad, 41)
    for (label, _, color), f in zip(series, finite, strict=True):
        if f.size:
            ax.hist(f, bins=bins, density=True, alpha=0.45, color=color, label=f"{label} (n={f.size})")
    ax.axvline(tau, color="k", linestyle="--", linewidth=1.5, label=f"τ = {tau:.4f}")
    ax.set_xlabel("top-1 similarity to the training set")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig)


def controls_png(arrays: dict[str, np.ndarray], tau: float, title: str) -> str:
    """Top-1 similarities of the positive controls and the held-out negative control, ``τ`` marked."""
    fig, ax = _figure(figsize=(8, 3.2))
    series = [("positive: optimal denoiser samples", "empirical_optimal_denoiser", "#8e44ad"),
              ("positive: perturbed copies", "perturbed_copies", "#d35400"),
              ("negative: held-out real scans", "heldout_negative", "#2e86c1")]
    vals = [np.asarray(arrays[key], np.float64) for _, key, _ in series]
    vals = [v[np.isfinite(v)] for v in vals]
    allv = np.concatenate([v for v in vals if v.size] + [np.array([tau])])
    pad = max(1e-3, 0.05 * float(allv.max() - allv.min()))
    bins = np.linspace(float(allv.min()) - pad, float(allv.max()) + pad, 41)
    for (label, _, color), v in zip(series, vals, strict=True):
        if v.size:
            ax.hist(v, bins=bins, alpha=0.5, color=color, label=f"{label} (n={v.size})")
    ax.axvline(tau, color="k", linestyle="--", linewidth=1.5, label=f"τ = {tau:.4f}")
    ax.set_xlabel("top-1 similarity to the training set")
    ax.set_ylabel("scans")
    ax.set_title(f"controls: {title}")
    ax.legend(fontsize=8)
    return _png(fig)


def matches_png(pairs: list[dict[str, Any]]) -> str:
    """Top matches: generated | nearest training scan (aligned) | difference, one row each."""
    n = max(1, len(pairs))
    fig, axes = _figure(n, 3, figsize=(7.5, 2.4 * n), squeeze=False)
    for row, p in enumerate(pairs):
        nb = p["match"]
        panels = (
            (p["sample_image"], f"sample {p['sample']}", "gray", (0, 1)),
            (p["train_image"], f"train #{nb['index']} ({nb['subject']})", "gray", (0, 1)),
            (p["difference"], f"difference · NCC {nb['score']:.3f} · SSIM {nb['ssim']:.3f}", "RdBu_r", (-1, 1)),
        )
        for col, (img, title, cmap, (vmin, vmax)) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    if not pairs:
        axes[0, 0].text(0.5, 0.5, "no matches", ha="center")
        for ax in axes[0]:
            ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def _e(v: Any) -> str:
    return html.escape(str(v))


def _pct(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{float(v):.1%}"


def _controls_table(space: dict[str, Any]) -> str:
    c = space.get("controls")
    if not c:
        return "<p>Controls were not run (<code>--no-controls</code>).</p>"
    rows = []
    for key, label in (("empirical_optimal_denoiser", "positive: empirical optimal denoiser samples"),
                       ("perturbed_copies", "positive: shifted/flipped/noisy training copies")):
        r = c[key]
        cls = "pass" if r["passed"] else "fail"
        extra = f" ({_e(r['perturbation'])})" if "perturbation" in r else ""
        rows.append(f"<tr><td>{label}{extra}</td><td>{r['n']}</td><td>{_pct(r['flagged'])}</td>"
                    f"<td>{_e(r['target'])}</td><td class='{cls}'>{'pass' if r['passed'] else 'FAIL'}</td></tr>")
    neg = c["heldout_negative"]
    cls = "pass" if neg.get("passed") else "fail"
    rows.append(
        f"<tr><td>negative: held-out real scans (split-half)</td><td>{neg['n']}</td><td>"
        f"{_pct(neg['flagged_split_half'])} (in-sample: {_pct(neg['flagged'])})</td><td>{_e(neg['target'])}</td>"
        f"<td class='{cls}'>{'pass' if neg.get('passed') else 'FAIL'}</td></tr>"
    )
    return (
        f"<p class='note'>Positive controls made from: {_e(c['positive_source'])}.</p>"
        "<table><tr><th>control</th><th>n</th><th>flagged</th><th>target</th><th>result</th></tr>"
        + "".join(rows) + f"</table><p class='note'>{_e(neg['note'])}</p>"
    )


def _measured(check: dict[str, Any]) -> str:
    v = check["measured"]
    if v is None:
        return "not run" if check["check"] == "controls" else "n/a"
    return str(v) if isinstance(v, int) else _pct(v)


def _checks_table(checks: list[dict[str, Any]]) -> str:
    """Every check of the verdict: what was measured, the target, pass/FAIL."""
    rows = "".join(
        f"<tr><td>{_e(c['label'])}</td><td>{_e(_measured(c))}</td><td>{_e(c['target'])}</td>"
        f"<td class='{'pass' if c['passed'] else 'fail'}'>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for c in checks
    )
    return "<table><tr><th>check</th><th>measured</th><th>target</th><th>result</th></tr>" + rows + "</table>"


def _space_table(space: dict[str, Any]) -> str:
    rows = [
        ("threshold τ", f"{space['threshold']:.4f}"),
        ("memorized fraction (95% CI)", f"{_pct(space['memorized_fraction'])} ({_pct(space['ci95'][0])}–"
                                        f"{_pct(space['ci95'][1])}), {space['n_flagged']} flagged"),
        ("Mann–Whitney p (generated > held-out)", f"{space['p_value']:.3g}"),
        ("training coverage (train scans matched)", _pct(space["training_coverage"])),
        ("train background above τ", _pct(space["train_background_above_tau"])),
    ]
    for key, label in (("generated_top1", "generated"), ("heldout_top1", "held-out"),
                       ("train_background_top1", "train background")):
        d = space[key]
        if d.get("n"):
            rows.append((f"{label} top-1: median / max", f"{d['median']:.4f} / {d['max']:.4f} (n={d['n']})"))
    body = "".join(f"<tr><th>{_e(a)}</th><td>{_e(b)}</td></tr>" for a, b in rows)
    notes = "".join(f"<li>{_e(n)}</li>" for n in space.get("notes", []))
    return f"<table>{body}</table>" + (f"<ul class='note'>{notes}</ul>" if notes else "")


#: the project's documentation folder (it ships with the project, beside the package).
DOCS = Path(__file__).resolve().parents[2] / "docs"


def doc_link(page: str, anchor: str, label: str, out: str | Path | None) -> str:
    """``<a href>`` to ``docs/PAGE#ANCHOR`` relative to the report's folder ``out``; plain text when the
    report's folder is not known or the docs are not installed beside the package."""
    target = DOCS / page
    if out is None or not target.is_file():
        return f"{_e(label)} (docs/{_e(page)}, section “{_e(anchor.replace('-', ' '))}”)"
    href = Path(os.path.relpath(target, Path(out).resolve())).as_posix()
    return f"<a href='{_e(href)}#{_e(anchor)}'>{_e(label)}</a>"


def write_report(summary: dict[str, Any], plots: dict[str, dict[str, np.ndarray]], pairs: list[dict[str, Any]],
                 *, out: str | Path | None = None) -> str:
    """The report's HTML text.

    Args:
        summary: the audit summary (as written to ``summary.json``).
        plots: per comparison space, the arrays ``gen_s`` ``(N, k)``, ``held`` and ``bg`` top-1 scores.
        pairs: the top matches (``sample_image``, ``train_image``, ``difference``, ``match``, ...).
        out: the folder the report is written to: its pointers to the docs become relative links.
    """
    parts = [*_verdict_section(summary, plots), *_matches_section(summary, pairs), *_controls_section(summary, plots),
             *_probe_section(summary), *_inputs_section(summary, out), "</body></html>\n"]
    return "\n".join(parts)


def _verdict_section(summary: dict[str, Any], plots: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """The verdict, its checks, what was compared, the similarity histograms."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>ambientmri memorization audit</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Memorization audit</h1>",
        f"<p class='verdict verdict-{_e(summary['verdict'])}'>{_e(summary['verdict_sentence'])}</p>",
        f"<p>{_e(summary['finding'])} (<code>{_e(summary['verdict'])}</code> in summary.json)</p>",
    ]
    failed = summary.get("failed_controls") or []
    if failed:
        parts.append(f"<h2>Failed checks ({len(failed)})</h2>"
                     "<p>The verdict is conclusive only when every check of the audit passes.</p>"
                     + _checks_table(failed))
    parts.append(
        f"<p>Comparison used for the verdict: <b>{_e(summary['space_label'])}</b>, because "
        f"{_e(summary.get('space_reason', ''))}. Spaces computed: {_e(', '.join(summary['spaces_used']))}.</p>"
    )
    for fb in summary.get("fallbacks") or []:
        parts.append(f"<p class='fallback'><b>Fallback:</b> {_e(fb['used'])} instead of {_e(fb['instead_of'])}, "
                     f"because {_e(fb['reason'])}.</p>")
    parts.append("<h2>All checks</h2>" + _checks_table(summary.get("checks") or []))
    for name, space in summary["spaces"].items():
        parts.append(f"<h2>Similarities: {_e(space['label'])}</h2>")
        parts.append(histogram_png(plots[name], space["threshold"], space["label"]))
        parts.append(_space_table(space))
    return parts


def _matches_section(summary: dict[str, Any], pairs: list[dict[str, Any]]) -> list[str]:
    """The top matches: images and their scores."""
    parts: list[str] = []
    parts.append(f"<h2>Top matches (top {len(pairs)} samples by top-1 similarity)</h2>")
    parts.append("<p class='note'>Magnitudes, each scaled to a maximum of 1; the training scan is moved onto the "
                 "sample by the best circular shift and flip. Training scans are named by index and subject "
                 "pseudonym only.</p>")
    parts.append(matches_png(pairs))
    if pairs:
        rows = "".join(
            f"<tr><td>{p['sample']}</td><td>{p['match']['index']}</td><td>{_e(p['match']['subject'])}</td>"
            f"<td>{p['top1']:.4f}</td><td>{p['match']['ssim']:.3f}</td><td>{p['relative_l2']:.3f}</td>"
            f"<td>{'yes' if p['flagged'] else 'no'}</td></tr>"
            for p in pairs
        )
        parts.append("<table><tr><th>sample</th><th>train index</th><th>subject</th><th>top-1 score</th>"
                     "<th>SSIM</th><th>relative ℓ2</th><th>flagged</th></tr>" + rows + "</table>")
    rl2 = summary["relative_l2"]
    parts.append(
        f"<p class='note'>Second score: {_e(rl2['description'])}. Samples below 1: {_pct(rl2['below_1'])}.</p>"
    )
    return parts


def _controls_section(summary: dict[str, Any], plots: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """The positive and negative controls of every space."""
    parts: list[str] = []
    parts.append("<h2>Controls</h2>")
    for name, space in summary["spaces"].items():
        parts.append(f"<h3>{_e(space['label'])}</h3>")
        parts.append(_controls_table(space))
        if space.get("failed_controls"):
            parts.append("<p class='note'>Failed checks of this comparison (it does not decide the verdict):</p>"
                         + _checks_table(space["failed_controls"]))
        if plots[name].get("controls"):
            parts.append(controls_png(plots[name]["controls"], space["threshold"], space["label"]))
    return parts


def _probe_section(summary: dict[str, Any]) -> list[str]:
    """The attack probe's table, when it ran."""
    parts: list[str] = []
    probe = summary.get("attack_probe")
    if probe:
        parts.append(
            "<h2>Attack probe</h2><p>Training and held-out scans were reconstructed by the model from "
            f"{_pct(probe['fraction'])} of their {_e(probe['keep'])} ({_e(probe['method'])}); the score is the "
            "similarity of each reconstruction to its own scan. A memorizing model reconstructs training scans "
            "better than held-out ones; read the gap against the zero-filled gap (no model).</p>"
            "<table><tr><th></th><th>training</th><th>held-out</th><th>gap</th></tr>"
            f"<tr><th>model</th><td>{probe['train']['mean']:.4f}</td><td>{probe['heldout']['mean']:.4f}</td>"
            f"<td>{probe['gap']:+.4f} (Mann–Whitney p {probe['mann_whitney_p']:.3g})</td></tr>"
            f"<tr><th>zero-filled</th><td>{probe['zero_filled']['train']:.4f}</td>"
            f"<td>{probe['zero_filled']['heldout']:.4f}</td><td>{probe['zero_filled_gap']:+.4f}</td></tr></table>"
        )
    return parts


def _inputs_section(summary: dict[str, Any], out: str | Path | None) -> list[str]:
    """What was audited with which settings, and where to read more."""
    parts: list[str] = []
    parts.append("<h2>Inputs and settings audited</h2><table><tr><th>role</th><th>path</th><th>kind</th>"
                 "<th>slices</th><th>subjects</th><th>images</th></tr>")
    for role, inp in summary["inputs"].items():
        parts.append(f"<tr><td>{role}</td><td><code>{_e(inp['path'])}</code></td><td>{_e(inp['kind'])}</td>"
                     f"<td>{inp['slices']}</td><td>{_e(inp['subjects'] if inp['subjects'] is not None else '–')}</td>"
                     f"<td>{_e(inp['images'])}</td></tr>")
    parts.append("</table>")
    st = summary["settings"]
    parts.append(
        f"<p>quantile q = {st['quantile']} (held-out false-positive rate {1 - st['quantile']:.1%} by construction), "
        f"k = {st['k']} neighbours, controls {'on' if st['controls'] else 'off'}, seed {st['seed']}, "
        f"{_e(st.get('ci', 'exact Clopper–Pearson, 95%'))} intervals; audit took {summary.get('seconds', 0):.1f} s.</p>"
    )
    if summary.get("notes"):
        parts.append("<ul class='note'>" + "".join(f"<li>{_e(n)}</li>" for n in summary["notes"]) + "</ul>")
    guide = doc_link("audit.md", "reading-the-report", "the audit guide", out)
    theory = doc_link("theory.md", "6-memorization-measurement", "theory §6", out)
    parts.append(f"<p class='note'>How to read this report: {guide}. Similarities need no pretrained weights "
                 f"({theory}): normalised cross-correlation, SSIM re-ranking, Carlini's relative ℓ2.</p>")
    return parts

