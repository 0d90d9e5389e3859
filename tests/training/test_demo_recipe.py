"""The shipped demo recipe trains end to end from the CLI (slow: a few minutes on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ambientmri.demo import builtin_recipe


@pytest.mark.slow
def test_demo_recipe_trains_and_denoises_heldout_scans(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "ambientmri", "train", str(builtin_recipe("demo")), "--out", str(run)],
                          capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 600
    assert (run / "checkpoints" / "last.pt").is_file()
    first, last = records[0]["loss"], records[-1]["loss"]
    assert last < 0.5 * first, (first, last)
    evals = [r for r in records if "heldout_nmse@1" in r]
    assert len(evals) == 6
    final = evals[-1]
    # at σ = 1 the EMA denoiser, given only Ã x_t, removes most of the noise of its input
    assert final["heldout_nmse@1"] < 0.5 * final["heldout_input_nmse@1"], final
    assert final["heldout_nmse@1"] < evals[0]["heldout_nmse@1"]
