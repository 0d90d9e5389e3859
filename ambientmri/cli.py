"""The ``ambientmri`` command-line interface (typer + rich).

A thin layer: every command parses flags, calls the library, and shows progress. Library errors
(:class:`~ambientmri.errors.AmbientError`, ``ValueError``, ``FileNotFoundError``) become one line
on stderr and exit code 2 (1 for unexpected errors); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ambientmri import __version__

app = typer.Typer(
    name="ambientmri",
    help="Learn the distribution of clean MRI from corrupted scans only (Ambient Diffusion).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
_STATE: dict[str, bool] = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])

EXIT_BAD_INPUT = 2
EXIT_CONDITION_VIOLATED = 3
#: ``audit``: the verdict is ``inconclusive`` (a control failed, too few scans): never a pass.
EXIT_AUDIT_INCONCLUSIVE = 4
#: ``audit``: the verdict is ``memorization_detected`` (conclusive, but not a pass either).
EXIT_MEMORIZATION_DETECTED = 5
OVERWRITE_HELP = "Replace an existing output this command did not write (never an input)."


def _check_file(path: Path | None, command: str, option: str, overwrite: bool, inputs: list[Any],
                recognise: Any) -> None:
    """Refuse ``--json``/``--csv``/``--out`` files the command may not write, before any work."""
    if path is not None:
        from ambientmri.outputs import check_output_file

        check_output_file(path, command, inputs=inputs, overwrite=overwrite, recognise=recognise, option=option)


def _mask_npy(path: Path) -> bool:
    """An earlier ``ambientmri mask`` output: a 1-D or 2-D float32 array of zeros and ones."""
    import numpy as np

    arr = np.load(path, allow_pickle=False)
    return arr.dtype == np.float32 and arr.ndim in (1, 2) and bool(np.isin(arr, (0.0, 1.0)).all())


def _matplotlib_png(path: Path) -> bool:
    """A PNG written by matplotlib (an earlier ``--plot``)."""
    head = path.read_bytes()[:4096]
    return head.startswith(b"\x89PNG") and b"Matplotlib" in head



def _friendly(fn: F) -> F:
    """Turn library errors into one line on stderr and a non-zero exit (traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (ValueError, OSError, KeyError) as exc:
            if _STATE["debug"]:
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except FloatingPointError as exc:  # NaN/Inf in a model's output: not bad input, but no traceback either
            if _STATE["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/] (run the same command again to resume)")
            raise typer.Exit(130) from None
        except Exception as exc:  # unexpected: still one line unless --debug
            if _STATE["debug"]:
                raise
            err_console.print(
                f"[bold red]error:[/] unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"ambientmri {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """ambientmri: ambient diffusion for MRI from corrupted scans."""
    _STATE["debug"] = debug


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal and not sys.stdout.isatty(),
    )


# ----------------------------------------------------------------------------------------------
# synth
# ----------------------------------------------------------------------------------------------
@app.command()
@_friendly
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder for the fastMRI-format HDF5 files.")],
    challenge: Annotated[str, typer.Option(help="singlecoil or multicoil")] = "multicoil",
    volumes: Annotated[int, typer.Option(min=1, help="Number of subjects (one volume each).")] = 4,
    slices: Annotated[int, typer.Option(min=1, help="Slices per volume.")] = 4,
    matrix: Annotated[tuple[int, int], typer.Option(help="k-space H W (H: 2x readout oversampling).")] = (128, 64),
    coils: Annotated[int, typer.Option(min=1, help="Coils (multicoil only).")] = 8,
    anatomy: Annotated[str, typer.Option(help="brain or knee")] = "brain",
    seed: Annotated[int, typer.Option(help="Seed of the cohort.")] = 0,
    snr_db: Annotated[float, typer.Option("--snr-db", help="Thermal noise SNR in dB.")] = 30.0,
    split: Annotated[str, typer.Option(help="train or val (naming of subjects).")] = "train",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing files of the same names (refused by default).")
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
@_friendly
def mask(
    type_: Annotated[
        str,
        typer.Option(
            "--type", help="random, equispaced, equispaced_fraction, magic, magic_fraction, poisson, uniform2d"
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
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Draw one sampling mask; fastMRI types give the same 1-D float32 array as fastMRI."""
    import numpy as np

    from ambientmri.operators.masks import (
        CARTESIAN_MASK_TYPES,
        MASK_TYPES,
        cartesian_mask,
        poisson_mask,
        uniform_random_mask_2d,
    )
    from ambientmri.utils import fastmri_volume_seed, save_npy_atomic, stable_seed

    if type_ not in MASK_TYPES:
        raise ValueError(f"--type {type_!r} is not a mask type; allowed: {', '.join(MASK_TYPES)}")
    _check_file(out, "mask", "--out", overwrite, [plot], _mask_npy)
    _check_file(plot, "mask", "--plot", overwrite, [out], _matplotlib_png)
    h, w = shape
    seed_value: Any = fastmri_volume_seed(seed_file) if seed_file else seed
    if type_ in CARTESIAN_MASK_TYPES:
        m, num_low = cartesian_mask(type_, w, center_fraction, acceleration, seed_value)
        info = f"{int(m.sum())}/{w} lines ({num_low} central), R = {w / m.sum():.2f}"
    else:
        calib = (max(2, round(h * center_fraction)), max(2, round(w * center_fraction)))
        int_seed = stable_seed(seed_file) % 2**32 if seed_file else seed
        fn = poisson_mask if type_ == "poisson" else uniform_random_mask_2d
        m = fn((h, w), acceleration, calib=calib, seed=int_seed)
        info = f"{int(m.sum())}/{m.size} points, calib {calib[0]}x{calib[1]}, R = {m.size / m.sum():.2f}"
    m = np.asarray(m, dtype=np.float32)
    save_npy_atomic(out, m)
    if plot is not None:
        from ambientmri.plotting import plot_mask

        plot_mask(m, plot, title=f"{type_}, R={acceleration:g}")
    console.print(f"{type_} mask: {info} -> {out}" + (f" (plot {plot})" if plot else ""))


# ----------------------------------------------------------------------------------------------
# prepare
# ----------------------------------------------------------------------------------------------
@app.command()
@_friendly
def prepare(
    src: Annotated[Path, typer.Argument(help="fastMRI file/folder, NIfTI file/folder, or folder of DICOM series.")],
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

    with _progress() as progress:
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


# ----------------------------------------------------------------------------------------------
# check-corruption
# ----------------------------------------------------------------------------------------------
def _recipe_grid(rec: Any, shape: tuple[int, int] | None) -> tuple[int, int]:
    if shape:
        return (int(shape[0]), int(shape[1]))
    data = rec.data
    if data.crop:
        return (int(data.crop[0]), int(data.crop[1]))
    if data.kind == "synthetic":
        return (int(data.matrix[0]), int(data.matrix[1]))
    if data.path is not None:
        from ambientmri.data.sources import open_sources

        return open_sources(Path(data.path), data.kind)[0].shape
    raise ValueError("cannot tell the image size from the recipe: pass --shape H W or set data.crop")


@app.command("check-corruption")
@_friendly
def check_corruption(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML or built-in recipe name (`ambientmri recipes`).")],
    shape: Annotated[tuple[int, int] | None, typer.Option(help="Image grid H W (default: from the recipe).")] = None,
    draws: Annotated[int, typer.Option(min=1, help="Monte Carlo draws of (A, Ã).")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the draws.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: a.b=value")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Check the full-rank condition E[AᴴA | Ã] of a recipe's corruption (exit 3 if violated)."""
    from ambientmri.operators.condition import check_full_rank
    from ambientmri.outputs import json_with_keys
    from ambientmri.recipes import load_recipe
    from ambientmri.utils import write_json_atomic

    _check_file(json_out, "check-corruption", "--json", overwrite, [recipe],
                json_with_keys("min_eigenvalue", "satisfied"))
    if shape is not None and min(shape) < 1:
        raise ValueError(f"--shape must be two positive sizes H W, got {shape[0]} {shape[1]}")
    rec = load_recipe(recipe, set_ or [])
    grid = _recipe_grid(rec, shape)
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


# ----------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------
EXIT_INTERRUPTED = 130


def _describe_model(rec: Any) -> str:
    from ambientmri.models.factory import build_model

    try:
        grid = _recipe_grid(rec, None)
    except (ValueError, OSError):
        return f"model: {rec.model.kind} (image size known only once data.path is read)"
    model = build_model(rec.model, grid)
    params = sum(p.numel() for p in model.parameters())
    return f"model: {rec.model.kind} on {grid[0]}x{grid[1]} images, {params / 1e6:.2f} M parameters"


@app.command()
@_friendly
def train(
    recipe: Annotated[Path, typer.Argument(
        help="Recipe YAML or built-in recipe name (`ambientmri recipes`): data, corruption, prepare, model, training."
    )],
    out: Annotated[Path, typer.Option("--out", help="The run folder.")] = Path("run"),
    steps: Annotated[int | None, typer.Option(min=1, help="Train until this step (default: training.steps).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from last.pt.")] = False,
    log_every: Annotated[int | None, typer.Option(min=1, help="Log every K steps (default: log_every).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: a.b=value")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved recipe; train nothing.")] = False,
    init_from: Annotated[Path | None, typer.Option(
        "--init-from", help="Finetune from a run, checkpoint or exported model (its EMA weights)."
    )] = None,
    store: Annotated[
        Path | None, typer.Option("--store", help="A prepared corrupted store (same as --set training.store=...).")
    ] = None,
    heldout_store: Annotated[Path | None, typer.Option(
        "--heldout-store", help="A held-out store for evaluation (same as --set training.heldout_store=...)."
    )] = None,
) -> None:
    """Train a diffusion model on corrupted scans (torchrun-aware: DDP over processes)."""
    import os

    from ambientmri.recipes import dump_recipe, load_recipe
    from ambientmri.training.run import with_training

    rec = load_recipe(recipe, set_ or [])
    if steps is not None:
        rec = with_training(rec, steps=steps)
    if init_from is not None:
        rec = with_training(rec, init_from=init_from)
    if store is not None:
        rec = with_training(rec, store=store)
    if heldout_store is not None:
        rec = with_training(rec, heldout_store=heldout_store)
    if dry_run:
        description = _describe_model(rec)
        sys.stdout.write(dump_recipe(rec))
        err_console.print(f"[green]recipe is valid[/]; {description}", highlight=False)
        return

    from ambientmri.outputs import refuse_overlap
    from ambientmri.training.run import train_run
    from ambientmri.training.trainer import TrainingInterrupted

    own_recipe = recipe.resolve() == (out / "recipe.resolved.yaml").resolve()  # resuming with the run's own
    refuse_overlap(out, [] if own_recipe else [recipe], what="run folder (--out)")
    main_process = int(os.environ.get("RANK", "0")) == 0
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]} img/s"),
        TimeRemainingColumn(),
        console=console,
        disable=not main_process or (not console.is_terminal and not sys.stdout.isatty()),
    )
    task = progress.add_task("train", total=rec.training.steps, loss="-", speed="-")
    quiet_log = progress.disable and main_process

    def callback(event: str, data: dict[str, Any]) -> None:
        if event == "start":
            progress.update(task, completed=data["step"], total=data["steps"])
        elif event == "log":
            progress.update(task, completed=data["step"], loss=f"{data['loss']:.4g}",
                            speed=f"{data['images_per_second']:.1f}")
            if quiet_log:
                extra = "".join(f" {k}={v:.4g}" for k, v in data.items() if k.startswith("heldout_"))
                console.print(f"step {data['step']}: loss {data['loss']:.4g}, "
                              f"{data['images_per_second']:.1f} img/s{extra}", highlight=False)
        elif event == "eval" and not quiet_log:
            console.print("  held-out " + ", ".join(f"{k}={v:.4g}" for k, v in data.items() if k != "step"))

    def prepare_progress(done: int, total: int) -> None:
        pass

    try:
        with progress:
            result = train_run(rec, out, resume=resume, log_every=log_every, callback=callback,
                               prepare_progress=prepare_progress)
    except TrainingInterrupted as exc:
        err_console.print(f"[bold yellow]stopped:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except FloatingPointError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if main_process:
        loss = "n/a" if result.last_loss is None else f"{result.last_loss:.4g}"
        console.print(
            f"[green]trained[/] steps {result.start_step}->{result.step} in {result.seconds:.1f} s "
            f"({result.images_per_second:.1f} img/s), last loss {loss}; checkpoint {result.checkpoint}",
            highlight=False,
        )


# ----------------------------------------------------------------------------------------------
# sample
# ----------------------------------------------------------------------------------------------
@app.command()
@_friendly
def sample(
    run: Annotated[Path, typer.Argument(
        help="A run folder (its checkpoints/last.pt), a checkpoint file or an exported model folder."
    )],
    num: Annotated[int, typer.Option("--num", min=1, help="How many scans to generate.")] = 16,
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (new, or an earlier sample output, replaced as a whole).")
    ] = Path("samples"),
    seed: Annotated[int, typer.Option(help="Seed of the noise and of the masks Ã.")] = 0,
    steps: Annotated[int, typer.Option(min=1, help="Sampler steps (Heun: NFE = 2·steps − 1).")] = 18,
    sampler: Annotated[str, typer.Option(help="heun or euler")] = "heun",
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per network batch.")] = 8,
    churn: Annotated[float, typer.Option(min=0, help="EDM stochastic churn (0: deterministic ODE).")] = 0.0,
    sigma_max: Annotated[float, typer.Option(help="Largest noise level.")] = 80.0,
    sigma_min: Annotated[float, typer.Option(help="Smallest noise level.")] = 0.002,
    guidance_weight: Annotated[float, typer.Option(help="Reconstruction guidance weight w (ambient runs).")] = 0.0,
    guidance_masks: Annotated[int, typer.Option(min=0, help="Extra masks Ã_j for the guidance.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Generate scans from a trained run (ambient, clean or naive) -> complex HDF5/.npy, NIfTI, PNG grid."""
    import time

    from ambientmri.outputs import check_output_dir
    from ambientmri.sampling.generate import generate
    from ambientmri.sampling.outputs import earlier_samples, write_samples
    from ambientmri.sampling.runs import load_run
    from ambientmri.utils import resolve_device

    dev = resolve_device(device)
    check_output_dir(out, "sample", inputs=[run], overwrite=overwrite, recognise=earlier_samples)
    loaded = load_run(run, device=dev)
    protected = [run, loaded.path, loaded.checkpoint]
    check_output_dir(out, "sample", inputs=protected, overwrite=overwrite, recognise=earlier_samples)
    t0 = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("sample", total=None)
        x = generate(
            loaded, num, steps=steps, sampler=sampler, seed=seed, batch_size=batch_size, churn=churn,
            sigma_min=sigma_min, sigma_max=sigma_max, guidance_weight=guidance_weight,
            guidance_masks=guidance_masks, device=dev,
            callback=lambda done, total: progress.update(task, completed=done, total=total),
        )
    seconds = time.perf_counter() - t0
    nfe_per_sample = (2 * steps - 1) if sampler == "heun" else steps
    meta = {
        "run": str(loaded.path), "checkpoint": str(loaded.checkpoint), "step": loaded.step,
        "objective": loaded.objective, "num": num, "seed": seed, "steps": steps, "sampler": sampler,
        "churn": churn, "sigma_min": sigma_min, "sigma_max": sigma_max, "guidance_weight": guidance_weight,
        "guidance_masks": guidance_masks, "nfe_per_sample": nfe_per_sample, "seconds": round(seconds, 3),
        "checkpoint_hash": loaded.checkpoint_hash,
        "title": f"{loaded.recipe.name}: {loaded.objective} model, step {loaded.step}, seed {seed}",
    }
    write_samples(x.numpy(), out, meta, inputs=protected, overwrite=overwrite)
    console.print(f"[green]generated[/] {num} scan(s) in {seconds:.1f} s ({nfe_per_sample} NFE each) -> {out}",
                  highlight=False)


# ----------------------------------------------------------------------------------------------
# reconstruct
# ----------------------------------------------------------------------------------------------
@app.command()
@_friendly
def reconstruct(
    input_: Annotated[Path, typer.Argument(help="fastMRI file/folder, NIfTI file/folder, or folder of DICOM series.")],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (new, or an earlier reconstruct output; written at the end).")
    ],
    method: Annotated[str, typer.Option(help="a-os, a-dps, dps, ddrm, zero-filled, sense or l1-wavelet")],
    run: Annotated[Path | None, typer.Option(
        help="Trained run or exported model (needed by a-os, a-dps, dps, ddrm)."
    )] = None,
    recipe: Annotated[Path | None, typer.Option(
        help="Recipe (YAML or built-in name) for the mask and crop when no --run is given."
    )] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a key of --recipe: a.b=value")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Sampler steps (a-dps, dps: 100; ddrm: 20).")] = None,
    sigma: Annotated[float | None, typer.Option(help="a-os: the noise level the network is told.")] = None,
    mask_channel: Annotated[str, typer.Option(
        "--mask-channel", help="a-os: measured (the scan's own mask) or further (a training-type Ã ⊆ it)."
    )] = "measured",
    l_ss: Annotated[float, typer.Option("--l-ss", help="a-dps: data-consistency step size.")] = 1.0,
    zeta: Annotated[float, typer.Option(help="dps: data-consistency step size.")] = 1.0,
    num_samples: Annotated[int, typer.Option(min=1, help="a-dps: posterior samples averaged (+ std map).")] = 1,
    lam: Annotated[float | None, typer.Option(help="sense/l1-wavelet: regularisation weight.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler noise.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Slices per batch.")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    dicom: Annotated[bool, typer.Option("--dicom", help="Also write a DICOM series per volume.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Reconstruct undersampled scans -> fastMRI challenge-style HDF5 (+ NIfTI, PNG) per volume."""
    from ambientmri.recipes import load_recipe
    from ambientmri.sampling.reconstruct import METHODS, reconstruct_options
    from ambientmri.sampling.reconstruct import reconstruct as run_reconstruct
    from ambientmri.sampling.runs import load_run
    from ambientmri.utils import resolve_device

    if method not in METHODS:
        raise ValueError(f"--method {method!r}: allowed: {', '.join(METHODS)}")
    dev = resolve_device(device)
    from ambientmri.outputs import check_output_dir
    from ambientmri.sampling.reconstruct import earlier_reconstruction

    check_output_dir(out, "reconstruct", inputs=[input_, run, recipe], overwrite=overwrite,
                     recognise=earlier_reconstruction)
    loaded = load_run(run, device=dev) if run is not None else None
    rec = load_recipe(recipe, set_ or []) if recipe is not None else None
    options = reconstruct_options(method, seed=seed, steps=steps, sigma=sigma, mask_channel=mask_channel,
                                  l_ss=l_ss, zeta=zeta, num_samples=num_samples, lam=lam)
    with _progress() as progress:
        task = progress.add_task(method, total=None)
        summary = run_reconstruct(
            input_, out, method, run=loaded, recipe=rec, options=options, batch_size=batch_size, device=dev,
            dicom=dicom, progress=lambda done, total: progress.update(task, completed=done, total=total),
            overwrite=overwrite, inputs=(recipe,),
        )
    console.print(
        f"[green]reconstructed[/] {len(summary['volumes'])} volume(s), {summary['slices']} slice(s) with {method}: "
        f"NFE {summary['nfe_per_slice']} and {summary['seconds_per_slice']:.3f} s per slice -> {out}",
        highlight=False,
    )
    for warning in summary.get("warnings", []):
        err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------
@app.command()
@_friendly
def evaluate(
    targets: Annotated[Path, typer.Option("--targets", help="fastMRI train/val files (or one file) with targets.")],
    predictions: Annotated[Path, typer.Option("--predictions", help="Files with a `reconstruction` dataset.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write one CSV row per volume (and the mean).")] = None,
    challenge: Annotated[
        str | None, typer.Option(help="singlecoil (reconstruction_esc) or multicoil (reconstruction_rss).")
    ] = None,
    acquisition: Annotated[str | None, typer.Option(help="Only volumes of this acquisition, as fastMRI.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """fastMRI NMSE, PSNR and SSIM per volume and their mean (exactly as fastmri.evaluate)."""
    from ambientmri.evaluation.metrics import evaluate_folders, write_metrics_csv, write_metrics_json
    from ambientmri.outputs import json_with_keys, text_starting_with

    if challenge not in (None, "singlecoil", "multicoil"):
        raise ValueError(f"--challenge {challenge!r}: allowed: singlecoil, multicoil")
    _check_file(json_out, "evaluate", "--json", overwrite, [targets, predictions, csv_out],
                json_with_keys("volumes", "mean"))
    _check_file(csv_out, "evaluate", "--csv", overwrite, [targets, predictions, json_out],
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
                key = next((k for k in ("reconstruction_rss", "reconstruction_esc", "reconstruction") if k in h), None)
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
@_friendly
def compare_samples(
    samples: Annotated[Path, typer.Option("--samples", help="`ambientmri sample` output (or a .npy).")],
    reference: Annotated[Path, typer.Option("--reference", help="Held-out clean scans: fastMRI files or samples.")],
    store: Annotated[
        Path | None, typer.Option(help="The training store: enables the rarely-sampled k-space energy check.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the SWD's patches and projections.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Compare generated scans with held-out clean scans (sample-set metrics, no pretrained weights)."""

    from ambientmri.evaluation.sampleset import sampleset_report
    from ambientmri.operators.fft import center_crop
    from ambientmri.outputs import json_with_keys
    from ambientmri.utils import write_json_atomic

    _check_file(json_out, "compare-samples", "--json", overwrite, [samples, reference, store],
                json_with_keys("num_generated", "swd"))
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
    if json_out:
        write_json_atomic(json_out, report)


# ----------------------------------------------------------------------------------------------
# audit
# ----------------------------------------------------------------------------------------------
@app.command()
@_friendly
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
        bool, typer.Option("--no-controls", help="Skip the positive/negative controls (the verdict is inconclusive).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the controls and the attack probe.")] = 0,
    run: Annotated[Path | None, typer.Option(help="The trained run or exported model, for the attack probe.")] = None,
    probe: Annotated[str | None, typer.Option(help="Attack probe: kspace or pixels (needs --run).")] = None,
    probe_fraction: Annotated[
        float | None, typer.Option(help="Fraction the probe keeps (default 0.1 of k-space, 0.9 of pixels).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    search: Annotated[
        str,
        typer.Option(help="auto, exhaustive or candidates: score every pair, or only a fast search's best "
                     "candidates (auto: candidates above 2000 training images / 256 store slices)."),
    ] = "auto",
) -> None:
    """Memorization audit: are generated scans copies of training scans? -> OUT/report.html, OUT/summary.json.

    Exit 0: no evidence of memorization; 5: memorization detected; 4: inconclusive (a check failed).
    """
    from ambientmri.audit.run import run_audit

    with _progress() as progress:
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


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------
@app.command("export")
@_friendly
def export_command(
    run: Annotated[Path, typer.Argument(help="The trained run folder (its checkpoints/last.pt) or a checkpoint file.")],
    out: Annotated[Path, typer.Option("--out", help="The model folder to write (must be new or empty).")],
    audit_dir: Annotated[Path | None, typer.Option(
        "--audit", help="An `ambientmri audit` output folder, made from samples of this run."
    )] = None,
    evaluation: Annotated[Path | None, typer.Option(
        "--evaluation", help="Held-out metrics: the JSON that `ambientmri evaluate --json` writes."
    )] = None,
) -> None:
    """Export a trained run as one shareable model folder: EMA weights, recipe, model.json, MODEL_CARD.md."""
    from ambientmri.export import export_model

    result = export_model(run, out, audit=audit_dir, evaluation=evaluation)
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
@_friendly
def recipes_command(
    action: Annotated[str, typer.Argument(help="list (default) or show.")] = "list",
    name: Annotated[str | None, typer.Argument(help="show: the built-in recipe to print.")] = None,
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
@_friendly
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
                           seed=seed, console=console, progress_factory=_progress)
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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
