"""What every command of the CLI shares: the typer app, the consoles, the exit codes, the fixed value
sets of options, the error wrapper :func:`friendly` and the progress bar."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

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
STATE: dict[str, bool] = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])

EXIT_BAD_INPUT = 2
EXIT_CONDITION_VIOLATED = 3
#: ``audit``: the verdict is ``inconclusive`` (a control failed, too few scans): never a pass.
EXIT_AUDIT_INCONCLUSIVE = 4
#: ``audit``: the verdict is ``memorization_detected`` (conclusive, but not a pass either).
EXIT_MEMORIZATION_DETECTED = 5
#: ``train`` or ``demo`` stopped (Ctrl-C, SIGTERM) after saving a checkpoint to resume from.
EXIT_INTERRUPTED = 130
# the fixed value sets of options, shown in the help as `[a|b|c]` (the commands check them themselves,
# with one-line errors; tests/test_cli_help.py checks the lists against the library's)
CHALLENGES = ("singlecoil", "multicoil")
ANATOMIES = ("brain", "knee")
SPLITS = ("train", "val", "test", "challenge")
MASK_TYPE_NAMES = ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction", "poisson", "uniform2d")
SAMPLERS = ("heun", "euler")
DEVICES = ("auto", "cpu", "cuda")
RECONSTRUCT_METHODS = ("a-os", "a-dps", "dps", "ddrm", "zero-filled", "sense", "l1-wavelet")
MASK_CHANNELS = ("measured", "further")
DC_STEPS = ("relative", "fixed")
PROBES = ("kspace", "pixels")
SEARCHES = ("auto", "exhaustive", "candidates")


def choices(values: tuple[str, ...]) -> str:
    """The metavar of an option with a fixed set of values: ``[a|b|c]``."""
    return "[" + "|".join(values) + "]"


OVERWRITE_HELP = "Replace an existing output this command did not write (never an input)."


def check_file(path: Path | None, command: str, option: str, overwrite: bool, inputs: list[Any],
                recognise: Any) -> None:
    """Refuse ``--json``/``--csv``/``--out`` files the command may not write, before any work."""
    if path is not None:
        from ambientmri.outputs import check_output_file

        check_output_file(path, command, inputs=inputs, overwrite=overwrite, recognise=recognise, option=option)


def mask_npy(path: Path) -> bool:
    """An earlier ``ambientmri mask`` output: a 1-D or 2-D float32 array of zeros and ones."""
    import numpy as np

    arr = np.load(path, allow_pickle=False)
    return arr.dtype == np.float32 and arr.ndim in (1, 2) and bool(np.isin(arr, (0.0, 1.0)).all())


def matplotlib_png(path: Path) -> bool:
    """A PNG written by matplotlib (an earlier ``--plot``)."""
    head = path.read_bytes()[:4096]
    return head.startswith(b"\x89PNG") and b"Matplotlib" in head



def friendly(fn: F) -> F:
    """Turn library errors into one line on stderr and a non-zero exit (traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (ValueError, OSError, KeyError) as exc:
            if STATE["debug"]:
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except FloatingPointError as exc:  # NaN/Inf in a model's output: not bad input, but no traceback either
            if STATE["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/] (run the same command again to resume)")
            raise typer.Exit(130) from None
        except Exception as exc:  # unexpected: still one line unless --debug
            if STATE["debug"]:
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
    debug: Annotated[bool, typer.Option(
        "--debug", metavar="", help="Show tracebacks instead of one-line errors."
    )] = False,
    version: Annotated[
        bool, typer.Option("--version", metavar="", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """ambientmri: ambient diffusion for MRI from corrupted scans."""
    STATE["debug"] = debug


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal and not sys.stdout.isatty(),
    )



def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
