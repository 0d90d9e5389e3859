"""The commands ``synth``, ``mask``, ``prepare``, ``check-corruption``: scans, masks, corrupted stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ambientmri.cli.common import (
    ANATOMIES,
    CHALLENGES,
    EXIT_CONDITION_VIOLATED,
    MASK_TYPE_NAMES,
    OVERWRITE_HELP,
    SPLITS,
    app,
    check_file,
    choices,
    console,
    friendly,
    mask_npy,
    matplotlib_png,
    progress_bar,
)


# ----------------------------------------------------------------------------------------------
# synth
# ----------------------------------------------------------------------------------------------
@app.command()
@friendly
def synth(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output folder for the fastMRI-format HDF5 files.")],
    challenge: Annotated[str, typer.Option(metavar=choices(CHALLENGES), help="The fastMRI challenge.")] = "multicoil",
    volumes: Annotated[int, typer.Option(min=1, help="Number of subjects (one volume each).")] = 4,
    slices: Annotated[int, typer.Option(min=1, help="Slices per volume.")] = 4,
    matrix: Annotated[tuple[int, int], typer.Option(help="k-space H W (H: 2x readout oversampling).")] = (128, 64),
    coils: Annotated[int, typer.Option(min=1, help="Coils (multicoil only).")] = 8,
    anatomy: Annotated[str, typer.Option(metavar=choices(ANATOMIES), help="The anatomy.")] = "brain",
    seed: Annotated[int, typer.Option(help="Seed of the cohort.")] = 0,
    snr_db: Annotated[float, typer.Option("--snr-db", help="Thermal noise SNR in dB.")] = 30.0,
    split: Annotated[str, typer.Option(metavar=choices(SPLITS), help="Naming of the subjects.")] = "train",
    overwrite: Annotated[
        bool, typer.Option(
            "--overwrite", metavar="", help="Replace existing files of the same names (refused by default)."
        )
    ] = False,
) -> None:
    """Write synthetic scans as fastMRI train/val HDF5 files."""
    from ambientmri.data.synth import synth_cohort

    paths = synth_cohort(
        out,
        challenge=challenge,
        volumes=volumes,
        slices=slices,
        matrix=tuple(matrix),
        coils=coils,
        anatomy=anatomy,
        seed=seed,
        snr_db=snr_db,
        split=split,
        overwrite=overwrite,
    )
    console.print(f"wrote {len(paths)} {challenge} {anatomy} volume(s) to {out}")


# ----------------------------------------------------------------------------------------------
# mask
# ----------------------------------------------------------------------------------------------
@app.command()
@friendly
def mask(
    type_: Annotated[
        str,
        typer.Option(
            "--type", metavar=choices(MASK_TYPE_NAMES), help="The mask family (fastMRI's, or a 2-D one)."
        ),
    ] = "random",
    shape: Annotated[tuple[int, int], typer.Option(help="k-space matrix H W.")] = (320, 320),
    center_fraction: Annotated[float, typer.Option(help="Fraction of central lines (or calib box side).")] = 0.08,
    acceleration: Annotated[float, typer.Option(help="Acceleration R.")] = 4.0,
    seed: Annotated[int, typer.Option(help="Integer seed.")] = 0,
    seed_file: Annotated[
        str | None, typer.Option(help="Seed like fastMRI's per-volume seeding: tuple(map(ord, NAME)).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output .npy file.")] = Path("mask.npy"),
    plot: Annotated[Path | None, typer.Option(help="Also draw the mask and its PSF to this PNG.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help=OVERWRITE_HELP)] = False,
) -> None:
    """Draw one sampling mask; fastMRI types give the same 1-D float32 array as fastMRI."""
    from ambientmri.operators.masks import MASK_TYPES, draw_mask
    from ambientmri.utils import save_npy_atomic

    if type_ not in MASK_TYPES:
        raise ValueError(f"--type {type_!r} is not a mask type; allowed: {', '.join(MASK_TYPES)}")
    check_file(out, "mask", "--out", overwrite, [plot], mask_npy)
    check_file(plot, "mask", "--plot", overwrite, [out], matplotlib_png)
    m, info = draw_mask(type_, shape, center_fraction=center_fraction, acceleration=acceleration, seed=seed,
                        seed_file=seed_file)
    save_npy_atomic(out, m)
    if plot is not None:
        from ambientmri.plotting import plot_mask

        plot_mask(m, plot, title=f"{type_}, R={acceleration:g}")
    console.print(f"{type_} mask: {info} -> {out}" + (f" (plot {plot})" if plot else ""))


# ----------------------------------------------------------------------------------------------
# prepare
# ----------------------------------------------------------------------------------------------
@app.command()
@friendly
def prepare(
    src: Annotated[Path, typer.Argument(
        metavar="SRC", help="fastMRI file/folder, NIfTI file/folder, or folder of DICOM series."
    )],
    out: Annotated[Path, typer.Option("--out", help="The corrupted store folder to write.")],
    recipe: Annotated[Path, typer.Option(
        "--recipe", help="Recipe YAML or built-in name (`ambientmri recipes`): data, corruption, prepare sections."
    )],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: a.b=value")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Processes preparing volumes in parallel (default: prepare.workers).")
    ] = None,
) -> None:
    """Raw scans -> corrupted store (measurements, masks, coil maps; never a clean image)."""
    from ambientmri.recipes import load_recipe

    rec = load_recipe(recipe, set_ or [])
    result = _prepare_with_progress(src, out, rec, workers=workers)
    _print_prepare(result)


def _prepare_with_progress(
    src: Path, out: Path, rec: Any, source_kind: str | None = None, workers: int | None = None
) -> Any:
    from ambientmri.data.store import prepare_store

    with progress_bar() as progress:
        task = progress.add_task("prepare", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return prepare_store(src, out, rec, progress=update, source_kind=source_kind, workers=workers)


def _print_prepare(result: Any) -> None:
    resumed = f", {result.skipped_volumes} volume(s) kept from an earlier run" if result.skipped_volumes else ""
    console.print(
        f"store {result.store}: {result.volumes} volume(s), {result.slices} slice(s) in "
        f"{result.seconds:.1f} s ({result.slices_per_second:.2f} slices/s){resumed}"
    )


@app.command("upgrade-store")
@friendly
def upgrade_store_command(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="A version-1 corrupted store (only read).")],
    out: Annotated[Path, typer.Option("--out", help="The new, compact (version 2) store folder.")],
) -> None:
    """Copy a version-1 store into the compact version 2 (seconds; no source files needed)."""
    from ambientmri.data.store import CorruptedStore
    from ambientmri.data.upgrade import upgrade_store

    path = upgrade_store(store, out)
    upgraded = CorruptedStore(path)
    slices = len(upgraded)
    upgraded.close()
    console.print(f"store {path}: version 2, {slices} slice(s); {store} is unchanged", highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------------------------
# check-corruption
# ----------------------------------------------------------------------------------------------
@app.command("check-corruption")
@friendly
def check_corruption(
    recipe: Annotated[Path, typer.Argument(
        metavar="RECIPE", help="Recipe YAML or built-in recipe name (`ambientmri recipes`)."
    )],
    shape: Annotated[tuple[int, int] | None, typer.Option(help="Image grid H W (default: from the recipe).")] = None,
    draws: Annotated[int, typer.Option(min=1, help="Monte Carlo draws of (A, Ã).")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the draws.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: a.b=value")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help=OVERWRITE_HELP)] = False,
) -> None:
    """Check the full-rank condition E[AᴴA | Ã] of a recipe's corruption (exit 3 if violated)."""
    from ambientmri.operators.condition import check_full_rank
    from ambientmri.outputs import json_with_keys
    from ambientmri.recipes import load_recipe
    from ambientmri.utils import write_json_atomic

    check_file(json_out, "check-corruption", "--json", overwrite, [recipe],
                json_with_keys("min_eigenvalue", "satisfied"))
    if shape is not None and min(shape) < 1:
        raise ValueError(f"--shape must be two positive sizes H W, got {shape[0]} {shape[1]}")
    from ambientmri.data.sources import recipe_grid

    rec = load_recipe(recipe, set_ or [])
    grid = recipe_grid(rec.data, shape)
    corruption = rec.corruption.build()
    n = grid[0] * grid[1]
    report = check_full_rank(
        corruption, grid, draws=draws, seed=seed, n=n, fixed_mask=rec.corruption.seed_mode == "fixed"
    )
    table = Table(title=f"full-rank condition: {corruption.describe()} on {grid[0]}x{grid[1]}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("smallest eigenvalue of E[AᴴA | Ã] (est.)", f"{report.min_eigenvalue:.4g}")
    table.add_row(f"{report.coordinates} never measured", f"{report.never_observed_fraction:.2%}")
    table.add_row(f"{report.coordinates} never supervised while hidden", f"{report.unsupervised_fraction:.2%}")
    more = report.draws != draws
    table.add_row("draws", f"{report.draws} ({draws} requested)" if more else str(report.draws))
    console.print(table)
    if more:
        why = (
            f"some {report.coordinates} were measured but never supervised in the first draws, so more were drawn "
            "(up to 8x) before calling them structural"
            if report.draws > draws
            else "the Gaussian check eigendecomposes every draw and stops at 64"
        )
        console.print(f"note: {report.draws} draws instead of the {draws} requested: {why}", highlight=False)
    colour = "green" if report.satisfied else "red"
    console.print(f"[{colour}]{report.message}[/]")
    if json_out:
        write_json_atomic(json_out, {**report.to_dict(), "draws_requested": draws})
    if not report.satisfied:
        raise typer.Exit(EXIT_CONDITION_VIOLATED)

