"""Small shared helpers: atomic writes and deterministic seeds."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary file lives in the same folder (same file system), so the final ``os.replace`` is
    atomic: readers see either the old file or the complete new one, never a partial write. On error
    the temporary file is removed and ``path`` is untouched. It is named ``.NAME.HOST-PID.XXXXXXXX.tmp``
    after its process, and the temporaries of ``path`` left by dead processes of this machine (a
    killed ``--json`` write) are removed first (:func:`clean_stale_temporaries`).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner_tag()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it onto ``path`` only on success.

    The temporary folder is named ``.NAME.HOST-PID.XXXXXXXX.tmp`` after the process that owns it;
    temporaries of ``path`` left by processes of this machine that no longer run (``kill -9``, a
    power cut) are removed first (:func:`clean_stale_temporaries`). On error the temporary folder
    is removed and ``path`` is untouched.

    Args:
        path: the folder to create.
        replace: replace an existing ``path`` (the caller has checked that it may, see
            :func:`ambientmri.outputs.check_output_dir`). Without it an existing folder that is not
            empty raises :class:`FileExistsError`; an existing file always raises
            :class:`FileExistsError` (it is never renamed away).
    """
    path = Path(path)
    _check_replaceable(path, replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_owner_tag()}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        _check_replaceable(path, replace)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_owner_tag()}.", suffix=".old", dir=path.parent))
            os.replace(path, old)  # onto an empty folder: allowed
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_replaceable(path: Path, replace: bool) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise FileExistsError(f"{path}: exists and is not a folder; choose another name (nothing was changed)")
    if not replace and path.is_dir() and any(path.iterdir()):
        raise FileExistsError(f"{path}: the folder exists and is not empty; nothing was changed")


def _owner_tag() -> str:
    """``HOST-PID`` of this process (HOST: 6 hex digits of the host name)."""
    host = hashlib.sha256(socket.gethostname().encode("utf-8")).hexdigest()[:6]
    return f"{host}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


#: A temporary of :func:`atomic_dir` written before its names carried the owner (no PID to check):
#: removed once it is this old.
LEGACY_TEMPORARY_AGE_S = 24 * 3600


def clean_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the stale temporaries of :func:`atomic_dir` and :func:`atomic_path` for ``path``; return
    what was removed.

    Only folders (or, for ``.tmp``, files) beside ``path`` named exactly as :func:`atomic_dir` and
    :func:`atomic_path` name them for ``path``
    (``.NAME.HOST-PID.XXXXXXXX.tmp``, or ``.old`` once ``path`` exists again) whose HOST is this
    machine and whose PID no longer runs, and ``.NAME.XXXXXXXX.tmp`` folders of older versions more
    than a day old. Anything else, including another live process's temporaries, is left alone.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    host = _owner_tag().split("-")[0]
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.(?:([0-9a-f]{6})-(\d+)\.)?[a-z0-9_]{8}\.(tmp|old)$")
    removed = []
    for entry in path.parent.iterdir():
        m = pattern.match(entry.name)
        if m is None or entry.is_symlink() or not (entry.is_dir() or (entry.is_file() and m.group(3) == "tmp")):
            continue
        if m.group(1) is None:
            stale = m.group(3) == "tmp" and time.time() - entry.stat().st_mtime > LEGACY_TEMPORARY_AGE_S
        else:
            stale = m.group(1) == host and int(m.group(2)) != os.getpid() and not _pid_alive(int(m.group(2)))
            if m.group(3) == "old" and not path.exists():  # killed between the two renames: the only copy
                stale = False
        if stale:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def stable_seed(*parts: str | int) -> int:
    """A 63-bit seed derived deterministically from ``parts`` (file names, slice indices, tags).

    Unlike Python's ``hash`` it does not change between processes.
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def further_key_seed(*key: str | int) -> tuple[int]:
    """The seed of a fixed further corruption ``Ã`` keyed by ``key``: ``(stable_seed(*key, "further") % 2³²,)``.

    The one derivation of ``Ã``'s seed from a key that identifies the draw: a store slice
    (:func:`ambientmri.data.store.further_seed`), a draw of the full-rank check
    (:mod:`ambientmri.operators.condition`, :func:`ambientmri.operators.weighting.balance_map`),
    a generated sample (:func:`ambientmri.sampling.generate.generation_masks`). Per-step and per-slice
    redraws during training use :func:`ambientmri.operators.weighting.further_draw_seed` and
    ``further_slice_seed``, which key by step and draw.

    Returns:
        A one-element tuple (what :meth:`Corruption.further_mask` takes as its seed).
    """
    return (stable_seed(*key, "further") % 2**32,)


def numpy_rng(*parts: str | int) -> np.random.Generator:
    """A fresh :class:`numpy.random.Generator` seeded by :func:`stable_seed` of ``parts``."""
    return np.random.default_rng(stable_seed(*parts))


def fastmri_volume_seed(fname: str) -> tuple[int, ...]:
    """fastMRI's per-volume seed: ``tuple(map(ord, fname))`` of the file's base name."""
    return tuple(map(ord, fname))


PSEUDONYM_KEY_ENV = "AMBIENTMRI_PSEUDONYM_KEY"


def pseudonym_scheme() -> str:
    """``"hmac-sha256"`` when :data:`PSEUDONYM_KEY_ENV` holds a key, else ``"sha256"``."""
    return "hmac-sha256" if os.environ.get(PSEUDONYM_KEY_ENV) else "sha256"


def pseudonym_key_id() -> str:
    """A short public fingerprint of the pseudonym key ("" without a key), to tell keys apart."""
    key = os.environ.get(PSEUDONYM_KEY_ENV)
    if not key:
        return ""
    return hmac.new(key.encode("utf-8"), b"ambientmri pseudonym key id", hashlib.sha256).hexdigest()[:8]


def pseudonym(subject: str) -> str:
    """A stable subject pseudonym: ``sub-`` plus 12 hex digits.

    With a secret key in the environment variable ``AMBIENTMRI_PSEUDONYM_KEY`` it is an HMAC-SHA256
    of the identifier, which nobody without the key can link back to a patient ID. Without one it
    is a plain SHA-256, which anyone able to guess patient IDs can confirm. Use the same key for
    every store of a project so that subjects can be matched across stores (subject-disjoint
    held-out sets).
    """
    key = os.environ.get(PSEUDONYM_KEY_ENV)
    data = subject.encode("utf-8")
    if key:
        return "sub-" + hmac.new(key.encode("utf-8"), data, hashlib.sha256).hexdigest()[:12]
    return "sub-" + hashlib.sha256(data).hexdigest()[:12]


def as_int_tuple(values: Sequence[int]) -> tuple[int, ...]:
    """Convert a sequence of integers to a tuple of Python ints."""
    return tuple(int(v) for v in values)


def resolve_device(device: str) -> str:
    """``cuda`` or ``cpu`` for a ``--device`` choice: ``auto`` picks CUDA when torch sees a GPU.

    Args:
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        ``"cuda"`` or ``"cpu"`` (``cuda`` is returned as asked, even without a GPU: torch then
        raises where the device is first used).

    Raises:
        ValueError: another value.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device {device!r}: allowed: auto, cpu, cuda")
    import torch  # local: ``import ambientmri.utils`` stays light

    return "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
