"""The ``ambientmri`` command-line interface (typer + rich).

A thin layer: every command parses flags, calls the library, and shows progress. Library errors
(:class:`~ambientmri.errors.AmbientError`, ``ValueError``, ``FileNotFoundError``) become one line
on stderr and exit code 2 (1 for unexpected errors); ``--debug`` shows the traceback instead.

The app and what every command shares live in :mod:`~ambientmri.cli.common`; the commands, in the
order of ``ambientmri --help``, in :mod:`~ambientmri.cli.data` (``synth``, ``mask``, ``prepare``,
``check-corruption``), :mod:`~ambientmri.cli.models` (``train``, ``sample``, ``reconstruct``),
:mod:`~ambientmri.cli.scoring` (``evaluate``, ``compare-samples``, ``audit``) and
:mod:`~ambientmri.cli.sharing` (``export``, ``recipes``, ``demo``).
"""

from ambientmri.cli import data, models, scoring, sharing  # noqa: F401  (registers the commands, in order)
from ambientmri.cli.common import (
    EXIT_AUDIT_INCONCLUSIVE,
    EXIT_BAD_INPUT,
    EXIT_CONDITION_VIOLATED,
    EXIT_MEMORIZATION_DETECTED,
    app,
    console,
    err_console,
    main,
)

__all__ = [
    "EXIT_AUDIT_INCONCLUSIVE",
    "EXIT_BAD_INPUT",
    "EXIT_CONDITION_VIOLATED",
    "EXIT_MEMORIZATION_DETECTED",
    "app",
    "console",
    "err_console",
    "main",
]
