"""Error types raised at the library boundary.

The library raises these (they subclass :class:`ValueError`) with a message that names the file or
recipe key and the problem; the CLI turns them into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

from pathlib import Path


class AmbientError(ValueError):
    """Base class of every error ambientmri reports to users."""


class InputError(AmbientError):
    """A bad input file: unreadable, truncated, wrong layout, wrong dtype, NaN/Inf, ...

    Args:
        path: the offending file (or folder).
        problem: what is wrong with it, in a few words.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple:  # picklable across worker processes
        return (type(self), (self.path, self.problem))


class RecipeError(AmbientError):
    """An invalid recipe: unknown key, wrong value, inconsistent settings.

    Args:
        key: dotted path of the offending key (e.g. ``corruption.acceleration``), or the file.
        problem: what is wrong, including the allowed values where there is a finite set.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.key, self.problem))


class OutputError(AmbientError):
    """An output path a command may not write: it would delete, replace or overwrite something the
    command did not create (an input, a user's folder or file), or another process holds its lock.

    Args:
        path: the output file or folder.
        problem: why it is refused and what to do, in a few words.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.problem))


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message squeezed onto one line of at most ``limit`` characters."""
    return " ".join(str(exc).split())[:limit]
