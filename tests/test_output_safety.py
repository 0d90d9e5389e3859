"""No command deletes, replaces or overwrites what it did not create (issue 11, sections 1 and 2).

One parametrized test points every command that writes (each ``--out``, ``--json``, ``--csv``,
``--plot``) at (a) a folder holding a user file, (b) its own input, (c) a parent of its input and
(d) an existing file: each exits non-zero with one line naming the path, and a checksum of every
file under the test's folders is the same before and after. Then: reuse of a command's own earlier
output and ``--overwrite`` still work, stale temporaries of killed runs are cleaned, runs and stores
are locked against a second writer, prepare resumes rebuild changed sources, and failed runs leave
no folder behind. In-process (typer's CliRunner) on one tiny trained run: seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ambientmri.cli import EXIT_BAD_INPUT, app
from ambientmri.outputs import LOCK_FILE, MARKER, exclusive_lock

runner = CliRunner()

TINY = {
    "name": "tiny",
    "data": {"kind": "synthetic", "challenge": "singlecoil", "anatomy": "knee", "volumes": 2, "heldout_volumes": 0,
             "slices": 2, "matrix": [32, 16], "crop": [16, 16], "seed": 3},
    "corruption": {"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
    "model": {"kind": "mlp", "hidden": [32], "embedding_dim": 16},
    "training": {"steps": 2, "batch_size": 4, "log_every": 1, "eval_every": 0, "device": "cpu"},
}
PREPARE = {
    "name": "p", "data": {"kind": "fastmri", "crop": [16, 16]},
    "corruption": {"kind": "cartesian", "center_fractions": [0.25], "accelerations": [2]},
    "prepare": {"coil_maps": {"calib_width": 8, "max_iter": 10}},
}


def _invoke(args: list[str]):
    return runner.invoke(app, [str(a) for a in args])


def _ok(args: list[str]):
    result = _invoke(args)
    assert result.exit_code == 0, (result.output, result.stderr)
    return result


def _tree_digest(*roots: Path) -> str:
    """SHA-256 over every path (files, folders, hidden ones), its kind and its bytes."""
    h = hashlib.sha256()
    for root in roots:
        for path in sorted(root.rglob("*")):
            h.update(str(path.relative_to(root)).encode())
            if path.is_symlink():
                h.update(b"L" + os.readlink(path).encode())
            elif path.is_file():
                h.update(b"F" + path.read_bytes())
            else:
                h.update(b"D")
    return h.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """One tiny trained run, a scan folder, its reconstruction, generated samples and recipes."""
    import torch

    from ambientmri.data.synth import synth_cohort
    from ambientmri.recipes import validate_recipe
    from ambientmri.sampling.reconstruct import reconstruct
    from ambientmri.training.run import train_run

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("safety")
    data = root / "data"
    run = data / "run"
    train_run(validate_recipe(TINY, "tiny"), run)
    kw = {"challenge": "singlecoil", "anatomy": "knee", "slices": 2, "matrix": (32, 16)}
    synth_cohort(data / "scans", volumes=1, seed=9, split="val", **kw)
    synth_cohort(data / "held", volumes=2, seed=5, split="val", **kw)
    recipe = data / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    prep = data / "prepare.yaml"
    prep.write_text(yaml.safe_dump(PREPARE))
    recon = data / "recon"
    reconstruct(data / "scans", recon, "zero-filled", recipe=validate_recipe(TINY, "tiny"))
    samples = data / "samples"
    _ok(["sample", run, "--num", "2", "--steps", "2", "--out", samples, "--device", "cpu"])
    np.save(data / "gen.npy", np.load(samples / "samples.npy"))
    return {"root": root, "data": data, "run": run, "scans": data / "scans", "held": data / "held",
            "recipe": recipe, "prep": prep, "recon": recon, "samples": samples, "gen": data / "gen.npy"}


# Each writer: (its input for cases b and c, the command line with OUT in place of the output).
Args = Callable[[dict[str, Path], Path], list]
WRITERS: dict[str, tuple[str, Args]] = {
    "synth": ("", lambda w, o: ["synth", o, "--challenge", "singlecoil", "--anatomy", "knee", "--volumes", "1",
                                "--slices", "1", "--matrix", "32", "16"]),
    "mask --out": ("", lambda w, o: ["mask", "--shape", "16", "16", "--out", o]),
    "mask --plot": ("", lambda w, o: ["mask", "--shape", "16", "16", "--out", o.parent / "new_mask.npy",
                                      "--plot", o]),
    "prepare": ("scans", lambda w, o: ["prepare", w["scans"], "--out", o, "--recipe", w["prep"]]),
    "check-corruption --json": ("recipe", lambda w, o: ["check-corruption", w["recipe"], "--draws", "2",
                                                        "--json", o]),
    "train": ("recipe", lambda w, o: ["train", w["recipe"], "--out", o]),
    "sample": ("run", lambda w, o: ["sample", w["run"], "--num", "1", "--steps", "1", "--out", o,
                                    "--device", "cpu"]),
    "reconstruct": ("scans", lambda w, o: ["reconstruct", w["scans"], "--out", o, "--method", "zero-filled",
                                           "--recipe", w["recipe"], "--device", "cpu"]),
    "reconstruct --run": ("run", lambda w, o: ["reconstruct", w["scans"], "--out", o, "--method", "a-os",
                                               "--run", w["run"], "--device", "cpu"]),
    "evaluate --json": ("recon", lambda w, o: ["evaluate", "--targets", w["scans"], "--predictions", w["recon"],
                                               "--json", o]),
    "evaluate --csv": ("recon", lambda w, o: ["evaluate", "--targets", w["scans"], "--predictions", w["recon"],
                                              "--csv", o]),
    "compare-samples --json": ("samples", lambda w, o: ["compare-samples", "--samples", w["samples"],
                                                        "--reference", w["scans"], "--json", o]),
    "audit": ("scans", lambda w, o: ["audit", "--samples", w["gen"], "--train", w["scans"], "--heldout", w["held"],
                                     "--out", o, "--no-controls"]),
    "audit --run": ("run", lambda w, o: ["audit", "--samples", w["gen"], "--train", w["scans"], "--heldout",
                                         w["held"], "--out", o, "--run", w["run"], "--probe", "kspace"]),
    "demo": ("recipe", lambda w, o: ["demo", "--out", o, "--recipe", w["recipe"], "--steps", "1"]),
}
CASES = ["user-folder", "own-input", "parent-of-input", "existing-file"]


def _target(w: dict[str, Path], writer: str, case: str, tmp: Path) -> Path:
    """The output path of one case."""
    key = WRITERS[writer][0]
    if case == "user-folder":
        folder = tmp / "mine"
        folder.mkdir()
        # synth writes files into a folder: the user's file has the name it would write
        name = "file1000000.h5" if writer == "synth" else "notes.txt"
        if writer == "synth":
            from ambientmri.data.synth import subject_number, synth_file_name

            name = synth_file_name("knee", subject_number(0, seed=0, split="train"))
        (folder / name).write_text("the user's own file\n")
        return folder
    if case == "existing-file":
        path = tmp / ("mine.json" if "--json" in writer else "mine.dat")
        path.write_text('{"mine": true}\n')
        return path
    if case == "own-input":
        return w[key]
    return w[key].parent  # parent-of-input: the folder holding every input


@pytest.mark.parametrize(
    ("writer", "case"),
    # synth and mask read no input: cases (b) and (c) do not apply to them
    [(w, c) for w in WRITERS for c in CASES if WRITERS[w][0] or c in ("user-folder", "existing-file")],
)
def test_no_command_touches_what_it_did_not_create(world, tmp_path, monkeypatch, writer, case):
    out = _target(world, writer, case, tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _tree_digest(world["root"], tmp_path)
    result = _invoke(WRITERS[writer][1](world, out))
    after = _tree_digest(world["root"], tmp_path)
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert result.exit_code == EXIT_BAD_INPUT, (result.exit_code, result.output, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert str(out) in lines[0], lines[0]
    assert after == before, f"{writer} changed files although it refused: {lines[0]}"


@pytest.mark.parametrize("out", ["cwd", "parent-of-cwd"])
def test_sample_never_replaces_the_current_folder(world, tmp_path, monkeypatch, out):
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    before = _tree_digest(tmp_path)
    result = _invoke(["sample", world["run"], "--num", "1", "--steps", "1", "--device", "cpu", "--overwrite",
                      "--out", "." if out == "cwd" else ".."])
    assert result.exit_code == EXIT_BAD_INPUT and "current folder" in result.stderr, result.stderr
    assert _tree_digest(tmp_path) == before


def test_symbolic_link_as_out_is_refused(world, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(target)
    before = _tree_digest(tmp_path)
    result = _invoke(["sample", world["run"], "--num", "1", "--steps", "1", "--device", "cpu", "--overwrite",
                      "--out", link])
    assert result.exit_code == EXIT_BAD_INPUT and "symbolic link" in result.stderr
    assert _tree_digest(tmp_path) == before


# -- what is still allowed ---------------------------------------------------------------------
def test_train_resumes_with_the_runs_own_resolved_recipe(world, tmp_path):
    run = tmp_path / "run"
    _ok(["train", world["recipe"], "--out", run, "--steps", "1"])
    resumed = _ok(["train", run / "recipe.resolved.yaml", "--out", run, "--steps", "2", "--resume"])
    assert "1->2" in resumed.output
    other = tmp_path / "other"
    other.mkdir()
    (other / "r.yaml").write_text((run / "recipe.resolved.yaml").read_text())
    refused = _invoke(["train", other / "r.yaml", "--out", other])
    assert refused.exit_code == EXIT_BAD_INPUT and "would contain the input" in refused.stderr



def test_sample_reuses_its_own_output_and_overwrite_replaces_a_user_folder(world, tmp_path):
    out = tmp_path / "s"
    cmd = ["sample", world["run"], "--num", "1", "--steps", "1", "--device", "cpu", "--out", out]
    _ok(cmd)
    marker = json.loads((out / MARKER).read_text())
    assert marker["command"] == "sample" and "samples.npy" in marker["files"]
    _ok(cmd)  # its own earlier output: replaced
    (out / "notes.txt").write_text("mine")
    refused = _invoke(cmd)
    assert refused.exit_code == EXIT_BAD_INPUT and "notes.txt" in refused.stderr
    assert (out / "notes.txt").read_text() == "mine"
    _ok([*cmd, "--overwrite"])
    assert not (out / "notes.txt").exists() and (out / "samples.npy").is_file()


def test_audit_overwrite_then_reuse(world, tmp_path):
    out = tmp_path / "a"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    cmd = ["audit", "--samples", world["gen"], "--train", world["scans"], "--heldout", world["held"], "--out", out,
           "--no-controls"]
    assert _invoke(cmd).exit_code == EXIT_BAD_INPUT and (out / "notes.txt").is_file()

    def audited(args: list) -> None:  # a conclusive or an inconclusive verdict: either way a report
        result = _invoke(args)
        assert result.exit_code not in (1, EXIT_BAD_INPUT), (result.output, result.stderr)
        assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "report.html", "summary.json"])

    audited([*cmd, "--overwrite"])
    audited(cmd)  # its own earlier output


def test_outputs_of_earlier_versions_without_marker_are_reused(world, tmp_path):
    out = tmp_path / "r"
    cmd = ["reconstruct", world["scans"], "--out", out, "--method", "zero-filled", "--recipe", world["recipe"],
           "--device", "cpu"]
    _ok(cmd)
    (out / MARKER).unlink()  # as written before markers existed
    _ok(cmd)
    assert json.loads((out / MARKER).read_text())["command"] == "reconstruct"
    other = _invoke(["sample", world["run"], "--num", "1", "--steps", "1", "--device", "cpu", "--out", out])
    assert other.exit_code == EXIT_BAD_INPUT and "ambientmri reconstruct" in other.stderr


def test_json_and_csv_rewrite_their_own_files_and_overwrite_others_only_when_asked(world, tmp_path):
    j, c = tmp_path / "m.json", tmp_path / "m.csv"
    cmd = ["evaluate", "--targets", world["scans"], "--predictions", world["recon"], "--json", j, "--csv", c]
    _ok(cmd)
    _ok(cmd)  # recognised as evaluate's own files
    j.write_text('{"mine": 1}\n')
    refused = _invoke(cmd)
    assert refused.exit_code == EXIT_BAD_INPUT and str(j) in refused.stderr and j.read_text() == '{"mine": 1}\n'
    _ok([*cmd, "--overwrite"])
    assert "mean" in json.loads(j.read_text())
    mask = tmp_path / "mask.npy"
    _ok(["mask", "--shape", "16", "16", "--out", mask])
    _ok(["mask", "--shape", "16", "16", "--out", mask, "--seed", "1"])  # its own mask file


def test_synth_refuses_existing_names_unless_overwrite(tmp_path):
    cmd = ["synth", tmp_path / "s", "--challenge", "singlecoil", "--volumes", "1", "--slices", "1",
           "--matrix", "32", "16"]
    _ok(cmd)
    (path,) = (tmp_path / "s").glob("*.h5")
    stamp = path.stat().st_mtime_ns
    assert _invoke(cmd).exit_code == EXIT_BAD_INPUT and path.stat().st_mtime_ns == stamp
    _ok([*cmd, "--overwrite"])
    _ok([*cmd, "--seed", "1"])  # other subjects: new names beside the old ones
    assert len(list((tmp_path / "s").glob("*.h5"))) == 2


def test_stale_temporaries_of_killed_runs_are_cleaned(world, tmp_path):
    from ambientmri.utils import _owner_tag

    host = _owner_tag().split("-")[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "r"
    stale = tmp_path / f".r.{host}-{dead.pid}.abcd1234.tmp"
    alive = tmp_path / f".r.{host}-{os.getppid()}.abcd1234.tmp"
    foreign = tmp_path / ".r.notes.tmp"
    for folder in (stale, alive, foreign):
        (folder / ".store").mkdir(parents=True)
    _ok(["reconstruct", world["scans"], "--out", out, "--method", "zero-filled", "--recipe", world["recipe"],
         "--device", "cpu"])
    assert not stale.exists() and alive.is_dir() and foreign.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".r.notes.tmp", alive.name, "r"])


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not condition():
        assert proc.poll() is None, f"the process ended before {what}: {proc.communicate()}"
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_reconstruct_killed_with_sigkill_leaves_temporaries_the_next_run_cleans(world, tmp_path):
    out = tmp_path / "r"
    slow = subprocess.Popen(
        [sys.executable, "-m", "ambientmri", "reconstruct", str(world["scans"]), "--out", str(out), "--method",
         "a-dps", "--steps", "100000", "--run", str(world["run"]), "--device", "cpu"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        _wait_for(lambda: any(tmp_path.glob(".r.*.tmp/.store/manifest.json")), slow, "its temporary store")
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait()
    (left,) = tmp_path.glob(".r.*.tmp")
    assert f"-{slow.pid}." in left.name and not out.exists()
    _ok(["reconstruct", world["scans"], "--out", out, "--method", "zero-filled", "--recipe", world["recipe"],
         "--device", "cpu"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


# -- one writer per run or store ----------------------------------------------------------------
@pytest.mark.parametrize("kill_when", ["setting-up", "training"])
def test_two_trains_on_one_run_the_second_names_the_first_and_kill_releases(world, tmp_path, kill_when):
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "ambientmri", "train", str(world["recipe"]), "--out", str(run), "--steps", "1000000",
         "--set", "training.checkpoint_every=1000000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        lock = run / LOCK_FILE
        _wait_for(lambda: lock.is_file() and lock.read_text().strip() == str(first.pid), first, "the lock")
        second = _invoke(["train", world["recipe"], "--out", run, "--set", "training.lr=0.5"])
        assert second.exit_code == EXIT_BAD_INPUT and f"PID {first.pid}" in second.stderr, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        if kill_when == "training":
            _wait_for(lambda: (run / "metrics.jsonl").is_file(), first, "its first logged step")
    finally:
        first.send_signal(signal.SIGKILL)  # killed, maybe before its first checkpoint
        first.wait()
    assert not (run / "checkpoints" / "last.pt").exists()
    (run / ".recipe.resolved.yaml.abcd1234.tmp").write_text("half")  # as if killed mid-write
    resumed = _ok(["train", world["recipe"], "--out", run, "--steps", "2", "--resume"])
    assert "0->2" in resumed.output  # no checkpoint: --resume starts from step 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 2  # one writer: no interleaved lines
    assert not list(run.glob(".*.tmp"))



def _hold_lock(folder: Path) -> subprocess.Popen:
    code = ("import sys, time\nfrom ambientmri.outputs import exclusive_lock\n"
            "with exclusive_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("command", ["train", "prepare"])
def test_second_writer_is_refused_naming_the_holder_and_kill_releases(world, tmp_path, command):
    target = tmp_path / "target"
    target.mkdir()
    holder = _hold_lock(target)
    try:
        args = (["train", world["recipe"], "--out", target] if command == "train"
                else ["prepare", world["scans"], "--out", target, "--recipe", world["prep"]])
        result = _invoke(args)
        assert result.exit_code == EXIT_BAD_INPUT, result.stderr
        assert f"PID {holder.pid}" in result.stderr and str(target) in result.stderr
        assert sorted(p.name for p in target.iterdir()) == [LOCK_FILE]  # nothing written, nothing removed
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with exclusive_lock(target):  # the OS released the dead holder's lock
        pass
    if command == "prepare":
        _ok(["prepare", world["scans"], "--out", target, "--recipe", world["prep"]])
        assert (target / "manifest.json").is_file()


def test_lock_names_the_holder_pid(tmp_path):
    with exclusive_lock(tmp_path):
        other = subprocess.run(
            [sys.executable, "-c", "import sys\nfrom ambientmri.outputs import exclusive_lock\n"
             "with exclusive_lock(sys.argv[1]): pass", str(tmp_path)], capture_output=True, text=True)
        assert other.returncode != 0 and f"PID {os.getpid()}" in other.stderr
    assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())


# -- crashes and failures ------------------------------------------------------------------------
def test_prepare_resume_rebuilds_volumes_whose_source_changed(world, tmp_path):
    from ambientmri.data.synth import synth_cohort

    src = tmp_path / "src"
    synth_cohort(src, challenge="singlecoil", anatomy="knee", volumes=2, slices=1, matrix=(32, 16), seed=4)
    store = tmp_path / "store"
    _ok(["prepare", src, "--out", store, "--recipe", world["prep"]])
    first = sorted(src.glob("*.h5"))[0]
    os.utime(first, ns=(time.time_ns(), time.time_ns() + 10**9))  # the source file changed
    again = _ok(["prepare", src, "--out", store, "--recipe", world["prep"]])
    assert "1 volume(s) kept from an earlier run" in " ".join(again.output.split())
    manifest = json.loads((store / "manifest.json").read_text())
    assert all(v["source_signature"] for v in manifest["volumes"])
    third = _ok(["prepare", src, "--out", store, "--recipe", world["prep"]]).output
    assert "2 volume(s) kept" in " ".join(third.split())


def test_prepare_killed_before_it_marked_the_store_resumes(world, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / LOCK_FILE).write_text("12345\n")  # killed right after taking the lock ...
    (store / ".prepare.json.abcd1234.tmp").write_text('{"config_')  # ... while writing its marker
    _ok(["prepare", world["scans"], "--out", store, "--recipe", world["prep"]])
    assert (store / "manifest.json").is_file() and not list(store.glob(".*.tmp"))


def test_prepare_out_inside_src_is_refused(world, tmp_path):
    before = _tree_digest(world["root"])
    result = _invoke(["prepare", world["scans"], "--out", world["scans"] / "store", "--recipe", world["prep"]])
    assert result.exit_code == EXIT_BAD_INPUT and "inside the input" in result.stderr
    assert _tree_digest(world["root"]) == before


def test_failed_run_leaves_no_folder(world, tmp_path):
    run = tmp_path / "run"
    result = _invoke(["train", world["recipe"], "--out", run, "--init-from", tmp_path / "nothing.pt"])
    assert result.exit_code == EXIT_BAD_INPUT, result.stderr
    assert not run.exists()
    kept = tmp_path / "kept"  # a folder the user made: only what this run wrote may go, the folder stays
    kept.mkdir()
    assert _invoke(["train", world["recipe"], "--out", kept, "--init-from", tmp_path / "x.pt"]).exit_code != 0
    assert kept.is_dir()
