"""Built-in recipes by name (`ambientmri train demo`), `ambientmri recipes [show NAME]`, and the
`train --store/--heldout-store` shortcuts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ambientmri.cli import EXIT_BAD_INPUT, app
from ambientmri.errors import RecipeError
from ambientmri.recipes import BUILTIN_RECIPES_DIR, builtin_recipe_names, load_recipe

runner = CliRunner()
NAMES = sorted(p.stem for p in BUILTIN_RECIPES_DIR.glob("*.yaml"))


def _one_line_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == EXIT_BAD_INPUT, (result.exit_code, result.output, result.stderr)
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    return lines[0]


def test_builtin_recipes_load_by_name() -> None:
    assert builtin_recipe_names() == NAMES and "demo" in NAMES and "fastmri_brain_multicoil_r4" in NAMES
    for name in ("demo", "fastmri_brain_multicoil_r4"):
        assert load_recipe(name) == load_recipe(BUILTIN_RECIPES_DIR / f"{name}.yaml")
    assert load_recipe("demo", ["training.steps=7"]).training.steps == 7


def test_unknown_name_lists_the_builtins_and_paths_stay_paths(tmp_path, monkeypatch) -> None:
    with pytest.raises(RecipeError, match="no built-in recipe named 'nope'") as info:
        load_recipe("nope")
    assert all(name in str(info.value) for name in NAMES)
    for path in ("nope.yaml", "sub/demo", str(tmp_path / "demo")):  # a path or a .yaml name is never a built-in
        with pytest.raises(RecipeError, match="recipe file not found"):
            load_recipe(path)
    monkeypatch.chdir(tmp_path)  # an existing file of that name wins over the built-in
    tree = yaml.safe_load((BUILTIN_RECIPES_DIR / "demo.yaml").read_text())
    tree["name"] = "my-local-demo"
    Path("demo").write_text(yaml.safe_dump(tree))
    assert load_recipe("demo").name == "my-local-demo"


def test_recipes_lists_every_builtin_on_one_line() -> None:
    result = runner.invoke(app, ["recipes"])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    assert [ln.split()[0] for ln in lines] == NAMES
    demo_comment = (BUILTIN_RECIPES_DIR / "demo.yaml").read_text().splitlines()[0].lstrip("# ").strip()
    assert any(ln.startswith("demo ") and demo_comment in ln for ln in lines)


def test_recipes_show_prints_the_file() -> None:
    result = runner.invoke(app, ["recipes", "show", "inpainting_p06"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (BUILTIN_RECIPES_DIR / "inpainting_p06.yaml").read_text(encoding="utf-8")
    line = _one_line_error(["recipes", "show", "nope"])
    assert "no built-in recipe named 'nope'" in line and "demo" in line
    assert "allowed: list, show" in _one_line_error(["recipes", "bogus"])
    assert "needs a NAME" in _one_line_error(["recipes", "show"])


def test_commands_take_a_recipe_name(tmp_path) -> None:
    result = runner.invoke(app, ["check-corruption", "fastmri_brain_multicoil_r4", "--draws", "2", "--shape", "32",
                                 "32"])
    assert result.exit_code in (0, 3), result.output + result.stderr  # the condition's verdict, not a load error
    assert "full-rank condition" in result.stdout
    assert "no built-in recipe named 'nope'" in _one_line_error(["train", "nope", "--dry-run"])
    src = tmp_path / "scans"
    src.mkdir()
    for args in (["prepare", str(src), "--out", str(tmp_path / "st"), "--recipe", "nope"],
                 ["reconstruct", str(src), "--out", str(tmp_path / "r"), "--method", "zero-filled", "--recipe", "nope"],
                 ["demo", "--out", str(tmp_path / "d"), "--recipe", "nope"]):
        assert "no built-in recipe named 'nope'" in _one_line_error(args), args
    assert not any(p.name in ("st", "r", "d") for p in tmp_path.iterdir())
    # by name the recipe loads, and the commands go on to the (here empty) input folder
    assert "inputs found" in _one_line_error(["prepare", str(src), "--out", str(tmp_path / "st"), "--recipe", "demo"])
    assert "inputs found" in _one_line_error(["reconstruct", str(src), "--out", str(tmp_path / "r"), "--method",
                                              "zero-filled", "--recipe", "demo"])


def test_train_store_shortcuts(tmp_path) -> None:
    store, held = tmp_path / "store", tmp_path / "held"
    result = runner.invoke(app, ["train", "demo", "--dry-run", "--store", str(store), "--heldout-store", str(held)])
    assert result.exit_code == 0, result.output + result.stderr
    tree = yaml.safe_load(result.stdout)
    assert tree["training"]["store"] == str(store) and tree["training"]["heldout_store"] == str(held)
    assert tree["name"] == load_recipe("demo").name
