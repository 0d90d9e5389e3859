"""The commands ``train``, ``sample``, ``reconstruct``: training a model and using it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ambientmri.cli.common import (
    DC_STEPS,
    DEVICES,
    EXIT_INTERRUPTED,
    MASK_CHANNELS,
    OVERWRITE_HELP,
    RECONSTRUCT_METHODS,
    SAMPLERS,
    app,
    choices,
    console,
    err_console,
    friendly,
    progress_bar,
)

# ----------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------


def _describe_model(rec: Any) -> str:
    from ambientmri.data.sources import recipe_grid
    from ambientmri.models.factory import build_model

    try:
        grid = recipe_grid(rec.data)
    except (ValueError, OSError):
        return f"model: {rec.model.kind} (image size known only once data.path is read)"
    model = build_model(rec.model, grid)
    params = sum(p.numel() for p in model.parameters())
    return f"model: {rec.model.kind} on {grid[0]}x{grid[1]} images, {params / 1e6:.2f} M parameters"


def _train_progress(steps: int, main_process: bool) -> tuple[Progress, Callable[[str, dict[str, Any]], None]]:
    """The progress bar of ``train`` (loss, speed, elapsed, remaining from the first logged window) and
    the trainer callback that drives it; without a terminal, one unwrapped log line per logged window."""
    from ambientmri.training.progress import TrainClock, format_duration

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]} img/s"),
        TimeElapsedColumn(),
        TextColumn("remaining {task.fields[remaining]}"),
        console=console,
        disable=not main_process or (not console.is_terminal and not sys.stdout.isatty()),
    )
    clock = TrainClock(total=steps)
    task = progress.add_task("train", total=steps, loss="-", speed="-", remaining=format_duration(None))
    quiet_log = progress.disable and main_process

    def callback(event: str, data: dict[str, Any]) -> None:
        if event == "start":
            clock.start(data["step"], data["steps"])
            progress.update(task, completed=data["step"], total=data["steps"])
        elif event == "log":
            clock.log(data["step"], data.get("seconds"))
            progress.update(task, completed=data["step"], loss=f"{data['loss']:.4g}",
                            speed=f"{data['images_per_second']:.1f}", remaining=format_duration(clock.remaining))
            if quiet_log:
                extra = "".join(f" {k}={v:.4g}" for k, v in data.items() if k.startswith("heldout_"))
                console.print(f"step {data['step']}/{clock.total}: loss {data['loss']:.4g}, "
                              f"{data['images_per_second']:.1f} img/s, {clock.describe()}{extra}",
                              highlight=False, soft_wrap=True)
        elif event == "eval" and not quiet_log:
            console.print("  held-out " + ", ".join(f"{k}={v:.4g}" for k, v in data.items() if k != "step"),
                          highlight=False, soft_wrap=True)

    return progress, callback


@app.command()
@friendly
def train(
    recipe: Annotated[Path, typer.Argument(metavar="RECIPE",
        help="Recipe YAML or built-in recipe name (`ambientmri recipes`): data, corruption, prepare, model, training."
    )],
    out: Annotated[Path, typer.Option("--out", help="The run folder.")] = Path("run"),
    steps: Annotated[int | None, typer.Option(min=1, help="Train until this step (default: training.steps).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", metavar="", help="Continue the run in --out from last.pt."
    )] = False,
    log_every: Annotated[int | None, typer.Option(min=1, help="Log every K steps (default: log_every).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: a.b=value")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", metavar="", help="Print the resolved recipe; train nothing."
    )] = False,
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
    progress, callback = _train_progress(rec.training.steps, main_process)

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
            highlight=False, soft_wrap=True,
        )


# ----------------------------------------------------------------------------------------------
# sample
# ----------------------------------------------------------------------------------------------
@app.command()
@friendly
def sample(
    run: Annotated[Path, typer.Argument(metavar="RUN",
        help="A run folder (its checkpoints/last.pt), a checkpoint file or an exported model folder."
    )],
    num: Annotated[int, typer.Option("--num", min=1, help="How many scans to generate.")] = 16,
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (new, or an earlier sample output, replaced as a whole).")
    ] = Path("samples"),
    seed: Annotated[int, typer.Option(help="Seed of the noise and of the masks Ã.")] = 0,
    steps: Annotated[int, typer.Option(min=1, help="Sampler steps (Heun: NFE = 2·steps − 1).")] = 18,
    sampler: Annotated[str, typer.Option(metavar=choices(SAMPLERS), help="EDM's Heun or Euler steps.")] = "heun",
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per network batch.")] = 8,
    churn: Annotated[float, typer.Option(min=0, help="EDM stochastic churn (0: deterministic ODE).")] = 0.0,
    sigma_max: Annotated[float, typer.Option(help="Largest noise level.")] = 80.0,
    sigma_min: Annotated[float, typer.Option(help="Smallest noise level.")] = 0.002,
    guidance_weight: Annotated[float, typer.Option(help="Reconstruction guidance weight w (ambient runs).")] = 0.0,
    guidance_masks: Annotated[int, typer.Option(min=0, help="Extra masks Ã_j for the guidance.")] = 0,
    device: Annotated[str, typer.Option(metavar=choices(DEVICES), help="Where to run.")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help=OVERWRITE_HELP)] = False,
) -> None:
    """Generate scans from a trained run (ambient, clean or naive) -> complex HDF5/.npy, NIfTI, PNG grid."""
    from ambientmri.outputs import check_output_dir
    from ambientmri.sampling.outputs import earlier_samples
    from ambientmri.sampling.runs import load_run
    from ambientmri.utils import resolve_device
    from ambientmri.workflows.sample import sample_scans, write_sample_run

    dev = resolve_device(device)
    check_output_dir(out, "sample", inputs=[run], overwrite=overwrite, recognise=earlier_samples)
    loaded = load_run(run, device=dev)
    protected = [run, loaded.path, loaded.checkpoint]
    check_output_dir(out, "sample", inputs=protected, overwrite=overwrite, recognise=earlier_samples)
    with progress_bar() as progress:
        task = progress.add_task("sample", total=None)
        result = sample_scans(
            loaded, num, steps=steps, sampler=sampler, seed=seed, batch_size=batch_size, churn=churn,
            sigma_min=sigma_min, sigma_max=sigma_max, guidance_weight=guidance_weight,
            guidance_masks=guidance_masks, device=dev,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    write_sample_run(result, out, inputs=protected, overwrite=overwrite)
    console.print(f"[green]generated[/] {num} scan(s) in {result.seconds:.1f} s ({result.nfe_per_sample} NFE each) "
                  f"-> {out}", highlight=False)


# ----------------------------------------------------------------------------------------------
# reconstruct
# ----------------------------------------------------------------------------------------------
@app.command()
@friendly
def reconstruct(
    input_: Annotated[Path, typer.Argument(
        metavar="INPUT", help="fastMRI file/folder, NIfTI file/folder, or folder of DICOM series."
    )],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (new, or an earlier reconstruct output; written at the end).")
    ],
    method: Annotated[str, typer.Option(
        metavar=choices(RECONSTRUCT_METHODS), help="The method (a-os, a-dps, dps, ddrm need --run)."
    )],
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
        "--mask-channel", metavar=choices(MASK_CHANNELS),
        help="a-os: measured (the scan's own mask) or further (a training-type Ã ⊆ it).",
    )] = "measured",
    l_ss: Annotated[float | None, typer.Option(
        "--l-ss", help="a-dps: data-consistency step size (default: the method's, see docs/sampling.md)."
    )] = None,
    zeta: Annotated[float | None, typer.Option(
        help="dps: data-consistency step size (default: the method's, see docs/sampling.md)."
    )] = None,
    dc_step: Annotated[str | None, typer.Option(
        "--dc-step", metavar=choices(DC_STEPS),
        help="a-dps, dps: relative (the step size is a fraction of the least-squares step: one value for every "
        "image size and coil count) or fixed (the papers' normalised step of about that length).",
    )] = None,
    num_samples: Annotated[int, typer.Option(min=1, help="a-dps: posterior samples averaged (+ std map).")] = 1,
    lam: Annotated[float | None, typer.Option(help="sense/l1-wavelet: regularisation weight.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler noise.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Slices per batch.")] = 8,
    device: Annotated[str, typer.Option(metavar=choices(DEVICES), help="Where to run.")] = "auto",
    dicom: Annotated[bool, typer.Option(
        "--dicom/--no-dicom", metavar="", help="Also write a DICOM series per volume (previews/NAME_dicom/)."
    )] = False,
    nifti: Annotated[bool, typer.Option(
        "--nifti/--no-nifti", metavar="", help="Also write previews/NAME.nii.gz per volume."
    )] = True,
    previews: Annotated[bool, typer.Option(
        "--previews/--no-previews", metavar="", help="Write previews/NAME.png (a few slices: input, result, error)."
    )] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help=OVERWRITE_HELP)] = False,
) -> None:
    """Reconstruct undersampled scans -> OUT/NAME.h5 as the fastMRI challenge expects; OUT/previews/: PNG, NIfTI."""
    from ambientmri.recipes import load_recipe
    from ambientmri.sampling.methods import METHODS, method_config
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
    config = method_config(method, seed=seed, steps=steps, sigma=sigma, mask_channel=mask_channel,
                           l_ss=l_ss, zeta=zeta, num_samples=num_samples, lam=lam, dc_step=dc_step)
    with progress_bar() as progress:
        task = progress.add_task(method, total=None)
        summary = run_reconstruct(
            input_, out, method, run=loaded, recipe=rec, config=config, batch_size=batch_size, device=dev,
            dicom=dicom, nifti=nifti, previews=previews,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
            overwrite=overwrite, inputs=(recipe,),
        )
    console.print(
        f"[green]reconstructed[/] {len(summary['volumes'])} volume(s), {summary['slices']} slice(s) with {method}: "
        f"NFE {summary['nfe_per_slice']} and {summary['seconds_per_slice']:.3f} s per slice -> {out}",
        highlight=False,
    )
    for warning in summary.get("warnings", []):
        err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)

