"""benchmarks/kspace_efficiency.py: case names and recipes (fast), and one smoke case end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "kspace_efficiency.py"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


@pytest.fixture(scope="module")
def keff():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import kspace_efficiency

        yield kspace_efficiency
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_case_names_and_variant_recipes(keff, tmp_path):
    assert keff.parse_case("sc32_R4_bal+redraw_1000_s1") == ("sc32", "R4", "bal+redraw", 1000, 1)
    assert keff.setting("P60")["kind"] == "inpainting" and keff.setting("R8")["accelerations"] == [8]
    with pytest.raises(ValueError, match="setting"):
        keff.parse_case("sc32_X4_base_10_s0")
    for name in keff.DEFAULT_CASES:
        data, _code, variant, _, _ = keff.parse_case(name)
        assert data in keff.DATA and variant in keff.VARIANTS
    st = keff.Efficiency(keff.DATA["smoke"], tmp_path / "smoke", "cpu")
    rec = st.recipe("k", "R4", "bal+redraw+k2", 10, 3)
    assert rec.training.weighting == "balanced" and rec.training.seed == 3
    assert rec.corruption.further.redraw == "step" and rec.corruption.further.draws == 2
    assert rec.training.batch_size == keff.DATA["smoke"].batch // 2  # equal compute
    assert st.recipe("k", "R4", "base", 10, 0).training.weighting == "none"


@pytest.mark.slow
def test_one_case_its_baselines_and_the_report(tmp_path):
    proc = _run("--out", str(tmp_path / "k"), "--cases", "smoke_R4_bal+redraw_3_s0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((tmp_path / "k" / "cases" / "smoke_R4_bal+redraw_3_s0.json").read_text())
    assert row["variant"] == "bal+redraw" and row["a-os"]["psnr"] > 0 and "heldout_nmse@0.01" in row
    base = json.loads((tmp_path / "k" / "baselines" / "smoke_R4_3.json").read_text())
    assert {"zero-filled", "l1-wavelet"} <= set(base)
    assert "| smoke | R4 | bal+redraw |" in (tmp_path / "k" / "results.md").read_text()
