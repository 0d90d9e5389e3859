"""Hostile and careless input (issue 11 §3): each is one line naming the file or key, a non-zero
exit, no traceback and no partial output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ambientmri.cli import EXIT_BAD_INPUT, app
from ambientmri.errors import RecipeError
from ambientmri.recipes import MAX_YAML_NODES, load_recipe, safe_yaml_load, validate_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
runner = CliRunner()

SMALL = """
name: t
data: {kind: synthetic, challenge: singlecoil, matrix: [32, 16], crop: [16, 16]}
corruption: {kind: inpainting, p: 0.5, delta: 0.1}
model: {kind: mlp, hidden: [8], embedding_dim: 4}
"""


def _one_line(args: list[str], *needles: str, code: int = EXIT_BAD_INPUT) -> str:
    result = runner.invoke(app, args)
    err = result.stderr
    assert result.exit_code == code, (result.exit_code, result.output, err)
    assert "Traceback" not in result.output + err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ",".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    lines.append("data: {kind: synthetic}")
    lines.append(f"corruption: {{kind: inpainting, p: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


# -- YAML ------------------------------------------------------------------------------------------
def test_alias_bomb_is_refused_at_load_time(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb())
    assert path.stat().st_size < 1024
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ambientmri", "check-corruption", str(path)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert time.perf_counter() - t0 < 30
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "bomb.yaml" in lines[0] and "alias" in lines[0] and "Traceback" not in proc.stderr


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(Exception, match="alias"):
        safe_yaml_load("a: &a [*a]\n")


def test_aliases_below_the_limit_still_work() -> None:
    tree = safe_yaml_load("base: &b {p: 0.5}\nx: *b\ny: [*b, *b]\n")
    assert tree["x"] == {"p": 0.5} and tree["y"] == [{"p": 0.5}, {"p": 0.5}]
    assert MAX_YAML_NODES >= 10_000  # real recipes (a few hundred nodes) stay far below


def test_error_messages_never_repr_an_unbounded_value() -> None:
    big = [[list(range(50))] * 40] * 40  # 80 000 values: below the alias limit, huge when repr'd
    tree = {"data": {"kind": "synthetic"}, "corruption": {"kind": "inpainting", "p": big}}
    with pytest.raises(RecipeError) as info:
        validate_recipe(tree, "r.yaml")
    assert len(str(info.value)) < 300 and "corruption.p" in str(info.value)
    huge_key = {"data": {"kind": "synthetic"}, "corruption": {"kind": "inpainting"}, "k" * 100_000: 1}
    with pytest.raises(RecipeError) as info:
        validate_recipe(huge_key, "r.yaml")
    assert len(str(info.value)) < 400


def test_duplicate_key_names_the_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(SMALL + "training: {steps: 2}\ntraining: {steps: 3}\n")
    line = _one_line(["train", str(path), "--dry-run"], "dup.yaml", "duplicate key 'training'", "line 7")
    assert "first on line 6" in line
    nested = tmp_path / "nested.yaml"
    nested.write_text("data: {kind: synthetic}\ncorruption:\n  kind: inpainting\n  p: 0.5\n  p: 0.6\n")
    _one_line(["check-corruption", str(nested)], "nested.yaml", "duplicate key 'p'", "line 5")


def test_duplicate_key_in_an_override_is_refused() -> None:
    with pytest.raises(RecipeError, match="duplicate key 'a'"):
        load_recipe(RECIPES / "demo.yaml", ["training.betas={a: 1, a: 2}"])


def test_merge_keys_may_be_overridden() -> None:
    tree = safe_yaml_load("b: &b {p: 0.5, delta: 0.1}\nc:\n  <<: *b\n  p: 0.4\n")
    assert tree["c"] == {"p": 0.4, "delta": 0.1}


# -- finite floats ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override",
    ["training.lr=.inf", "training.lr=.nan", "training.p_mean=-.inf", "training.betas=[0.9, .nan]",
     "training.eval_sigmas=[0.1, .inf]", "model.sigma_data=.inf", "data.snr_db=.nan",
     "corruption.further.acceleration_increase=.inf", "prepare.scale_percentile=.nan", "training.lr=1e400"],
)
def test_non_finite_floats_are_refused_everywhere(override: str) -> None:
    with pytest.raises(RecipeError, match="must be a finite number") as info:
        load_recipe(RECIPES / "demo.yaml", [override])
    assert override.split("=")[0].split(".")[-1] in str(info.value)


def test_inf_learning_rate_from_the_cli() -> None:
    _one_line(["train", str(RECIPES / "demo.yaml"), "--set", "training.lr=.inf", "--dry-run"],
              "demo.yaml", "training.lr", "finite")


# -- MONAI's middle-block attention ------------------------------------------------------------------
def test_middle_block_head_channels_name_the_recipe_key() -> None:
    args = ["train", str(RECIPES / "demo.yaml"), "--dry-run", "--set", "model.attention_levels=[false,false,false]",
            "--set", "model.num_head_channels=48"]
    line = _one_line(args, "demo.yaml", "model.num_head_channels", "48")
    assert "num_channels must be divisible" not in line


def test_middle_block_check_matches_monai() -> None:
    """The new constraint is exactly MONAI's: it raises for it, and builds when it holds."""
    from monai.networks.nets import DiffusionModelUNet

    from ambientmri.models.unet import unet_problems

    kw = {"spatial_dims": 2, "channels": [16, 32], "attention_levels": [False, False], "norm_num_groups": 8}
    assert unet_problems(num_res_blocks=1, num_head_channels=24, **kw)
    with pytest.raises(ValueError, match="divisible"):
        DiffusionModelUNet(in_channels=2, out_channels=2, num_res_blocks=1, num_head_channels=24, **kw)
    assert not unet_problems(num_res_blocks=1, num_head_channels=16, **kw)
    DiffusionModelUNet(in_channels=2, out_channels=2, num_res_blocks=1, num_head_channels=16, **kw)


