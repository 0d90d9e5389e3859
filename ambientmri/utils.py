"""Small shared helpers: atomic writes and deterministic seeds."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary file lives in the same folder (same file system), so the final ``os.replace`` is
    atomic: readers see either the old file or the complete new one, never a partial write. On error
    the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it onto ``path`` only on success.

    An existing ``path`` is replaced. On error the temporary folder is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
