"""Recipe schema: validation messages, overrides, shipped recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ambientmri.errors import RecipeError
from ambientmri.recipes import CartesianConfig, Recipe, dump_recipe, load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


BASE = """
data: {kind: synthetic, matrix: [64, 32]}
corruption: {kind: cartesian, accelerations: [4], center_fractions: [0.08]}
"""


def test_demo_recipe_validates_and_builds() -> None:
    rec = load_recipe(RECIPES / "demo.yaml")
    assert isinstance(rec.corruption, CartesianConfig)
    assert rec.corruption.mask_type == "random" and rec.corruption.accelerations == [4.0]
    assert rec.corruption.further.acceleration_increase == 1.0
    assert rec.data.kind == "synthetic" and rec.data.challenge == "multicoil"
    rec.corruption.build()
    # the resolved dump validates back to the same recipe
    import yaml

    assert Recipe.model_validate(yaml.safe_load(dump_recipe(rec))) == rec


def test_unknown_key_lists_allowed_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + "  \n")
    path.write_text(BASE.replace("accelerations: [4]", "accelerations: [4], acceleraton: 4"))
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    msg = str(exc.value)
    assert "corruption.acceleraton" in msg and "unknown key" in msg and "accelerations" in msg
    assert "\n" not in msg


def test_wrong_literal_names_allowed_values(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace("kind: cartesian,", "kind: cartesian, mask_type: spiral,"))
    with pytest.raises(RecipeError, match=r"corruption\.mask_type.*'random'.*'magic_fraction'.*spiral"):
        load_recipe(path)


def test_unknown_kind_names_the_kinds(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace("kind: cartesian", "kind: radial"))
    with pytest.raises(RecipeError, match=r"corruption.*'cartesian'.*'inpainting'"):
        load_recipe(path)


def test_value_out_of_range(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace("accelerations: [4]", "accelerations: [0.5]"))
    with pytest.raises(RecipeError, match=r"corruption\.accelerations\.0.*greater than 1"):
        load_recipe(path)


def test_further_needs_exactly_one_mode(tmp_path: Path) -> None:
    both = "center_fractions: [0.08], further: {extra: 3, extra_fraction: 0.2}}"
    text = BASE.replace("center_fractions: [0.08]}", both)
    with pytest.raises(RecipeError, match="exactly one of"):
        load_recipe(_write(tmp_path, text))
    ok = BASE.replace("center_fractions: [0.08]}", "center_fractions: [0.08], further: {extra: 3}}")
    assert load_recipe(_write(tmp_path, ok)).corruption.further.extra == 3


def test_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE)
    rec = load_recipe(path, ["corruption.accelerations=[8]", "data.coils=2", "name=x"])
    assert rec.corruption.accelerations == [8.0] and rec.data.coils == 2 and rec.name == "x"
    rec = load_recipe(path, ["corruption={kind: inpainting, p: 0.9}"])
    assert rec.corruption.kind == "inpainting" and rec.corruption.p == 0.9
    with pytest.raises(RecipeError, match="key.sub=value"):
        load_recipe(path, ["nonsense"])
    with pytest.raises(RecipeError, match="data.volumes"):
        load_recipe(path, ["data.volumes=0"])


def test_not_yaml_and_missing(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(_write(tmp_path, "data: [unclosed"))
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="corruption: required key is missing"):
        load_recipe(_write(tmp_path, "data: {kind: synthetic}"))


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path: Path) -> None:
    load_recipe(path).corruption.build()


@pytest.mark.parametrize(("objective", "given", "resolved"), [
    ("ambient", None, "ambient"), ("clean", None, "edm"), ("naive", None, "edm"),
    ("clean", "ambient", "ambient"), ("ambient", "edm", "edm"),
])
def test_skip_auto_follows_the_objective(objective: str, given: str | None, resolved: str) -> None:
    """Clean/naive training wants EDM's c_out (errors shrink with σ); ambient training wants c_out = σ_d."""
    from ambientmri.models.factory import build_model
    from ambientmri.recipes import validate_recipe

    model = {"kind": "unet", "channels": [16, 16], "attention_levels": [False, False], "norm_num_groups": 8,
             "num_head_channels": 8, **({"skip": given} if given else {})}
    rec = validate_recipe({"data": {"kind": "synthetic"}, "corruption": {"kind": "inpainting"}, "model": model,
                           "training": {"objective": objective}}, "t")
    assert rec.model.skip == resolved
    assert f"skip: {resolved}" in dump_recipe(rec)  # runs record the resolved mode
    assert build_model(rec.model, (16, 16)).skip == resolved
