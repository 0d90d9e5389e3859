"""``ambientmri demo``: every stage runs and writes its folder, the page links only files that
exist, reruns reuse finished stages and redo what depends on a changed input, an interrupted
training resumes, a failed stage leaves no folder, and bad input gets one line. A tiny recipe and a
few training steps keep it fast (the full-size demo is the slow test in test_demo_cli.py)."""

from __future__ import annotations

import html
import io
import json
import math
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import ambientmri.demo as demo_module
import ambientmri.training.run as run_module
from ambientmri.cli import EXIT_BAD_INPUT, app
from ambientmri.demo import MARKER, WARMUP_STEPS, run_demo
from ambientmri.training.trainer import TrainingInterrupted

TINY = [
    "data.volumes=2", "data.heldout_volumes=1", "data.slices=2", "data.matrix=[64,32]", "data.crop=[32,32]",
    "data.coils=2", "prepare.coil_maps.calib_width=4", "prepare.coil_maps.max_iter=5",
    "model.channels=[16,16]", "model.attention_levels=[false,false]", "model.norm_num_groups=8",
    "model.num_head_channels=8", "training.batch_size=2", "training.eval_every=2", "training.log_every=1",
    "training.checkpoint_every=100", "training.eval_slices=2", "training.warmup_steps=2",
]
STAGE_FOLDERS = ["raw", "prepared", "run", "samples", "reconstructions/a-os", "reconstructions/a-dps",
                 "reconstructions/zero-filled", "reconstructions/l1-wavelet", "evaluation", "audit"]
runner = CliRunner()


@pytest.fixture
def fast_sampling(monkeypatch):
    monkeypatch.setattr(demo_module, "SAMPLER_STEPS", 3)


def _console() -> Console:
    return Console(record=True, width=200, file=io.StringIO())


def _demo(out: Path, steps: int, console: Console | None = None) -> dict:
    return run_demo(out, overrides=TINY, steps=steps, samples=4, adps_steps=2, console=console)


def _links(out: Path) -> list[str]:
    page = (out / "index.html").read_text(encoding="utf-8")
    return re.findall(r'(?:href|src)="([^"]+)"', page)


def test_demo_stages_reuse_resume_and_failure(tmp_path: Path, monkeypatch, fast_sampling) -> None:
    out = tmp_path / "demo"
    real_train_run = run_module.train_run

    # 1. training interrupted after 2 of 3 steps: a resumable partial run, no run/, no page
    def interrupted(recipe, run_dir, **kwargs):
        real_train_run(recipe, run_dir, **{**kwargs, "steps": 2})
        raise TrainingInterrupted(2, Path(run_dir) / "checkpoints" / "last.pt", 2)

    monkeypatch.setattr(run_module, "train_run", interrupted)
    with pytest.raises(TrainingInterrupted):
        _demo(out, steps=3)
    monkeypatch.setattr(run_module, "train_run", real_train_run)
    assert (out / ".run.partial" / "checkpoints" / "last.pt").is_file()
    assert not (out / "run").exists() and not (out / "summary.json").exists() and not (out / "index.html").exists()
    assert (out / "raw" / "stage.json").is_file() and (out / "prepared" / "stage.json").is_file()

    # 2. rerun resumes the training to step 3, then the audit fails: no audit/ folder, no page
    def broken_audit(self, tmp):
        (tmp / "half-written.txt").write_text("x")
        raise ValueError("audit broke")

    real_audit = demo_module._Demo._audit
    monkeypatch.setattr(demo_module._Demo, "_audit", broken_audit)
    console = _console()
    with pytest.raises(ValueError, match="audit broke"):
        _demo(out, steps=3, console=console)
    monkeypatch.setattr(demo_module._Demo, "_audit", real_audit)
    text = console.export_text()
    assert "resuming the interrupted training" in text
    assert "reusing raw/" in text and "reusing prepared/" in text
    records = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]  # steps 1-2 before the interruption, 3 after it
    assert not (out / ".run.partial").exists()
    assert not (out / "audit").exists() and not (out / "index.html").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "no temporary folder left"

    # 3. rerun finishes: every stage folder, a page whose links all resolve, the numbers
    console = _console()
    s = _demo(out, steps=3, console=console)
    text = console.export_text()
    assert "reusing run/ (3 steps" in text and "reusing samples/" in text
    assert s["stages"]["audit"]["reused"] is False and s["stages"]["train"]["reused"] is True
    for folder in STAGE_FOLDERS:
        assert json.loads((out / folder / "stage.json").read_text())["fingerprint"], folder
    links = _links(out)
    assert len(links) > 30
    missing = [link for link in links if not (out / link).exists()]
    assert not missing and not [link for link in links if "://" in link or link.startswith("/")]
    for needed in ("audit/report.html", "samples/grid.png", "evaluation/training_curves.png",
                   "prepared/figures/masks.png", "prepared/figures/mask_psf.png", "run/metrics.jsonl"):
        assert needed in links, needed
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(s))
    assert s["training"]["steps"] == 3 and s["training"]["chosen_by"] == "--steps"
    assert set(s["restoration"]) == {"a-os", "a-dps", "zero-filled", "l1-wavelet"}
    for method, row in s["restoration"].items():
        assert all(math.isfinite(row[k]) for k in ("psnr", "ssim", "nmse")), method
        assert row["seconds_per_slice"] > 0
    assert s["restoration"]["a-os"]["nfe"] == 1 and s["restoration"]["a-dps"]["nfe"] == 2
    assert s["restoration"]["zero-filled"]["nfe"] == 0
    gen = s["sampleset"]["generated (ambient model)"]
    assert gen["num"] == 4 and math.isfinite(gen["swd"]) and math.isfinite(gen["radial_spectrum_distance"])
    zf = s["sampleset"]["zero-filled training scans Aᴴy (yardstick)"]
    clean = s["sampleset"]["clean training scans (yardstick)"]
    assert zf["radial_spectrum_distance"] > clean["radial_spectrum_distance"]  # the yardsticks are ordered
    assert 0.0 <= s["audit"]["memorized_fraction"] <= 1.0 and s["audit"]["n_samples"] == 4
    assert s["audit"]["controls"]["empirical_optimal_denoiser"] >= 0.95  # the positive control is caught
    page = (out / "index.html").read_text()
    assert page.count(html.escape(s["audit"]["verdict_sentence"])) == 1  # the verdict is said once
    assert "empirical_optimal_denoiser" not in page and "positive control: samples of the empirical" in page
    # 4 samples and 8 held-out slices cannot resolve q = 0.99: the demo says so rather than pass
    assert s["audit"]["verdict"] == "inconclusive"
    assert {c["check"] for c in s["audit"]["failed_controls"]} >= {"samples", "heldout_scans"}
    page = (out / "index.html").read_text()
    section = page.split("7. Memorization audit")[1]
    assert section.index("Inconclusive: this audit cannot tell") < section.index("How it was measured")
    assert "too few held-out scans" in section
    assert s["condition"]["satisfied"] is True
    assert {"torch", "numpy", "python", "ambientmri"} <= set(s["versions"])

    # 4. a second call reuses every stage and is fast
    again = _demo(out, steps=3)
    assert all(v["reused"] for v in again["stages"].values()), again["stages"]
    assert {k: v["fingerprint"] for k, v in again["stages"].items()} == {
        k: v["fingerprint"] for k, v in s["stages"].items()}
    assert again["restoration"] == s["restoration"] and again["audit"] == s["audit"]

    # 5. other steps: training and what depends on the model are redone, the rest is reused
    changed = _demo(out, steps=4)
    ran = {k for k, v in changed["stages"].items() if not v["reused"]}
    assert ran == {"train", "samples", "reconstruct a-os", "reconstruct a-dps", "evaluation", "audit"}
    assert changed["training"]["steps"] == 4
    assert changed["restoration"]["zero-filled"] == s["restoration"]["zero-filled"]
    assert changed["restoration"]["a-os"] != s["restoration"]["a-os"]


