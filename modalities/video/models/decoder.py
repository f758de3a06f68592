"""DiTo-style (2+1)-D flow UNet for clips, ``u = D(x_t, 1000·t, z)`` (spec §3.5).

:class:`core.nets.unet_decoder.UNetDecoder` itself (stem, down stages of ResBlocks + one
resampling block, middle, up stages concatenating skips, ``GN(h)·(1 + scale) + shift``) built from
video layers (:data:`VIDEO_OPS`), with three video changes:

- every 3-wide conv is factorized, its temporal half non-causal with replicate padding;
- norms are per frame and resampling is spatial only (``(1, 2, 2)``), so any frame count works,
  ``T = 1`` included, and a 1-frame clip runs exactly like the image decoder after inflation;
- ``z`` is upsampled causally by the encoder's rule (:func:`core.shapes.upsample_nearest`:
  ``[z0, z1 ×f_t, z2 ×f_t, ...]`` in time) and concatenated to ``x_t`` (DiTo conditioning).

Optional temporal self-attention after every middle block (the lowest resolution).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from core.nets.unet_decoder import UNetDecoder, UNetOps
from core.shapes import ShapeRule
from modalities.video.models.inflation import inflate_state
from modalities.video.models.layers import FactorizedConv, FrameGroupNorm, TemporalSelfAttention, pointwise_conv

__all__ = ["VideoUNetDecoder", "VIDEO_OPS"]


def _factorized(c_in: int, c_out: int) -> nn.Module:
    return FactorizedConv(c_in, c_out, causal=False)


def _spatial_down(x: Tensor, factor: int) -> Tensor:
    return F.avg_pool3d(x, (1, factor, factor))


def _spatial_up(x: Tensor, factor: int) -> Tensor:
    return F.interpolate(x, scale_factor=(1.0, float(factor), float(factor)), mode="nearest")


VIDEO_OPS = UNetOps(conv=_factorized, pointwise=pointwise_conv, norm=FrameGroupNorm, down=_spatial_down, up=_spatial_up,
                    first_resampled_axis=3)


class VideoUNetDecoder(UNetDecoder):
    """Flow decoder of clips ``(B, C, T, H, W)``.

    Args:
        shape_rule: the encoder's rule (causal time axis, spatial factor); the builder passes it.
        in_channels: data channels (also the output channels).
        latent_channels: channels of z.
        stage_channels: width per resolution stage (``len - 1`` spatial ×2 resamplings).
        down_blocks, mid_blocks, up_blocks: ResBlocks per down stage / middle / up stage
            (``up_blocks = down_blocks + 1``).
        pe_dim, t_dim: sinusoidal feature count and time-embedding width.
        num_groups: GroupNorm groups (reduced automatically for narrow layers).
        temporal_attention: temporal self-attention after each middle block.
        spatial_dims: must be 3 (the builder passes it).
    """

    def __init__(
        self,
        shape_rule: ShapeRule,
        in_channels: int = 3,
        latent_channels: int = 16,
        stage_channels: tuple[int, ...] = (128, 256, 512, 512),
        down_blocks: int = 3,
        mid_blocks: int = 2,
        up_blocks: int = 4,
        pe_dim: int = 320,
        t_dim: int = 1280,
        num_groups: int = 32,
        temporal_attention: bool = False,
        spatial_dims: int = 3,
    ) -> None:
        if spatial_dims != 3 or shape_rule.dims != 3:
            raise ValueError(f"the video decoder works on (B, C, T, H, W) clips: need spatial_dims=3 and a 3-axis shape_rule, "
                             f"got spatial_dims={spatial_dims}, rule {shape_rule.describe()}")
        if up_blocks != down_blocks + 1:
            raise ValueError(f"UNet topology needs up_blocks = down_blocks + 1 (one skip per block), got {down_blocks}/{up_blocks}")
        super().__init__(
            spatial_dims=3, in_channels=in_channels, latent_channels=latent_channels, stage_channels=tuple(stage_channels),
            down_blocks=down_blocks, mid_blocks=mid_blocks, up_blocks=up_blocks, pe_dim=pe_dim, t_dim=t_dim,
            num_groups=num_groups, shape_rule=shape_rule, ops=VIDEO_OPS,
        )
        width = stage_channels[-1]
        self.temporal_attention = nn.ModuleList(TemporalSelfAttention(width, num_groups) for _ in range(mid_blocks if temporal_attention else 0))

    def middle(self, h: Tensor, t_emb: Tensor) -> Tensor:
        """The middle blocks, each followed by temporal self-attention when enabled."""
        for i, block in enumerate(self.mid):
            h = block(h, t_emb)
            if len(self.temporal_attention):
                h = self.temporal_attention[i](h)
        return h

    def convert_weights(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Tensors named for this module in its own format: an image DiTo network's are inflated
        (:func:`~modalities.video.models.inflation.inflate_state`); video ones pass unchanged."""
        return inflate_state(state, self)
