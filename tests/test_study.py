"""benchmarks/study.py: its settings, recipes and profiles (fast), and the whole study on the smoke profile (slow)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from ambientmri.models.factory import build_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("study", ROOT / "benchmarks" / "study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["study"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("study", None)


def test_q1_covers_the_issue_settings(study):
    names = list(study.q1_settings(study.PROFILES["cpu"]))
    assert names == ["kspace R=2", "kspace R=4", "kspace R=6", "kspace R=8", "pixels p=0.4", "pixels p=0.6",
                     "pixels p=0.8", "pixels p=0.9", "block 40%"]
    assert study.q2_settings(study.PROFILES["cpu"]) == ["kspace R=4", "kspace R=8", "pixels p=0.6", "pixels p=0.9"]


def test_q4_deltas_include_zero_and_share_the_q1_default(study):
    pr = study.PROFILES["cpu"]
    rows = study.q4_settings(pr)
    deltas = {name: (family, round(d, 4)) for name, (family, d, _) in rows.items()}
    assert deltas["pixels p=0.8"] == ("pixels p=0.8", 0.1)  # the q1 model, reused
    assert rows["pixels p=0.8"][2] == study.q1_settings(pr)["pixels p=0.8"]
    assert rows["kspace R=4"][2] == study.q1_settings(pr)["kspace R=4"]
    zero = [name for name, (_, d, _) in rows.items() if d == 0]
    assert len(zero) == 2  # δ = 0 for pixels and for k-space (Ã = A)
    assert rows[zero[1]][2]["further"] == {"extra": 0}
    assert deltas["kspace R=4"][1] == pytest.approx(1 - 4 / 5)


@pytest.mark.parametrize("profile", ["cpu", "gpu", "smoke"])
def test_every_profile_recipe_validates_and_builds(study, profile, tmp_path):
    pr = study.PROFILES[profile]
    for name, setting in study.q1_settings(pr).items():
        for objective in ("ambient", "naive", "clean"):
            rec = study.make_recipe(pr, name, setting, objective, steps=pr.steps, store=tmp_path, device="cpu")
            assert rec.training.objective == objective
            assert tuple(rec.data.crop) == pr.crop
    model = build_model(rec.model, pr.crop)  # the network fits the profile's grid
    assert sum(p.numel() for p in model.parameters()) > 0


def test_kspace_settings_keep_acs_and_acceleration(study):
    s = study.kspace_setting(8)
    assert s["accelerations"] == [8] and s["center_fractions"] == [0.0625]
    assert study.kspace_setting(4, extra=0)["further"] == {"extra": 0}


@pytest.mark.slow
def test_smoke_study_runs_every_question_and_resumes(study, tmp_path):
    out = tmp_path / "study"
    results = study.main(["--profile", "smoke", "--out", str(out), "--device", "cpu"])
    for q in study.QUESTIONS:
        assert q in results
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["q1"]) >= {"kspace R=4", "pixels p=0.6", "block 40%", "real scans (floor)"}
    for row in saved["q1"]["kspace R=4"].values():
        assert row["swd"] > 0
        assert 0 < row["heldout_nmse@1"] < 10
    assert saved["q1"]["kspace R=4"]["ambient"]["energy_ratio"] is not None
    for rows in saved["q2"].values():
        assert {"zero-filled", "A-OS (ambient)", "A-DPS (ambient)", "DPS (oracle model)"} <= set(rows)
        assert rows["A-OS (ambient)"]["nfe"] == 1
    for row in saved["q3"]["rows"].values():
        assert 0 <= row["clean"]["memorized_fraction"] <= 1
    assert len(list((out / "figures").glob("*.png"))) == 6
    md = (out / "results.md").read_text()
    assert "### Q5" in md and "| clean finetune (clean brain) |" in md
    # a rerun trains nothing and reproduces the numbers from the cache
    again = study.main(["--profile", "smoke", "--out", str(out), "--device", "cpu", "--only", "q1"])
    assert again["q1"] == saved["q1"]


def test_ambient_overrides_train_only_the_ambient_models_with_them(study, tmp_path):
    out = tmp_path / "variant"
    results = study.main(["--profile", "smoke", "--out", str(out), "--device", "cpu", "--only", "q1",
                          "--settings", "kspace R=4", "--models", "ambient",
                          "--ambient-set", "training.weighting=balanced",
                          "--ambient-set", "corruption.further.redraw=step"])
    row = results["q1"]["kspace R=4"]
    assert set(row) == {"ambient"}  # neither the naive model nor the oracle was trained
    assert not (out / "runs" / "naive_kspace_R_4").exists() and not (out / "runs" / "oracle").exists()
    recipe = yaml.safe_load((out / "runs" / "ambient_kspace_R_4" / "recipe.resolved.yaml").read_text())
    assert recipe["training"]["weighting"] == "balanced"
    assert recipe["corruption"]["further"]["redraw"] == "step"
    assert results["meta"]["ambient_overrides"] == ["training.weighting=balanced", "corruption.further.redraw=step"]
    assert "`training.weighting=balanced`" in (out / "results.md").read_text()
