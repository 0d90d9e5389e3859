"""The one guard every writer goes through: no command deletes or replaces what it did not create.

Rules (docs/troubleshooting.md, "Outputs and locks"):

* **Output folders** (``sample``, ``reconstruct``, ``audit`` ``--out``; :func:`output_dir`) are
  created new and appear only when complete. An existing folder is replaced only when it is empty,
  or when it is this same command's own earlier output (its marker file :data:`MARKER` names the
  command and lists the files it wrote, and the folder holds nothing else), or with
  ``--overwrite``. A path that is a file, the current folder or a folder above it is refused.
* **Output files** (``--json``, ``--csv``, ``mask --out``, ``--plot``; :func:`check_output_file`)
  are written new. An existing file is replaced only when it is recognisably this command's own
  earlier output (by content: a JSON object with the command's keys, a CSV with its header, ...),
  or with ``--overwrite``. A folder where a file is expected is refused.
* **Inputs are never outputs**: an output equal to, inside, or above any input (scan folder,
  store, run, recipe) is refused, even with ``--overwrite`` (:func:`refuse_overlap`).
* **One writer per run or store**: :func:`exclusive_lock` holds an OS lock (``fcntl.flock``) on
  :data:`LOCK_FILE` inside the folder; the OS releases it when the process dies.

Every refusal is an :class:`~ambientmri.errors.OutputError` (one line naming the path; the CLI exits
with code 2) raised before anything is written.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ambientmri.errors import OutputError

__all__ = [
    "LOCK_FILE",
    "MARKER",
    "check_output_dir",
    "check_output_file",
    "exclusive_lock",
    "json_with_keys",
    "output_dir",
    "refuse_overlap",
    "text_starting_with",
]

#: The marker file an output folder's command writes into it (``command``, ``files``).
MARKER = ".ambientmri-output.json"
#: The lock file of a run or store folder (it holds the PID of the process holding the lock).
LOCK_FILE = ".ambientmri.lock"

Recognise = Callable[[Path], bool]


def _resolve(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def refuse_overlap(out: str | Path, inputs: Iterable[str | Path | None], *, what: str = "output") -> None:
    """Refuse an output equal to, inside, or above any of ``inputs`` (None entries are skipped).

    Raises:
        OutputError: naming ``out`` and the input it would touch.
    """
    o = _resolve(out)
    for p in inputs:
        if p is None:
            continue
        r = _resolve(p)
        if o == r:
            raise OutputError(out, f"the {what} is the input {p}; choose another path (nothing was changed)")
        if r in o.parents:
            raise OutputError(out, f"the {what} is inside the input {p}; choose a path outside it "
                                   "(nothing was changed)")
        if o in r.parents:
            raise OutputError(out, f"the {what} would contain the input {p}; choose a path outside it "
                                   "(nothing was changed)")


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def check_output_dir(
    out: str | Path,
    command: str,
    *,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
    recognise: Recognise | None = None,
) -> bool:
    """Check that ``command`` may write (or replace) the output folder ``out``.

    Args:
        out: the output folder.
        command: the command's name (``sample``, ``reconstruct``, ...), recorded in :data:`MARKER`.
        inputs: every file or folder the command reads; ``out`` may not be, hold or lie in one.
        overwrite: replace an existing folder that is not this command's own output (``--overwrite``).
        recognise: recognises this command's output written before markers existed (no :data:`MARKER`).

    Returns:
        True if ``out`` exists and will be replaced, False if it is new.

    Raises:
        OutputError: when the folder may not be written (see the module docstring).
    """
    out = Path(out)
    refuse_overlap(out, inputs)
    if out.exists() and not out.is_dir():
        raise OutputError(out, "exists and is a file, not a folder; choose another --out (nothing was changed)")
    if out.is_symlink():
        raise OutputError(out, "is a symbolic link; name the folder itself as --out (nothing was changed)")
    resolved, cwd = _resolve(out), _resolve(Path.cwd())
    if resolved == cwd or resolved in cwd.parents or resolved == _resolve(Path.home()):
        raise OutputError(out, "is the current folder, a folder above it or the home folder; "
                               "name a new subfolder as --out (nothing was changed)")
    if not out.exists():
        return False
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return True
    marker = _read_marker(out)
    if marker is not None and marker.get("command") == command:
        own = {*map(str, marker.get("files") or []), MARKER}
        foreign = [e for e in entries if e not in own]
        if not foreign or overwrite:
            return True
        raise OutputError(out, f"holds {foreign[0]}, which an earlier `ambientmri {command}` did not write; "
                               "move it away or pass --overwrite to replace the whole folder (nothing was changed)")
    if overwrite or (marker is None and recognise is not None and recognise(out)):
        return True
    if marker is not None and marker.get("command"):
        raise OutputError(out, f"holds the output of `ambientmri {marker.get('command')}`, not of `ambientmri "
                               f"{command}`; choose another --out or pass --overwrite (nothing was changed)")
    raise OutputError(out, f"exists and is not an earlier `ambientmri {command}` output (it holds {entries[0]}); "
                           "choose another --out or pass --overwrite to replace it (nothing was changed)")


@contextlib.contextmanager
def output_dir(
    out: str | Path,
    command: str,
    *,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
    recognise: Recognise | None = None,
) -> Iterator[Path]:
    """Check ``out`` (:func:`check_output_dir`), yield a temporary folder, and move it onto ``out``
    only on success, with :data:`MARKER` listing what was written.

    The check runs again just before the final rename (the folder may have changed meanwhile). On
    error the temporary folder is removed and ``out`` is untouched. Stale temporaries of ``out``
    left by killed processes are removed first (:func:`ambientmri.utils.atomic_dir`).
    """
    from ambientmri import __version__
    from ambientmri.utils import atomic_dir, write_json_atomic

    inputs = [p for p in inputs if p is not None]
    check_output_dir(out, command, inputs=inputs, overwrite=overwrite, recognise=recognise)
    with atomic_dir(out, replace=True) as tmp:
        yield tmp
        files = sorted(p.name for p in tmp.iterdir() if p.name != MARKER)
        write_json_atomic(tmp / MARKER, {
            "ambientmri_output": 1, "command": command, "files": files, "ambientmri_version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        })
        check_output_dir(out, command, inputs=inputs, overwrite=overwrite, recognise=recognise)


def check_output_file(
    path: str | Path,
    command: str,
    *,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
    recognise: Recognise | None = None,
    option: str = "--out",
) -> Path:
    """Check that ``command`` may write the output file ``path`` (``--json``, ``--csv``, ...).

    Args:
        path: the output file.
        command: the command's name, for the message.
        inputs: every file or folder the command reads: ``path`` may not be, hold or lie in one.
        overwrite: replace an existing file that is not recognisably this command's output.
        recognise: True for an existing file this command wrote before (by content).
        option: the option's name, for the message.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: a folder, an input, or an existing file this command did not write.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, f"{option}: is a folder; give a file name (nothing was changed)")
    refuse_overlap(path, inputs, what=f"{option} file")
    if path.exists() and not overwrite and not (path.is_file() and recognise is not None and _safe(recognise, path)):
        raise OutputError(path, f"{option}: the file exists and was not written by `ambientmri {command}`; "
                                "choose another name or pass --overwrite (nothing was changed)")
    return path


