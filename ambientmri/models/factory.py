"""Build the preconditioned denoiser a recipe's ``model`` section describes."""

from __future__ import annotations

from collections.abc import Sequence

from ambientmri.models.mlp import MLPNet
from ambientmri.models.precond import EDMPrecond
from ambientmri.models.unet import build_unet

__all__ = ["build_model"]

COND_CHANNELS = 1


def build_model(cfg: object, image_shape: Sequence[int]) -> EDMPrecond:
    """An :class:`EDMPrecond` around the network of ``cfg`` (a ``UNetModel`` or ``MLPModel``).

    Args:
        cfg: the recipe's ``model`` section.
        image_shape: the image grid the network sees, e.g. ``(H, W)``.

    Raises:
        ModelConfigError: the UNet's constraints fail for this image shape.
    """
    kind = getattr(cfg, "kind", None)
    in_channels = 2 + COND_CHANNELS + 1
    if kind == "unet":
        net = build_unet(
            in_channels=in_channels,
            out_channels=2,
            spatial_dims=cfg.spatial_dims,  # type: ignore[attr-defined]
            channels=cfg.channels,  # type: ignore[attr-defined]
            num_res_blocks=cfg.num_res_blocks,  # type: ignore[attr-defined]
            attention_levels=cfg.attention_levels,  # type: ignore[attr-defined]
            norm_num_groups=cfg.norm_num_groups,  # type: ignore[attr-defined]
            num_head_channels=cfg.num_head_channels,  # type: ignore[attr-defined]
            image_shape=tuple(image_shape),
            use_flash_attention=cfg.use_flash_attention,  # type: ignore[attr-defined]
        )
    elif kind == "mlp":
        net = MLPNet(in_channels, 2, image_shape, cfg.hidden, cfg.embedding_dim)  # type: ignore[attr-defined]
    else:
        raise ValueError(f"model.kind: unknown model kind {kind!r}; allowed: unet, mlp")
    return EDMPrecond(
        net,
        sigma_data=cfg.sigma_data,  # type: ignore[attr-defined]
        noise_scale=cfg.noise_scale,  # type: ignore[attr-defined]
        skip="ambient" if cfg.skip == "auto" else cfg.skip,  # type: ignore[attr-defined]  # a bare model section
        cond_channels=COND_CHANNELS,
    )
