"""``ambientmri demo`` end to end from the command line with the shipped demo recipe and a small
budget (slow: about 3 minutes on 2 idle cores). It also carries the demo recipe's training claims:
the loss falls and the EMA denoiser beats its input on held-out scans."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

STEPS = 300


@pytest.mark.slow
def test_demo_command_end_to_end_and_rerun(tmp_path) -> None:
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "ambientmri", "demo", "--out", str(out), "--steps", str(STEPS), "--samples", "16",
           "--set", "data.heldout_volumes=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for k in range(1, 9):
        assert f"{k}/8 " in proc.stdout
    assert "demo finished" in proc.stdout and "index.html" in proc.stdout

    s = json.loads((out / "summary.json").read_text())
    assert s["training"]["steps"] == STEPS and s["store"]["slices"] == 32 and s["heldout_volumes"] == 2
    r = s["restoration"]
    for method in ("a-os", "a-dps", "zero-filled", "l1-wavelet"):
        assert all(math.isfinite(r[method][k]) for k in ("psnr", "ssim", "nmse")), method
    assert r["a-os"]["nfe"] == 1 and r["a-dps"]["nfe"] == 50
    # the trained model's one-step restoration is structurally better than the zero-filled image it is given
    assert r["a-os"]["ssim"] > r["zero-filled"]["ssim"] + 0.05, r
    gen = s["sampleset"]["generated (ambient model)"]
    assert gen["num"] == 16 and gen["num_reference"] == 8 and math.isfinite(gen["swd"])
    a = s["audit"]
    assert 0.0 <= a["memorized_fraction"] <= 1.0 and a["n_samples"] == 16 and a["n_train"] == 32
    assert (out / "audit" / "report.html").stat().st_size > 10_000

    records = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == STEPS
    assert records[-1]["loss"] < 0.5 * records[0]["loss"], (records[0], records[-1])
    evals = [r for r in records if "heldout_nmse@1" in r]
    assert len(evals) == STEPS // 100
    # at σ = 1 the EMA denoiser, given only Ã x_t, removes most of the noise of its input
    assert evals[-1]["heldout_nmse@1"] < 0.5 * evals[-1]["heldout_input_nmse@1"], evals[-1]
    assert evals[-1]["heldout_nmse@1"] < evals[0]["heldout_nmse@1"]

    t0 = time.perf_counter()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reusing ") == 10, again.stdout  # raw, prepared, run, samples, 4 methods, eval, audit
    assert seconds < 60, seconds
    rerun = json.loads((out / "summary.json").read_text())
    assert all(v["reused"] for v in rerun["stages"].values())
    assert rerun["restoration"] == s["restoration"] and rerun["audit"] == s["audit"]
