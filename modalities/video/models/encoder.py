"""Causal (2+1)-D conv encoder ``(B, 3, T, H, W) -> (B, C_out, 1 + (T-1)/f_t, H/8, W/8)`` (spec §3.4).

The LDM layout of :class:`core.nets.ConvEncoder` with every 3-wide conv factorized and causal in
time (:class:`~modalities.video.models.layers.FactorizedConv`), per-frame GroupNorm and per-frame
mid attention, so latent frame ``j`` depends on data frames ``<= j·f_t`` only:
``encode(x[:, :, :1 + f_t·k]) == encode(x)[:, :, :1 + k]``. Downsampling is spatial ×2 at every
level and also temporal ×2 (``T -> 1 + (T-1)/2``) at the first ``log2 f_t`` levels.

``forward(x, cache)`` with a caller-owned :data:`~modalities.video.models.layers.StreamCache`
encodes a long clip chunk by chunk exactly (:func:`core.tiling.windowed_encode`): the first chunk
has ``1 + f_t·k`` frames, every later one ``f_t·k``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from core.shapes import ShapeRule
from modalities.video.models.inflation import inflate_state
from modalities.video.models.layers import FactorizedConv, FrameGroupNorm, FrameSelfAttention, StreamCache, pointwise_conv

__all__ = ["CausalVideoEncoder"]

ENCODER_NORM_EPS = 1e-6  # the LDM encoder's GroupNorm eps (image encoder), kept for inflation


class CausalResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, num_groups: int) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(c_in, num_groups, eps=ENCODER_NORM_EPS)
        self.conv1 = FactorizedConv(c_in, c_out, causal=True)
        self.norm2 = FrameGroupNorm(c_out, num_groups, eps=ENCODER_NORM_EPS)
        self.conv2 = FactorizedConv(c_out, c_out, causal=True)
        self.skip = pointwise_conv(c_in, c_out) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return self.skip(x) + h


class CausalDownsample(nn.Module):
    """Zero pad right/bottom + stride-2 spatial conv, then a causal temporal conv of stride 1 or 2."""

    def __init__(self, channels: int, temporal_stride: int) -> None:
        super().__init__()
        self.conv = FactorizedConv(channels, channels, causal=True, spatial_stride=2, temporal_stride=temporal_stride)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        return self.conv(x, cache)


class CausalVideoEncoder(nn.Module):
    """Causal factorized conv encoder of clips.

    Args:
        in_channels: data channels.
        out_channels: raw latent channels (2x latent channels for a KL latent).
        base_channels: width of the first level.
        channels_mult: per-level width multipliers; ``len - 1`` spatial ×2 downsamplings.
        num_res_blocks: ResBlocks per level.
        num_groups: GroupNorm groups (reduced automatically for narrow layers).
        temporal_factor: temporal compression ``f_t`` (a power of two, at most ``2 ** (levels - 1)``).
        mid_attention: per-frame spatial self-attention between the two middle ResBlocks.
        spatial_dims: must be 3 (the builder passes it).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 16,
        base_channels: int = 128,
        channels_mult: tuple[int, ...] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        num_groups: int = 32,
        temporal_factor: int = 4,
        mid_attention: bool = False,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError(f"the causal video encoder works on (B, C, T, H, W) clips (spatial_dims=3), got spatial_dims={spatial_dims}")
        downsamplings = len(channels_mult) - 1
        temporal_levels = int(temporal_factor).bit_length() - 1
        if temporal_factor < 1 or 2**temporal_levels != temporal_factor or temporal_levels > downsamplings:
            raise ValueError(f"temporal_factor must be a power of two up to 2**{downsamplings} for {len(channels_mult)} levels, "
                             f"got {temporal_factor}; add levels to channels_mult or lower temporal_factor")
        g = num_groups
        self.spatial_dims, self.in_channels, self.out_channels = 3, in_channels, out_channels
        self.downsample_factor = 2**downsamplings  # the spatial factor; time is in shape_rule
        self.shape_rule = ShapeRule((temporal_factor, self.downsample_factor, self.downsample_factor), (True, False, False))
        self.conv_in = FactorizedConv(in_channels, base_channels, causal=True)
        self.levels = nn.ModuleList()
        c = base_channels
        for i, mult in enumerate(channels_mult):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(CausalResBlock(c, base_channels * mult, g))
                c = base_channels * mult
            if i != downsamplings:
                blocks.append(CausalDownsample(c, temporal_stride=2 if i < temporal_levels else 1))
            self.levels.append(blocks)
        self.mid = nn.ModuleList([CausalResBlock(c, c, g)])
        if mid_attention:
            self.mid.append(FrameSelfAttention(c, g))
        self.mid.append(CausalResBlock(c, c, g))
        self.norm_out = FrameGroupNorm(c, g, eps=ENCODER_NORM_EPS)
        self.conv_out = FactorizedConv(c, out_channels, causal=True)
        self.quant_conv = pointwise_conv(out_channels, out_channels)

    def convert_weights(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Tensors named for this module in its own format: an image DiTo network's are inflated
        (:func:`~modalities.video.models.inflation.inflate_state`); video ones pass unchanged."""
        return inflate_state(state, self)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        """``x`` (B, C, T, H, W) -> raw latents (B, C_out, 1 + (T-1)/f_t, H/f, W/f).

        ``cache``: pass the same dict to consecutive chunks of one clip to encode it in pieces
        exactly (first chunk ``1 + f_t·k`` frames, later chunks ``f_t·k``); None encodes one clip.
        """
        h = self.conv_in(x, cache)
        for blocks in self.levels:
            for block in blocks:
                h = block(h, cache)
        for block in self.mid:
            h = block(h) if isinstance(block, FrameSelfAttention) else block(h, cache)
        h = self.conv_out(F.silu(self.norm_out(h)), cache)
        return self.quant_conv(h)
