"""DiTo-style (2+1)-D flow UNet for clips, ``u = D(x_t, 1000·t, z)`` (spec §3.5).

The topology and the time conditioning of :class:`core.nets.UNetDecoder` (stem, down stages of
ResBlocks + one resampling block, middle, up stages concatenating skips, ``GN(h)·(1 + scale) +
shift``), with three video changes:

- every 3-wide conv is factorized, its temporal half non-causal with replicate padding;
- norms are per frame and resampling is spatial only (``(1, 2, 2)``), so any frame count works,
  ``T = 1`` included, and a 1-frame clip runs exactly like the image decoder after inflation;
- ``z`` is upsampled causally by the encoder's rule (:func:`core.shapes.upsample_nearest`:
  ``[z0, z1 ×f_t, z2 ×f_t, ...]`` in time) and concatenated to ``x_t`` (DiTo conditioning).

Optional temporal self-attention after every middle block (the lowest resolution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.nets.layers import SinusoidalTimeEmbedding
from core.shapes import ShapeRule, upsample_nearest
from modalities.video.models.inflation import inflate_state
from modalities.video.models.layers import FactorizedConv, FrameGroupNorm, TemporalSelfAttention, pointwise_conv

__all__ = ["VideoUNetDecoder"]


class VideoTimeResBlock(nn.Module):
    """ResBlock with time scale/shift on the second norm; optional spatial ×2 down/up resampling."""

    def __init__(self, c_in: int, c_out: int, t_dim: int, num_groups: int, resample: str = "none") -> None:
        super().__init__()
        self.resample = resample
        self.norm1 = FrameGroupNorm(c_in, num_groups)
        self.conv1 = FactorizedConv(c_in, c_out, causal=False)
        self.t_proj = nn.Linear(t_dim, 2 * c_out)
        self.norm2 = FrameGroupNorm(c_out, num_groups)
        self.conv2 = FactorizedConv(c_out, c_out, causal=False)
        self.skip = pointwise_conv(c_in, c_out) if c_in != c_out else nn.Identity()

    def _resample(self, x: Tensor) -> Tensor:
        if self.resample == "down":
            return F.avg_pool3d(x, (1, 2, 2))
        if self.resample == "up":
            return F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return x

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        h = self.conv1(self._resample(F.silu(self.norm1(x))))
        scale, shift = self.t_proj(F.silu(t_emb)).chunk(2, dim=1)  # (B, c_out) each
        shape = (h.shape[0], h.shape[1], 1, 1, 1)
        h = self.norm2(h) * (1 + scale.reshape(shape)) + shift.reshape(shape)
        h = self.conv2(F.silu(h))
        return self.skip(self._resample(x)) + h


class VideoUNetDecoder(nn.Module):
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
        super().__init__()
        if spatial_dims != 3 or shape_rule.dims != 3:
            raise ValueError(f"the video decoder works on (B, C, T, H, W) clips: need spatial_dims=3 and a 3-axis shape_rule, "
                             f"got spatial_dims={spatial_dims}, rule {shape_rule.describe()}")
        if up_blocks != down_blocks + 1:
            raise ValueError(f"UNet topology needs up_blocks = down_blocks + 1 (one skip per block), got {down_blocks}/{up_blocks}")
        g = num_groups
        self.spatial_dims, self.in_channels, self.latent_channels = 3, in_channels, latent_channels
        self.shape_rule = shape_rule
        self.resample_levels = len(stage_channels) - 1
        self.time_embed = SinusoidalTimeEmbedding(pe_dim, t_dim)
        self.stem = FactorizedConv(in_channels + latent_channels, stage_channels[0], causal=False)
        skip_channels = [stage_channels[0]]
        self.down = nn.ModuleList()
        c = stage_channels[0]
        for i, width in enumerate(stage_channels):
            for _ in range(down_blocks):
                self.down.append(VideoTimeResBlock(c, width, t_dim, g))
                c = width
                skip_channels.append(c)
            if i != len(stage_channels) - 1:
                self.down.append(VideoTimeResBlock(c, c, t_dim, g, resample="down"))
                skip_channels.append(c)
        self.mid = nn.ModuleList(VideoTimeResBlock(c, c, t_dim, g) for _ in range(mid_blocks))
        self.temporal_attention = nn.ModuleList(TemporalSelfAttention(c, g) for _ in range(mid_blocks if temporal_attention else 0))
        self.up = nn.ModuleList()
        self.up_concat: list[bool] = []  # True for blocks that consume a skip
        for i in reversed(range(len(stage_channels))):
            width = stage_channels[i]
            for _ in range(up_blocks):
                self.up.append(VideoTimeResBlock(c + skip_channels.pop(), width, t_dim, g))
                self.up_concat.append(True)
                c = width
            if i != 0:
                self.up.append(VideoTimeResBlock(c, c, t_dim, g, resample="up"))
                self.up_concat.append(False)
        self.norm_out = FrameGroupNorm(c, g)
        self.conv_out = FactorizedConv(c, in_channels, causal=False)

    def convert_weights(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Tensors named for this module in its own format: an image DiTo network's are inflated
        (:func:`~modalities.video.models.inflation.inflate_state`); video ones pass unchanged."""
        return inflate_state(state, self)

    def forward(self, x_t: Tensor, t: Tensor, z: Tensor) -> Tensor:
        """``x_t`` (B, C, T, H, W), network time ``t`` (B,) (already ×1000), ``z`` (B, C_z, T', H', W')."""
        z_up = upsample_nearest(z.to(x_t.dtype), self.shape_rule)
        if z_up.shape[2:] != x_t.shape[2:]:
            raise ValueError(f"latent {tuple(z.shape)} does not match x_t {tuple(x_t.shape)} at {self.shape_rule.describe()}")
        stride = 2**self.resample_levels
        if any(s % stride for s in x_t.shape[3:]):
            raise ValueError(f"the video decoder with {self.resample_levels + 1} stages needs H and W multiples of {stride}, "
                             f"got {tuple(x_t.shape[3:])}; crop or pad the frames")
        t_emb = self.time_embed(t)  # (B, t_dim)
        h = self.stem(torch.cat([x_t, z_up], dim=1))  # (B, c0, T, H, W)
        skips = [h]
        for block in self.down:
            h = block(h, t_emb)
            skips.append(h)
        for i, block in enumerate(self.mid):
            h = block(h, t_emb)
            if len(self.temporal_attention):
                h = self.temporal_attention[i](h)
        for block, concat in zip(self.up, self.up_concat):
            if concat:
                h = torch.cat([h, skips.pop()], dim=1)
            h = block(h, t_emb)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, T, H, W)
