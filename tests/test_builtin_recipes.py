"""The shipped recipes (ambientmri/builtin_recipes, linked as recipes/): they validate, their
models fit their image grids, and the published settings are what the docs say they are."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from ambientmri.errors import RecipeError
from ambientmri.models.factory import build_model
from ambientmri.models.unet import unet_problems
from ambientmri.recipes import Recipe, dump_recipe, load_recipe

BUILTIN = Path(__file__).resolve().parents[1] / "ambientmri" / "builtin_recipes"
ALL = sorted(BUILTIN.glob("*.yaml"))
FASTMRI = [p for p in ALL if p.name.startswith("fastmri_")]
EXPECTED = {
    "block.yaml",
    "fastmri_brain_multicoil_r4.yaml",
    "fastmri_brain_multicoil_r8.yaml",
    "fastmri_knee_singlecoil_r4.yaml",
    "fastmri_knee_singlecoil_r8.yaml",
    "inpainting_p06.yaml",
    "inpainting_p09.yaml",
    "poisson_cs.yaml",
}


def _grid(rec: Recipe) -> tuple[int, int]:
    """The image grid the model sees: data.crop, else the synthetic matrix."""
    if rec.data.crop is not None:
        return (int(rec.data.crop[0]), int(rec.data.crop[1]))
    assert rec.data.kind == "synthetic", f"{rec.name}: a non-synthetic recipe needs data.crop to fix its grid"
    return (int(rec.data.matrix[0]), int(rec.data.matrix[1]))


def test_the_recipes_are_shipped() -> None:
    assert EXPECTED <= {p.name for p in ALL}
    assert (Path(__file__).resolve().parents[1] / "recipes" / "block.yaml").is_file()  # the recipes/ link


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_recipe_validates_and_round_trips(path: Path) -> None:
    rec = load_recipe(path)
    rec.corruption.build()
    assert Recipe.model_validate(yaml.safe_load(dump_recipe(rec))) == rec
    if path.name in EXPECTED:
        assert rec.name == path.stem


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_model_fits_the_grid(path: Path) -> None:
    rec = load_recipe(path)
    grid = _grid(rec)
    if rec.model.kind == "unet":
        m = rec.model
        problems = unet_problems(
            spatial_dims=m.spatial_dims, channels=m.channels, num_res_blocks=m.num_res_blocks,
            attention_levels=m.attention_levels, norm_num_groups=m.norm_num_groups,
            num_head_channels=m.num_head_channels, image_shape=grid,
        )
        assert problems == []
    with torch.device("meta"):  # shapes only: no memory, no time
        model = build_model(rec.model, grid)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("path", FASTMRI, ids=lambda p: p.name)
def test_fastmri_recipes_need_a_path_and_still_validate(path: Path) -> None:
    rec = load_recipe(path)
    assert rec.data.kind == "fastmri" and rec.data.path is None
    assert rec.training.store is None
    assert rec.data.crop is not None
    with_path = load_recipe(path, ["data.path=/data/fastmri/train"])
    assert with_path.data.path == Path("/data/fastmri/train")
    # GPU-scale settings
    assert rec.training.precision == "auto" and 8 <= rec.training.batch_size <= 16
    assert rec.training.lr == pytest.approx(2e-4) and rec.training.steps >= 10_000


def test_knee_singlecoil_recipes() -> None:
    r4 = load_recipe(BUILTIN / "fastmri_knee_singlecoil_r4.yaml")
    r8 = load_recipe(BUILTIN / "fastmri_knee_singlecoil_r8.yaml")
    for rec in (r4, r8):
        assert rec.data.challenge == "singlecoil" and tuple(rec.data.crop) == (320, 320)
        assert rec.corruption.kind == "cartesian" and rec.corruption.mask_type == "random"
        assert rec.corruption.further.acceleration_increase == 1.0
    assert r4.corruption.center_fractions == [0.08] and r4.corruption.accelerations == [4]
    assert r8.corruption.center_fractions == [0.04] and r8.corruption.accelerations == [8]


def test_brain_multicoil_recipes_follow_aali() -> None:
    for name, cf, acc in (("r4", 0.08, 4), ("r8", 0.04, 8)):
        rec = load_recipe(BUILTIN / f"fastmri_brain_multicoil_{name}.yaml")
        assert rec.data.challenge == "multicoil" and tuple(rec.data.crop) == (384, 320)
        assert rec.prepare.virtual_coils == 4 and rec.prepare.coil_maps.method == "espirit"
        assert rec.corruption.center_fractions == [cf] and rec.corruption.accelerations == [acc]
        assert rec.corruption.further.acceleration_increase == 1.0  # R̃ ≈ R + 1
        assert all(side % 2 ** (len(rec.model.channels) - 1) == 0 for side in rec.data.crop)


def test_image_domain_and_cs_recipes() -> None:
    for name, p in (("inpainting_p06", 0.6), ("inpainting_p09", 0.9)):
        rec = load_recipe(BUILTIN / f"{name}.yaml")
        assert rec.corruption.kind == "inpainting"
        assert rec.corruption.p == pytest.approx(p) and rec.corruption.delta == pytest.approx(0.1)
    block = load_recipe(BUILTIN / "block.yaml")
    assert block.corruption.kind == "block" and block.corruption.extra_blocks >= 1
    assert block.data.kind == "synthetic" and block.data.challenge == "singlecoil"
    cs = load_recipe(BUILTIN / "poisson_cs.yaml")
    assert cs.corruption.kind == "kspace2d" and cs.corruption.pattern == "poisson"
    assert 6 <= cs.corruption.acceleration <= 8 and not cs.corruption.crop_corner
    assert cs.data.challenge == "multicoil"


@pytest.mark.parametrize("name", ["block", "inpainting_p06", "inpainting_p09", "poisson_cs"])
def test_synthetic_recipes_are_cpu_sized(name: str) -> None:
    rec = load_recipe(BUILTIN / f"{name}.yaml")
    assert rec.data.kind == "synthetic"
    with torch.device("meta"):
        params = sum(p.numel() for p in build_model(rec.model, _grid(rec)).parameters())
    assert params < 5_000_000
    assert rec.training.steps * rec.training.batch_size <= 50_000


def test_invalid_model_override_names_the_key() -> None:
    path = BUILTIN / "fastmri_knee_singlecoil_r4.yaml"
    with pytest.raises(RecipeError) as exc:
        load_recipe(path, ["model.channels=[30,60]"])
    msg = str(exc.value)
    assert exc.value.key.endswith("model") and "norm_num_groups" in msg and "[30, 60]" in msg
    assert "\n" not in msg
    # an unknown training key lists the allowed ones
    with pytest.raises(RecipeError, match=r"training\.stpes: unknown key; allowed keys: .*steps"):
        load_recipe(path, ["training.stpes=10"])
