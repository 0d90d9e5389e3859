"""Atomic writes: all or nothing, usual permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ambientmri.utils import atomic_dir, atomic_path, stable_seed, write_text_atomic


def test_atomic_path_commits_on_success_with_normal_permissions(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    write_text_atomic(target, "one")
    assert target.read_text() == "one"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_path_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_replaces_whole_folder_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("1")
    assert (target / "x").read_text() == "1"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask
    with pytest.raises(RuntimeError), atomic_dir(target, replace=True) as tmp:
        (tmp / "y").write_text("2")
        raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["x"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with atomic_dir(target, replace=True) as tmp:
        (tmp / "z").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["z"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the old folder is gone, no .old left


def test_atomic_dir_never_replaces_without_replace_nor_renames_a_file(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "mine").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"), atomic_dir(target):
        pass
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for replace in (False, True):
        with pytest.raises(FileExistsError, match="not a folder"), atomic_dir(afile, replace=replace):
            pass
    assert (target / "mine").read_text() == "keep" and afile.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "out"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_dir(empty) as tmp:  # an empty folder holds nothing to lose
        (tmp / "x").write_text("1")
    assert (empty / "x").is_file()


def test_clean_stale_temporaries_only_removes_dead_owners(tmp_path: Path) -> None:
    import subprocess
    import sys

    from ambientmri.utils import _owner_tag, clean_stale_temporaries

    host = _owner_tag().split("-")[0]
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    names = {
        "dead": f".out.{host}-{proc.pid}.abcd_123.tmp",
        "alive": f".out.{host}-{os.getppid()}.abcd_123.tmp",
        "other_host": f".out.{'0' * 6 if host != '0' * 6 else '1' * 6}-{proc.pid}.abcd_123.tmp",
        "other_output": f".outs.{host}-{proc.pid}.abcd_123.tmp",
        "dead_old_without_output": f".out.{host}-{proc.pid}.abcd_456.old",
        "legacy_recent": ".out.abcd_123.tmp",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
    removed = clean_stale_temporaries(tmp_path / "out")
    assert [p.name for p in removed] == [names["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in names.items() if k != "dead")


def test_stable_seed_is_stable() -> None:
    assert stable_seed("file1.h5", 3) == stable_seed("file1.h5", 3)
    assert stable_seed("file1.h5", 3) != stable_seed("file1.h5", 4)
    assert stable_seed("a") == 7304431660483791845  # pinned: seeds must not change between releases


def _killed_writer(writer: str, write: str, target: Path) -> Path:
    """Run ``with WRITER(target) as tmp: WRITE`` in a child that SIGKILLs itself inside the block; return
    the temporary it left behind."""
    import signal
    import subprocess
    import sys

    code = (f"import os, signal, sys\nfrom ambientmri.utils import {writer}\n"
            f"with {writer}(sys.argv[1]) as tmp:\n    {write}\n"
            "    print(tmp.name, flush=True)\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    return target.parent / proc.stdout.strip()


def test_temporary_of_a_killed_process_is_cleaned_by_the_next_writer(tmp_path: Path) -> None:
    left = _killed_writer("atomic_dir", "(tmp / 'half').write_text('x')", tmp_path / "out")
    assert left.is_dir() and left.name.startswith(".out.") and left.name.endswith(".tmp")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "whole").write_text("y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_file_temporary_of_a_killed_process_is_cleaned_by_the_next_writer(tmp_path: Path) -> None:
    """A ``--json`` write killed half-way leaves ``.NAME.HOST-PID.XXXXXXXX.tmp``; the next write of NAME removes it."""
    left = _killed_writer("atomic_path", "tmp.write_text('half')", tmp_path / "r.json")
    assert left.is_file() and left.name.startswith(".r.json.") and left.name.endswith(".tmp")
    (tmp_path / ".r.json.someone_else.tmp").write_text("not ours")  # not named like a temporary of r.json
    with atomic_path(tmp_path / "r.json") as tmp:
        tmp.write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.json.someone_else.tmp", "r.json"]