# -- files -------------------------------------------------------------------------------------------
NIFTI_RECIPE = "name: n\ndata: {kind: nifti}\ncorruption: {kind: inpainting, p: 0.5}\n"


def _nifti_case(tmp_path: Path, data: np.ndarray) -> tuple[Path, Path]:
    import nibabel as nib

    src = tmp_path / "src"
    src.mkdir()
    nib.save(nib.Nifti1Image(data, np.eye(4)), src / "scan.nii.gz")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(NIFTI_RECIPE)
    return src, recipe


def test_rgb_nifti_is_one_line(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    src, recipe = _nifti_case(tmp_path, rgb)
    out = tmp_path / "store"
    _one_line(["prepare", str(src), "--out", str(out), "--recipe", str(recipe)], "scan.nii.gz", "colour (RGB)")
    assert not out.exists()


def test_empty_nifti_reports_its_real_shape(tmp_path: Path) -> None:
    src, recipe = _nifti_case(tmp_path, np.zeros((32, 32, 0), np.float32))
    out = tmp_path / "store"
    _one_line(["prepare", str(src), "--out", str(out), "--recipe", str(recipe)], "scan.nii.gz", "(32, 32, 0)")
    assert not out.exists()


@pytest.mark.parametrize(("array", "needle"), [(np.array(["a", "b"]), "dtype <U1"),
                                               (np.zeros(5, np.float32), "shape (5,)"),
                                               (np.full((2, 4, 4), np.nan, np.float32), "NaN")])
def test_compare_samples_bad_npy_is_one_line(tmp_path: Path, array: np.ndarray, needle: str) -> None:
    bad = tmp_path / "bad.npy"
    np.save(bad, array)
    good = tmp_path / "good.npy"
    np.save(good, np.ones((2, 8, 8), np.float32))
    out = tmp_path / "report.json"
    _one_line(["compare-samples", "--samples", str(bad), "--reference", str(good), "--json", str(out)],
              "bad.npy", needle)
    assert not out.exists()


# -- check-corruption options ----------------------------------------------------------------------
@pytest.mark.parametrize("shape", [["-4", "32"], ["32", "0"]])
def test_check_corruption_refuses_non_positive_shape(tmp_path: Path, shape: list[str]) -> None:
    out = tmp_path / "c.json"
    _one_line(["check-corruption", str(RECIPES / "demo.yaml"), "--shape", *shape, "--draws", "4", "--json", str(out)],
              "--shape", " ".join(shape))
    assert not out.exists()


def test_check_corruption_says_when_it_draws_more(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    result = runner.invoke(app, ["check-corruption", str(RECIPES / "demo.yaml"), "--shape", "16", "16",
                                 "--draws", "4", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["draws_requested"] == 4 and report["draws"] > 4
    assert f"{report['draws']} draws instead of the 4 requested" in " ".join(result.output.split())
