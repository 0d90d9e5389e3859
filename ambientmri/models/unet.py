"""A factory over MONAI's ``DiffusionModelUNet`` with its constructor constraints checked up front.

MONAI's constructor fails late and cryptically when a constraint is broken (a GroupNorm error in
the middle of the forward pass, an attention reshape error, an index error on ``num_res_blocks``).
:func:`unet_problems` lists every broken constraint as one sentence, and :func:`build_unet` raises
them all at once as a :class:`ModelConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ambientmri.errors import AmbientError

__all__ = ["ModelConfigError", "build_unet", "unet_problems"]


class ModelConfigError(AmbientError):
    """The network configuration breaks a constraint of MONAI's DiffusionModelUNet."""


def _as_tuple(value: int | Sequence[int] | Sequence[bool], levels: int) -> tuple:
    if isinstance(value, (int, bool)):
        return (value,) * levels
    return tuple(value)


def unet_problems(
    *,
    spatial_dims: int,
    channels: Sequence[int],
    num_res_blocks: int | Sequence[int],
    attention_levels: Sequence[bool],
    norm_num_groups: int,
    num_head_channels: int | Sequence[int],
    image_shape: Sequence[int] | None = None,
) -> list[str]:
    """Every broken constraint of ``DiffusionModelUNet(...)``, one sentence each (empty if none).

    Args:
        spatial_dims: 2 for slices, 3 for volumes.
        channels: feature channels per level.
        num_res_blocks: residual blocks per level (int, or one per level).
        attention_levels: whether each level has self-attention.
        norm_num_groups: GroupNorm groups; must divide every channel count.
        num_head_channels: channels per attention head (int, or one per level).
        image_shape: the spatial shape the network will see; each side must divide by
            ``2 ** (levels - 1)``.
    """
    problems: list[str] = []
    levels = len(channels)
    if spatial_dims not in (2, 3):
        problems.append(f"spatial_dims must be 2 (slices) or 3 (volumes), got {spatial_dims}")
    if levels < 1:
        problems.append("channels must list at least one level")
        return problems
    if any(c < 1 for c in channels):
        problems.append(f"channels must be positive, got {list(channels)}")
    if norm_num_groups < 1:
        problems.append(f"norm_num_groups must be positive, got {norm_num_groups}")
    else:
        bad = [c for c in channels if c % norm_num_groups]
        if bad:
            problems.append(
                f"every channel count must be a multiple of norm_num_groups={norm_num_groups}; "
                f"{bad} are not (channels={list(channels)})"
            )
    res = _as_tuple(num_res_blocks, levels)
    if len(res) != levels:
        problems.append(
            f"num_res_blocks lists {len(res)} levels but channels has {levels}; give one per level or a single int"
        )
    elif any(r < 1 for r in res):
        problems.append(f"num_res_blocks must be at least 1 per level, got {list(res)}")
    if len(attention_levels) != levels:
        problems.append(f"attention_levels lists {len(attention_levels)} levels but channels has {levels}")
    heads = _as_tuple(num_head_channels, levels)
    if len(heads) != levels:
        problems.append(f"num_head_channels lists {len(heads)} levels but channels has {levels}")
    elif len(attention_levels) == levels:
        for lvl, (att, c, h) in enumerate(zip(attention_levels, channels, heads, strict=True)):
            if att and (h < 1 or c % h):
                problems.append(
                    f"level {lvl}: channels {c} must be a multiple of num_head_channels {h} where attention is on"
                )
        # MONAI's middle block always has attention, at the last level's channels and head size
        c, h = channels[-1], heads[-1]
        if not attention_levels[-1] and (h < 1 or c % h):
            problems.append(
                f"num_head_channels: the last level's {c} channels must be a multiple of num_head_channels {h} "
                "even without attention there (MONAI's middle block always has attention)"
            )
    if image_shape is not None:
        factor = 2 ** (levels - 1)
        if len(image_shape) != spatial_dims:
            problems.append(f"image shape {list(image_shape)} has {len(image_shape)} axes, spatial_dims={spatial_dims}")
        bad_sides = [s for s in image_shape if s % factor]
        if bad_sides:
            problems.append(
                f"image sides {list(image_shape)} must divide by 2**(levels-1) = {factor} for {levels} levels; "
                "crop the data (data.crop) or use fewer levels"
            )
    if any(attention_levels):
        try:
            import einops  # noqa: F401
        except ImportError:
            problems.append("attention levels need the 'einops' package (pip install einops)")
    return problems


def build_unet(
    *,
    in_channels: int,
    out_channels: int,
    spatial_dims: int = 2,
    channels: Sequence[int] = (64, 128, 128, 128),
    num_res_blocks: int | Sequence[int] = 2,
    attention_levels: Sequence[bool] = (False, False, True, True),
    norm_num_groups: int = 32,
    num_head_channels: int | Sequence[int] = 32,
    image_shape: Sequence[int] | None = None,
    use_flash_attention: bool = False,
) -> nn.Module:
    """A MONAI ``DiffusionModelUNet`` after checking every constructor constraint.

    Raises:
        ModelConfigError: one message listing every broken constraint.
    """
    problems = unet_problems(
        spatial_dims=spatial_dims,
        channels=channels,
        num_res_blocks=num_res_blocks,
        attention_levels=attention_levels,
        norm_num_groups=norm_num_groups,
        num_head_channels=num_head_channels,
        image_shape=image_shape,
    )
    if problems:
        raise ModelConfigError("model: " + "; ".join(problems))
    from monai.networks.nets import DiffusionModelUNet

    levels = len(channels)
    return DiffusionModelUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        num_res_blocks=_as_tuple(num_res_blocks, levels),
        channels=tuple(channels),
        attention_levels=tuple(attention_levels),
        norm_num_groups=norm_num_groups,
        num_head_channels=_as_tuple(num_head_channels, levels),
        use_flash_attention=use_flash_attention and torch.cuda.is_available(),
    )
