"""One stage cache: fingerprinted, atomic, resumable pipeline stages.

The demo and the study both run a pipeline of stages (synthesize, prepare, train, sample,
reconstruct, evaluate, audit) and both want to skip what is already done. A stage is a folder
(or, for small results, a JSON value) together with a **fingerprint** of its inputs: the settings
it depends on and the fingerprints of the stages it reads. :class:`StageCache` is the one
implementation of that contract:

* :meth:`StageCache.run`: a stage written atomically (a temporary folder renamed at the end) with a
  ``stage.json`` recording the fingerprint and the stage's result; a rerun with the same fingerprint
  reuses it, one with another fingerprint redoes it. A stage that fails leaves no folder behind.
* :meth:`StageCache.resumable`: a long stage (training) that works in ``.NAME.partial/``; an
  interruption (Ctrl-C, :class:`~ambientmri.training.trainer.TrainingInterrupted`, a killed job)
  keeps the partial folder, and the next call with the same fingerprint resumes in it; success
  renames it to ``NAME``.
* :meth:`StageCache.value`: a small JSON result (a metric table) in ``ROOT/cache/KEY.json``.

Every stage holds an OS lock (``fcntl.flock`` on ``.NAME.lock`` beside the folder) while it runs,
so parallel jobs over the same root (the study's ``--jobs``) wait for each other instead of doing
the same work twice; the OS releases the lock of a process that dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ambientmri import __version__
from ambientmri.utils import atomic_dir, write_json_atomic

__all__ = ["PARTIAL_FILE", "STAGE_FILE", "StageCache", "fingerprint"]

#: the record of a finished stage, inside its folder
STAGE_FILE = "stage.json"
#: the record of an unfinished resumable stage, inside its ``.NAME.partial`` folder
PARTIAL_FILE = "stage.partial.json"

Log = Callable[[str], None]


def fingerprint(key: str, inputs: dict[str, Any]) -> str:
    """The fingerprint of stage ``key`` with ``inputs`` (and this package version): 16 hex digits."""
    blob = json.dumps({"stage": key, "ambientmri": __version__, **inputs}, sort_keys=True, default=str,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _read_record(path: Path, fp: str) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("fingerprint") == fp else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _is_interruption(exc: BaseException) -> bool:
    """An interruption a resumable stage can continue from (not a failure)."""
    from ambientmri.training.trainer import TrainingInterrupted

    return isinstance(exc, (TrainingInterrupted, KeyboardInterrupt))


class StageCache:
    """The stages of one pipeline output folder ``root``.

    Args:
        root: the output folder; stage folders are given as paths inside it.
        log: where "reusing ..." / "resuming ..." / "waiting ..." lines go (default: nowhere).

    ``stages`` maps each stage key used so far to ``{"folder", "fingerprint", "seconds", "reused"}``
    (the demo's ``summary.json`` records it).
    """

    def __init__(self, root: str | Path, *, log: Log | None = None) -> None:
        self.root = Path(root)
        self.log: Log = log or (lambda line: None)
        self.stages: dict[str, dict[str, Any]] = {}
        self._announced: set[tuple[str, str]] = set()

    def rel(self, path: Path) -> str:
        """``path`` relative to the root (as shown to users and recorded)."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def finished(self, folder: Path, fp: str) -> dict[str, Any] | None:
        """``folder``'s stage record if it records fingerprint ``fp``, else None."""
        return _read_record(folder / STAGE_FILE, fp)

    @contextlib.contextmanager
    def lock(self, folder: Path) -> Iterator[None]:
        """Hold the OS lock of stage ``folder``; wait (saying so) while another process holds it."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder.parent / f".{folder.name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.log(f"  waiting for another process to finish {self.rel(folder)}/")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _reuse(self, key: str, folder: Path, old: dict[str, Any], what: str | None = None) -> dict[str, Any]:
        if (key, old["fingerprint"]) not in self._announced:  # said once per stage
            self._announced.add((key, old["fingerprint"]))
            self.log(f"  reusing {self.rel(folder)}/ ({what + '; ' if what else ''}inputs unchanged, "
                     f"fingerprint {old['fingerprint']})")
        self.stages[key] = {"folder": self.rel(folder), "fingerprint": old["fingerprint"],
                            "seconds": old.get("seconds"), "reused": True}
        return old

    def _record(self, key: str, folder: Path, fp: str, inputs: dict[str, Any], seconds: float,
                result: dict[str, Any]) -> dict[str, Any]:
        self.stages[key] = {"folder": self.rel(folder), "fingerprint": fp, "seconds": seconds, "reused": False}
        return {"stage": key, "fingerprint": fp, "inputs": inputs, "seconds": seconds, "finished": _now(),
                "ambientmri_version": __version__, "result": result}

    def run(self, key: str, folder: Path, inputs: dict[str, Any], work: Callable[[Path], dict[str, Any]]
            ) -> dict[str, Any]:
        """Reuse ``folder`` if its fingerprint matches ``inputs``, else run ``work(tmp)`` into it atomically.

        ``work`` writes the stage's files into the temporary folder ``tmp`` and returns the stage's
        result (JSON-serialisable), stored in ``stage.json`` under ``"result"``. Returns the record.
        """
        fp = fingerprint(key, inputs)
        with self.lock(folder):
            old = self.finished(folder, fp)
            if old is not None:
                return self._reuse(key, folder, old)
            t = time.perf_counter()
            with atomic_dir(folder, replace=True) as tmp:  # a stage folder is this cache's own output
                result = work(tmp)
                record = self._record(key, folder, fp, inputs, round(time.perf_counter() - t, 2), result)
                write_json_atomic(tmp / STAGE_FILE, record)
        return record

    def resumable(
        self,
        key: str,
        folder: Path,
        inputs: dict[str, Any],
        work: Callable[[Path, bool], dict[str, Any]],
        *,
        can_resume: Callable[[Path], bool] = lambda partial: True,
        describe: Callable[[dict[str, Any]], str] | None = None,
    ) -> dict[str, Any]:
        """A long stage that survives interruptions: ``work(partial, resume)`` in ``.NAME.partial/``.

        ``resume`` is True when the partial folder was left by an interrupted call with the same
        fingerprint and ``can_resume(partial)`` agrees (for training: a last checkpoint exists);
        otherwise the partial folder is emptied first. An interruption keeps the partial folder
        (and the seconds spent so far); any other error removes it. On success the record is
        written into it and it is renamed to ``folder``. ``describe(old_result)`` adds a word to the
        "reusing" line.
        """
        fp = fingerprint(key, inputs)
        partial = folder.parent / f".{folder.name}.partial"
        with self.lock(folder):
            old = self.finished(folder, fp)
            if old is not None:
                return self._reuse(key, folder, old, describe(old["result"]) if describe else None)
            state = _read_record(partial / PARTIAL_FILE, fp)
            resume = state is not None and can_resume(partial)
            if not resume:
                shutil.rmtree(partial, ignore_errors=True)  # another fingerprint's or a failed start's
                partial.mkdir(parents=True)
                state = {"fingerprint": fp, "inputs": inputs, "seconds": 0.0}
                write_json_atomic(partial / PARTIAL_FILE, state)
            assert state is not None
            t = time.perf_counter()
            try:
                result = work(partial, resume)
            except BaseException as exc:
                if _is_interruption(exc) and partial.is_dir():
                    state["seconds"] = round(float(state.get("seconds", 0.0)) + time.perf_counter() - t, 2)
                    write_json_atomic(partial / PARTIAL_FILE, state)
                else:
                    shutil.rmtree(partial, ignore_errors=True)  # a failed stage leaves nothing behind
                raise
            seconds = round(float(state.get("seconds", 0.0)) + time.perf_counter() - t, 2)
            record = self._record(key, folder, fp, inputs, seconds, result)
            write_json_atomic(partial / STAGE_FILE, record)
            (partial / PARTIAL_FILE).unlink(missing_ok=True)
            if folder.exists():  # this cache's own stage of other inputs
                shutil.rmtree(folder)
            os.replace(partial, folder)
        return record

    def value(self, key: str, inputs: dict[str, Any], compute: Callable[[], Any]) -> Any:
        """A JSON value cached in ``ROOT/cache/KEY.json`` under the fingerprint of ``inputs``."""
        fp = fingerprint(key, inputs)
        path = self.root / "cache" / f"{key}.json"
        with self.lock(path):
            old = _read_record(path, fp)
            if old is not None:
                return old["value"]
            value = compute()
            write_json_atomic(path, {"fingerprint": fp, "value": value})
        return json.loads(json.dumps(value))  # what a reuse returns: the JSON round trip
