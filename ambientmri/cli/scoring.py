"""The commands ``evaluate``, ``compare-samples``, ``audit``: scoring reconstructions, samples and memorization."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ambientmri.cli.common import (
    CHALLENGES,
    EXIT_AUDIT_INCONCLUSIVE,
    EXIT_MEMORIZATION_DETECTED,
    OVERWRITE_HELP,
    PROBES,
    SEARCHES,
    app,
    check_file,
    choices,
    console,
    friendly,
    matplotlib_png,
    progress_bar,
)


# ----------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------
@app.command()
@friendly
def evaluate(
    targets: Annotated[Path, typer.Option(
        "--targets", help="fastMRI train/val files with targets, or NIfTI files or DICOM series (magnitudes)."
    )],
    predictions: Annotated[Path, typer.Option("--predictions", help="Files with a `reconstruction` dataset.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write one CSV row per volume (and the mean).")] = None,
    challenge: Annotated[
        str | None, typer.Option(metavar=choices(CHALLENGES),
                                 help="singlecoil (reconstruction_esc) or multicoil (reconstruction_rss).")
    ] = None,
    acquisition: Annotated[str | None, typer.Option(help="Only volumes of this acquisition, as fastMRI.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help=OVERWRITE_HELP)] = False,
) -> None:
    """fastMRI NMSE, PSNR and SSIM per volume and their mean (exactly as fastmri.evaluate)."""
    from ambientmri.evaluation.metrics import evaluate_folders, write_metrics_csv, write_metrics_json
    from ambientmri.outputs import json_with_keys, text_starting_with

    if challenge not in (None, "singlecoil", "multicoil"):
        raise ValueError(f"--challenge {challenge!r}: allowed: singlecoil, multicoil")
    check_file(json_out, "evaluate", "--json", overwrite, [targets, predictions, csv_out],
                json_with_keys("volumes", "mean"))
    check_file(csv_out, "evaluate", "--csv", overwrite, [targets, predictions, json_out],
                text_starting_with(b"volume,nmse,"))
    result = evaluate_folders(targets, predictions, challenge=challenge, acquisition=acquisition)
    table = Table(title=f"fastMRI metrics: {predictions} against {targets}")
    for col in ("volume", "NMSE", "PSNR (dB)", "SSIM"):
        table.add_column(col, justify="left" if col == "volume" else "right")
    for name, m in sorted(result["volumes"].items()):
        table.add_row(name, f"{m['nmse']:.4g}", f"{m['psnr']:.2f}", f"{m['ssim']:.4f}")
    mean = result["mean"]
    table.add_row("[bold]mean[/]", f"{mean['nmse']:.4g}", f"{mean['psnr']:.2f}", f"{mean['ssim']:.4f}")
    console.print(table)
    for note in result.get("notes", []):
        console.print(f"note: {note}", highlight=False)
    if json_out:
        write_metrics_json(result, json_out)
    if csv_out:
        write_metrics_csv(result, csv_out)


# ----------------------------------------------------------------------------------------------
# compare-samples
# ----------------------------------------------------------------------------------------------
def _magnitude_set(path: Path) -> Any:
    """Magnitude images (N, H, W) from a `sample` output folder, a .npy file, or fastMRI files' targets."""
    import h5py
    import numpy as np

    from ambientmri.data.fastmri import TARGET_NAMES, target_name
    from ambientmri.errors import InputError

    if path.is_dir() and (path / "samples.npy").is_file():
        path = path / "samples.npy"
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(path, f"not a readable .npy file ({type(exc).__name__})") from None
        return _checked_images(np.asarray(arr), path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.h5"))
    if not files:
        raise InputError(path, "no samples.npy and no fastMRI .h5 files here")
    images = []
    for f in files:
        try:
            with h5py.File(f, "r") as h:
                kspace = h.get("kspace")
                challenge = None if kspace is None else "singlecoil" if kspace.ndim == 3 else "multicoil"
                # fastMRI's target (ESC single-coil, RSS multi-coil), else a reconstruction's own dataset
                key = target_name(challenge, [k for k in TARGET_NAMES if k in h]) or (
                    "reconstruction" if "reconstruction" in h else None)
                if key is None:
                    raise InputError(f, "has no reconstruction_rss/_esc or reconstruction dataset")
                images.append(_checked_images(np.asarray(h[key]), f))
        except OSError:
            raise InputError(f, "not a readable HDF5 file") from None
    shape = min(i.shape[-2] for i in images), min(i.shape[-1] for i in images)
    from ambientmri.operators.fft import center_crop

    return np.concatenate([center_crop(i, shape) for i in images])


def _checked_images(arr: Any, path: Path) -> Any:
    """Magnitudes of ``(N, H, W)`` (or one ``(H, W)``) numeric images, as float32; else one InputError."""
    import numpy as np

    from ambientmri.errors import InputError

    if not (np.issubdtype(arr.dtype, np.number) and arr.dtype.kind in "iufc"):
        raise InputError(path, f"expected float or complex images, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0 or min(arr.shape[1:]) < 2:
        raise InputError(path, f"expected images shaped (N, H, W), got shape {tuple(arr.shape)}")
    mag = np.abs(arr).astype(np.float32)
    if not np.isfinite(mag).all():
        raise InputError(path, "contains NaN or Inf")
    return mag


@app.command("compare-samples")
@friendly
def compare_samples(
    samples: Annotated[Path, typer.Option("--samples", help="`ambientmri sample` output (or a .npy).")],
    reference: Annotated[Path, typer.Option("--reference", help="Held-out clean scans: fastMRI files or samples.")],
    store: Annotated[
        Path | None, typer.Option(help="The training store: enables the rarely-sampled k-space energy check.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the SWD's patches and projections.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON.")] = None,
    plot: Annotated[Path | None, typer.Option(
        help="Write a figure: generated beside held-out scans, radial spectra, rarely-sampled energy (PNG)."
    )] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help=OVERWRITE_HELP)] = False,
) -> None:
    """Compare generated scans with held-out clean scans (sample-set metrics, no pretrained weights).

    Prints a table and, under it, what each number means; --plot draws the sets and their spectra.
    """

    from ambientmri.evaluation.sampleset import explain_sampleset, sampleset_report
    from ambientmri.operators.fft import center_crop
    from ambientmri.outputs import json_with_keys
    from ambientmri.utils import write_json_atomic

    check_file(json_out, "compare-samples", "--json", overwrite, [samples, reference, store, plot],
                json_with_keys("num_generated", "swd"))
    check_file(plot, "compare-samples", "--plot", overwrite, [samples, reference, store, json_out], matplotlib_png)
    gen, ref = _magnitude_set(samples), _magnitude_set(reference)
    shape = min(gen.shape[-2], ref.shape[-2]), min(gen.shape[-1], ref.shape[-1])
    gen, ref = center_crop(gen, shape), center_crop(ref, shape)
    frequency = None
    if store is not None:
        from ambientmri.data.store import CorruptedStore

        st = CorruptedStore(store)
        if st.corruption.domain == "kspace" and tuple(st.grid) == shape:
            frequency = st.mask_frequency()
        else:
            console.print("note: the store's masks are not k-space masks on this image grid; energy check skipped")
        st.close()
    report = sampleset_report(gen, ref, train_mask_frequency=frequency, seed=seed)
    table = Table(title=f"{report['num_generated']} generated vs {report['num_reference']} reference scans")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("patch SWD (mean over pyramid levels)", f"{report['swd']['mean']:.4g}")
    table.add_row("radial power-spectrum distance", f"{report['radial_spectrum']['distance']:.4g}")
    z = report["zero_pixels"]
    table.add_row("pixels at zero: generated / reference", f"{z['generated']:.3%} / {z['reference']:.3%}"
                  + (" [red]flagged[/]" if z["flagged"] else ""))
    u = report.get("unmeasured_energy")
    if u:
        table.add_row("energy where training rarely sampled (gen/ref)", f"{u['ratio']:.3f}"
                      + (" [red]flagged[/]" if u["flagged"] else ""))
    console.print(table)
    for line in explain_sampleset(report):
        console.print(f"- {line}", highlight=False, soft_wrap=True, markup=False)
    if json_out:
        write_json_atomic(json_out, report)
    if plot:
        from ambientmri.evaluation.sampleset import radial_spectrum_distance
        from ambientmri.plotting import sampleset_figure

        sampleset_figure(plot, gen, ref, radial_spectrum_distance(gen, ref), report.get("unmeasured_energy"),
                         title=f"{report['num_generated']} generated vs {report['num_reference']} held-out scans")
        console.print(f"figure -> {plot}", highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------------------------
# audit
# ----------------------------------------------------------------------------------------------
@app.command()
@friendly
def audit(
    samples: Annotated[Path, typer.Option("--samples", help="Generated scans: `ambientmri sample` output or a .npy.")],
    train: Annotated[Path, typer.Option("--train", help="Training set: corrupted store, fastMRI, NIfTI or DICOM.")],
    heldout: Annotated[Path, typer.Option("--heldout", help="Real scans of subjects NOT in training (same kinds).")],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder: report.html, summary.json (new, or an earlier audit's).")
    ],
    quantile: Annotated[
        float,
        typer.Option(help="τ = this quantile of held-out top-1 similarities (needs 1/(1 − q) scans of each set)."),
    ] = 0.99,
    k: Annotated[int, typer.Option("--k", min=1, help="Nearest training scans reported per sample.")] = 3,
    no_controls: Annotated[
        bool, typer.Option(
            "--no-controls", metavar="", help="Skip the positive/negative controls (the verdict is inconclusive)."
        )
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the controls and the attack probe.")] = 0,
    run: Annotated[Path | None, typer.Option(help="The trained run or exported model, for the attack probe.")] = None,
    probe: Annotated[str | None, typer.Option(metavar=choices(PROBES), help="Attack probe (needs --run).")] = None,
    probe_fraction: Annotated[
        float | None, typer.Option(help="Fraction the probe keeps (default 0.1 of k-space, 0.9 of pixels).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help=OVERWRITE_HELP)] = False,
    search: Annotated[str, typer.Option(
        metavar=choices(SEARCHES), help="Score every pair (exhaustive), or only a fast search's best candidates "
        "(auto: candidates above 2000 training images / 256 store slices).",
    )] = "auto",
) -> None:
    """Memorization audit: are generated scans copies of training scans? -> OUT/report.html, OUT/summary.json.

    Exit 0: no evidence of memorization; 5: memorization detected; 4: inconclusive (a check failed).
    """
    from ambientmri.audit.run import run_audit

    with progress_bar() as progress:
        task = progress.add_task("audit", total=None)
        summary = run_audit(
            samples, train, heldout, out, quantile=quantile, k=k, controls=not no_controls, seed=seed,
            progress=lambda stage, done, total: progress.update(task, description=stage),
            run=run, probe=probe, probe_fraction=probe_fraction, overwrite=overwrite, search=search,
        )
    colour = {"no_evidence_of_memorization": "green", "memorization_detected": "red"}.get(summary["verdict"], "yellow")
    console.print(f"[bold {colour}]{summary['verdict_sentence']}[/]", highlight=False, soft_wrap=True)
    table = Table(title=f"memorization audit ({summary['space_label']})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    lo, hi = summary["ci95"]
    table.add_row("memorized fraction (95% CI)", f"{summary['memorized_fraction']:.1%} ({lo:.1%}–{hi:.1%})")
    table.add_row("threshold τ", f"{summary['threshold']:.4f}")
    table.add_row("Mann–Whitney p", f"{summary['p_value']:.3g}")
    table.add_row("training coverage", f"{summary['training_coverage']:.1%}")
    c = summary.get("controls")
    if c:
        for key, label in (("empirical_optimal_denoiser", "positive: optimal denoiser"),
                           ("perturbed_copies", "positive: perturbed copies")):
            mark = "" if c[key]["passed"] else " [red]below 95%[/]"
            table.add_row(label, f"{c[key]['flagged']:.1%}{mark}")
        neg = c["heldout_negative"]
        split = "n/a" if neg["flagged_split_half"] is None else f"{neg['flagged_split_half']:.1%}"
        table.add_row("negative: held-out (split-half)", split + ("" if neg["passed"] else " [red]above target[/]"))
    console.print(table)
    for f in summary["failed_controls"]:
        value = f["measured"] if f["measured"] is None or isinstance(f["measured"], int) else f"{f['measured']:.1%}"
        console.print(f"[yellow]failed:[/] {f['label']}: {value} (target {f['target']})", highlight=False)
    for fb in summary["fallbacks"]:
        console.print(f"fallback: {fb['used']} instead of {fb['instead_of']}", highlight=False, soft_wrap=True)
    console.print(f"[green]report[/] -> {out / 'report.html'} (verdict: {summary['verdict']})", highlight=False)
    if summary["verdict"] == "inconclusive":
        raise typer.Exit(EXIT_AUDIT_INCONCLUSIVE)
    if summary["verdict"] == "memorization_detected":
        raise typer.Exit(EXIT_MEMORIZATION_DETECTED)