def _safe(recognise: Recognise, path: Path) -> bool:
    try:
        return bool(recognise(path))
    except Exception:  # an unreadable file is simply not recognised
        return False


def json_with_keys(*keys: str) -> Recognise:
    """A recogniser: a JSON object (at most 64 MB) holding every one of ``keys``."""

    def recognise(path: Path) -> bool:
        if path.stat().st_size > 64 * 2**20:
            return False
        obj = json.loads(path.read_text(encoding="utf-8"))
        return isinstance(obj, dict) and all(k in obj for k in keys)

    return recognise


def text_starting_with(prefix: bytes) -> Recognise:
    """A recogniser: a file whose first bytes are ``prefix`` (a CSV header, a file signature)."""

    def recognise(path: Path) -> bool:
        with open(path, "rb") as fh:
            return fh.read(len(prefix)) == prefix

    return recognise


@contextlib.contextmanager
def exclusive_lock(folder: str | Path, *, what: str = "folder") -> Iterator[Path]:
    """Hold an exclusive OS lock on ``folder`` (which must exist) while the block runs.

    The lock is ``fcntl.flock`` on :data:`LOCK_FILE` inside ``folder``, which records the holder's
    PID; the OS releases it when the process ends, even on ``kill -9``, so a stale lock file never
    blocks anyone.

    Raises:
        OutputError: another process holds the lock (naming its PID).
    """
    folder = Path(folder)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise OutputError(folder, f"this {what} is in use by another ambientmri process (PID {holder}); "
                                      "wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
