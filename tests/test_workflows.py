"""The one stage cache (issue 12): reuse, redo, atomic failure, resume after an interruption, locks."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from ambientmri.training.trainer import TrainingInterrupted
from ambientmri.workflows.stages import PARTIAL_FILE, STAGE_FILE, StageCache, fingerprint


def test_fingerprint_depends_on_key_and_inputs() -> None:
    assert fingerprint("a", {"x": 1}) == fingerprint("a", {"x": 1})
    assert fingerprint("a", {"x": 1}) != fingerprint("a", {"x": 2})
    assert fingerprint("a", {"x": 1}) != fingerprint("b", {"x": 1})
    assert len(fingerprint("a", {})) == 16


def test_run_reuses_redoes_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    lines: list[str] = []
    cache = StageCache(tmp_path, log=lines.append)
    calls = []

    def work(tmp: Path) -> dict:
        calls.append(tmp)
        (tmp / "file.txt").write_text("x")
        return {"n": len(calls)}

    first = cache.run("s", tmp_path / "s", {"a": 1}, work)
    assert first["result"] == {"n": 1} and (tmp_path / "s" / "file.txt").is_file()
    assert json.loads((tmp_path / "s" / STAGE_FILE).read_text())["fingerprint"] == first["fingerprint"]
    again = cache.run("s", tmp_path / "s", {"a": 1}, work)
    assert again["result"] == {"n": 1} and len(calls) == 1 and cache.stages["s"]["reused"] is True
    assert any(line.startswith("  reusing s/") for line in lines)
    redone = cache.run("s", tmp_path / "s", {"a": 2}, work)
    assert redone["result"] == {"n": 2} and cache.stages["s"]["reused"] is False

    def broken(tmp: Path) -> dict:
        (tmp / "half.txt").write_text("x")
        raise ValueError("broke")

    with pytest.raises(ValueError, match="broke"):
        cache.run("t", tmp_path / "t", {}, broken)
    assert not (tmp_path / "t").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_resumable_keeps_an_interrupted_stage_and_resumes_it(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    folder = tmp_path / "run"
    partial = tmp_path / ".run.partial"
    seen: list[bool] = []

    def interrupted(p: Path, resume: bool) -> dict:
        seen.append(resume)
        (p / "checkpoint").write_text("step 2")
        raise TrainingInterrupted(2, p / "checkpoint", 2)

    with pytest.raises(TrainingInterrupted):
        cache.resumable("train", folder, {"steps": 4}, interrupted)
    assert (partial / "checkpoint").is_file() and (partial / PARTIAL_FILE).is_file() and not folder.exists()

    def finish(p: Path, resume: bool) -> dict:
        seen.append(resume)
        return {"from": (p / "checkpoint").read_text() if resume else None}

    record = cache.resumable("train", folder, {"steps": 4}, finish)
    assert seen == [False, True] and record["result"] == {"from": "step 2"}
    assert folder.is_dir() and not partial.exists() and not (folder / PARTIAL_FILE).exists()
    # other inputs: the partial folder of the old ones is not resumed
    with pytest.raises(TrainingInterrupted):
        cache.resumable("train", folder, {"steps": 5}, interrupted)
    cache.resumable("train", folder, {"steps": 6}, finish)
    assert seen[-1] is False
    # a failure (not an interruption) leaves no partial folder
    with pytest.raises(ValueError):
        cache.resumable("train", folder, {"steps": 7}, lambda p, r: (_ for _ in ()).throw(ValueError("x")))
    assert not partial.exists()


def test_resumable_respects_can_resume(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        cache.resumable("train", tmp_path / "run", {}, lambda p, r: (_ for _ in ()).throw(KeyboardInterrupt()))
    got = cache.resumable("train", tmp_path / "run", {}, lambda p, r: {"resume": r}, can_resume=lambda p: False)
    assert got["result"] == {"resume": False}


def test_value_is_cached_by_fingerprint(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    calls = []
    assert cache.value("m", {"a": 1}, lambda: calls.append(1) or {"x": (1, 2)}) == {"x": [1, 2]}
    assert cache.value("m", {"a": 1}, lambda: calls.append(1) or {"x": 9}) == {"x": [1, 2]}
    assert cache.value("m", {"a": 2}, lambda: calls.append(1) or {"x": 9}) == {"x": 9}
    assert len(calls) == 2


def test_a_second_worker_waits_and_reuses(tmp_path: Path) -> None:
    """Two workers on one stage: the second waits for the first's lock and then reuses its result."""
    calls = []

    def slow(tmp: Path) -> dict:
        calls.append(1)
        time.sleep(0.5)
        return {"ok": True}

    results: list[dict] = []
    lines: list[str] = []
    workers = [threading.Thread(target=lambda: results.append(
        StageCache(tmp_path, log=lines.append).run("s", tmp_path / "s", {}, slow))) for _ in range(2)]
    workers[0].start()
    time.sleep(0.1)
    workers[1].start()
    for w in workers:
        w.join()
    assert len(calls) == 1 and [r["result"] for r in results] == [{"ok": True}] * 2
    assert any("waiting for another process" in line for line in lines)
