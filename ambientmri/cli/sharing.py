"""The commands ``export``, ``recipes``, ``demo``: sharing a model, finding recipes, the whole pipeline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ambientmri.cli.common import (
    EXIT_INTERRUPTED,
    OVERWRITE_HELP,
    app,
    console,
    err_console,
    friendly,
    progress_bar,
)


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------
@app.command("export")
@friendly
def export_command(
    run: Annotated[Path, typer.Argument(
        metavar="RUN", help="The trained run folder (its checkpoints/last.pt) or a checkpoint file."
    )],
    out: Annotated[Path, typer.Option("--out", help="The model folder to write (new, empty, or an earlier export).")],
    audit_dir: Annotated[Path | None, typer.Option(
        "--audit", help="An `ambientmri audit` output folder, made from samples of this run."
    )] = None,
    evaluation: Annotated[Path | None, typer.Option(
        "--evaluation", help="Held-out metrics: the JSON that `ambientmri evaluate --json` writes."
    )] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help=OVERWRITE_HELP)] = False,
) -> None:
    """Export a trained run as one shareable model folder: EMA weights, recipe, model.json, MODEL_CARD.md."""
    from ambientmri.export import export_model

    result = export_model(run, out, audit=audit_dir, evaluation=evaluation, overwrite=overwrite)
    audit_text = "audit attached" if result["audit"] else "audit: none"
    console.print(
        f"[green]exported[/] {result['name']} (step {result['step']}, {audit_text}) -> {out}; "
        f"weights sha256 {result['weights']['sha256'][:16]}…, card {out / 'MODEL_CARD.md'}",
        highlight=False, soft_wrap=True,
    )


# ----------------------------------------------------------------------------------------------
# recipes
# ----------------------------------------------------------------------------------------------
@app.command("recipes")
@friendly
def recipes_command(
    action: Annotated[str, typer.Argument(metavar="[list|show]", help="list (default) or show.")] = "list",
    name: Annotated[str | None, typer.Argument(metavar="NAME", help="show: the built-in recipe to print.")] = None,
) -> None:
    """List the built-in recipes, or print one to copy and edit (`ambientmri recipes show demo > my.yaml`).

    Wherever a recipe path is accepted, a built-in recipe's name works too: `ambientmri train demo --out RUN`.
    """
    from ambientmri.recipes import builtin_recipe_names, builtin_recipe_summary, resolve_builtin_recipe

    if action == "list":
        if name is not None:
            raise ValueError(f"recipes list takes no name (got {name!r}); to print one: ambientmri recipes show NAME")
        names = builtin_recipe_names()
        width = max(len(n) for n in names)
        for n in names:
            console.print(f"{n:<{width}}  {builtin_recipe_summary(n)}", highlight=False, soft_wrap=True,
                          markup=False)
        return
    if action != "show":
        raise ValueError(f"recipes {action!r}: allowed: list, show")
    if not name:
        raise ValueError("recipes show needs a NAME; ambientmri recipes lists them")
    sys.stdout.write(resolve_builtin_recipe(name).read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------
# demo
# ----------------------------------------------------------------------------------------------
@app.command()
@friendly
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder (an earlier demo's is reused).")] = Path("demo"),
    recipe: Annotated[Path | None, typer.Option(
        help="Recipe YAML or built-in name (default: the built-in demo recipe)."
    )] = None,
    minutes: Annotated[
        float | None, typer.Option(help="Budget of the whole demo in minutes; sets the training steps (default 10).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Train exactly this many steps (deterministic; overrides --minutes).")
    ] = None,
    samples: Annotated[int, typer.Option(min=2, help="How many scans to generate.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the generated scans, A-DPS and the audit.")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: a.b=value")] = None,
) -> None:
    """Run the whole pipeline on synthetic scans on a CPU -> OUT/index.html and OUT/summary.json."""
    from ambientmri.demo import run_demo
    from ambientmri.training.trainer import TrainingInterrupted

    try:
        summary = run_demo(out, recipe=recipe, overrides=set_ or [], minutes=minutes, steps=steps, samples=samples,
                           seed=seed, console=console, progress_factory=progress_bar)
    except TrainingInterrupted as exc:
        err_console.print(f"[bold yellow]stopped:[/] training interrupted at step {exc.step}; run the same demo "
                          f"command again to resume from {exc.checkpoint}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    _print_demo(summary)
    console.print(f"[green]demo finished[/] in {summary['seconds']:.1f} s: open {out / 'index.html'}", highlight=False)


def _print_demo(summary: dict[str, Any]) -> None:
    table = Table(title=f"restoration of the held-out scans ({summary['training']['steps']} training steps)")
    for col in ("method", "PSNR (dB)", "SSIM", "NMSE", "NFE", "s/slice"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for method, r in summary["restoration"].items():
        table.add_row(method, f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['nmse']:.4f}", str(r["nfe"]),
                      f"{r['seconds_per_slice']:.3f}")
    console.print(table)
    table = Table(title="sample-set metrics against the held-out clean scans")
    for col in ("scan set", "patch SWD", "spectrum distance"):
        table.add_column(col, justify="left" if col == "scan set" else "right")
    for name, r in summary["sampleset"].items():
        table.add_row(name, f"{r['swd']:.4g}", f"{r['radial_spectrum_distance']:.4g}")
    console.print(table)
    a = summary["audit"]
    console.print(f"memorization audit: {a['memorized_fraction']:.1%} of {a['n_samples']} generated scans flagged "
                  f"(95% CI {a['ci95'][0]:.1%}–{a['ci95'][1]:.1%}); verdict {a['verdict']}; report {a['report']}",
                  highlight=False)