def test_choose_steps_fits_the_budget(tmp_path: Path) -> None:
    from ambientmri.recipes import load_recipe

    rec = load_recipe(demo_module.builtin_recipe("demo"))

    def chosen(minutes: float, per_step: float) -> int:
        d = demo_module._Demo(tmp_path, rec, {"minutes": minutes}, 32, 0, dict(demo_module.METHODS),
                              Console(quiet=True), None)
        return d._choose_steps(per_step)

    ten = chosen(10, 0.4)
    assert 600 < ten < 1500  # the training share of 10 minutes at 0.4 s per step
    assert chosen(20, 0.4) > 2 * ten - 100 and chosen(10, 0.8) < ten / 2 + 50
    assert chosen(0.5, 0.4) == WARMUP_STEPS  # too small a budget: the warm-up steps only


def test_demo_minutes_mode_records_its_choice(tmp_path: Path, fast_sampling) -> None:
    out = tmp_path / "demo"
    s = run_demo(out, overrides=TINY, minutes=0.05, samples=4, adps_steps=2)
    t = s["training"]
    assert t["steps"] == WARMUP_STEPS and t["budget"] == {"minutes": 0.05}
    assert t["warmup_steps"] == WARMUP_STEPS and t["seconds_per_step"] > 0 and "warm-up" in t["chosen_by"]
    again = run_demo(out, overrides=TINY, minutes=0.05, samples=4, adps_steps=2)
    assert again["stages"]["train"]["reused"] is True  # same --minutes: no new timing, no retraining


def test_cli_bad_input_gets_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("name: t\ndata: {kind: fastmri}\ncorruption: {kind: cartesian, accelerations: [2]}\n")
    for args, needle in (
        (["--recipe", str(bad)], "synthetic"),
        (["--minutes", "0"], "--minutes"),
        (["--set", "data.heldout_volumes=0"], "data.heldout_volumes"),
        (["--set", "training.objective=clean"], "ambient"),
    ):
        result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), *args])
        lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
        assert result.exit_code == EXIT_BAD_INPUT and len(lines) == 1 and needle in lines[0], (args, result.stderr)
        assert not (tmp_path / "d").exists()  # nothing written


def test_cli_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["demo", "--out", str(precious), "--steps", "1"])
    assert result.exit_code == EXIT_BAD_INPUT and "not an earlier demo output" in result.stderr
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]
    assert not (precious / MARKER).exists()
