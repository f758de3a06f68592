"""SSDD's KL encoders ``kl_f8c4`` / ``kl_f16c4``: presets of the LDM conv encoder.

Base width 128, ``channels_mult = [1, 2] + [4] * (log2 f - 1)``, 2 ResBlocks per level, 32-group
norms, mid attention, plus the extra 1×1 output conv; ``out_channels`` (= 2 × latent channels for
a KL latent) comes from the builder. 34.16M (f8c4) / 45.97M (f16c4) parameters.
"""

from __future__ import annotations

from core.nets import ConvEncoder
from core.registry import ENCODERS

__all__ = ["kl_encoder", "KL_ENCODER_MULTS"]

KL_ENCODER_MULTS: dict[int, tuple[int, ...]] = {8: (1, 2, 4, 4), 16: (1, 2, 4, 4, 4)}


def kl_encoder(downsample_factor: int, *, spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 8) -> ConvEncoder:
    """The SSDD ``f{downsample_factor}`` KL encoder (8 or 16)."""
    if downsample_factor not in KL_ENCODER_MULTS:
        raise ValueError(f"SSDD KL encoders exist for f8 and f16, got f{downsample_factor}")
    return ConvEncoder(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        base_channels=128,
        channels_mult=KL_ENCODER_MULTS[downsample_factor],
        num_res_blocks=2,
        num_groups=32,
        mid_attention=True,
    )


@ENCODERS.register("kl_f8c4")
def kl_f8c4(spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 8) -> ConvEncoder:
    """SSDD f8 KL encoder (4 latent channels -> 8 raw output channels)."""
    return kl_encoder(8, spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels)


@ENCODERS.register("kl_f16c4")
def kl_f16c4(spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 8) -> ConvEncoder:
    """SSDD f16 KL encoder (4 latent channels -> 8 raw output channels)."""
    return kl_encoder(16, spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels)
