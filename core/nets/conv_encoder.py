"""LDM-style convolutional encoder, generic over 1-D/2-D/3-D signals.

Per level: ``num_res_blocks`` ResBlocks (GroupNorm eps 1e-6, swish, no time input), then a
stride-2 conv after an asymmetric zero pad (right/bottom only) except at the last level. Middle:
ResBlock, single-head self-attention, ResBlock. Head: GroupNorm, swish, 3-wide conv to
``out_channels`` and an extra 1-wide conv (DiTo/SSDD's ``quant_conv`` role). With
``channels_mult=(1, 2, 4, 4)`` and ``base_channels=128`` in 2-D it is the SD/LDM ``f8`` encoder.
The spatial reduction is ``2 ** (len(channels_mult) - 1)`` along every spatial dim.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from core.nets.layers import check_spatial_dims, conv_nd, group_norm

__all__ = ["ConvEncoder"]


class EncoderResBlock(nn.Module):
    def __init__(self, dims: int, c_in: int, c_out: int, num_groups: int) -> None:
        super().__init__()
        self.norm1 = group_norm(c_in, num_groups, eps=1e-6)
        self.conv1 = conv_nd(dims, c_in, c_out, 3, padding=1)
        self.norm2 = group_norm(c_out, num_groups, eps=1e-6)
        self.conv2 = conv_nd(dims, c_out, c_out, 3, padding=1)
        self.skip = conv_nd(dims, c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head attention over all positions, with 1-wide q/k/v/out convs."""

    def __init__(self, dims: int, channels: int, num_groups: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, num_groups, eps=1e-6)
        self.q = conv_nd(dims, channels, channels, 1)
        self.k = conv_nd(dims, channels, channels, 1)
        self.v = conv_nd(dims, channels, channels, 1)
        self.proj_out = conv_nd(dims, channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        q, k, v = (m(h).flatten(2).transpose(1, 2)[:, None] for m in (self.q, self.k, self.v))  # (B, 1, N, C)
        out = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2)  # (B, C, N)
        return x + self.proj_out(out.reshape(x.shape))


class Downsample(nn.Module):
    """Asymmetric zero pad (after each spatial dim) then a stride-2 3-wide conv."""

    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        self.dims = dims
        self.conv = conv_nd(dims, channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1) * self.dims))


class ConvEncoder(nn.Module):
    """Convolutional encoder ``(B, in_channels, *S) -> (B, out_channels, *S / f)``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: data channels.
        out_channels: raw latent channels (2x latent channels for a KL latent).
        base_channels: width of the first level.
        channels_mult: per-level width multipliers; the number of levels sets the reduction.
        num_res_blocks: ResBlocks per level.
        num_groups: GroupNorm groups (reduced automatically for narrow layers).
        mid_attention: keep the middle self-attention block.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 4,
        base_channels: int = 128,
        channels_mult: tuple[int, ...] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        num_groups: int = 32,
        mid_attention: bool = True,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        d, g = spatial_dims, num_groups
        self.spatial_dims, self.in_channels, self.out_channels = d, in_channels, out_channels
        self.downsample_factor = 2 ** (len(channels_mult) - 1)
        self.conv_in = conv_nd(d, in_channels, base_channels, 3, padding=1)
        levels: list[nn.Module] = []
        c = base_channels
        for i, mult in enumerate(channels_mult):
            blocks: list[nn.Module] = []
            for _ in range(num_res_blocks):
                blocks.append(EncoderResBlock(d, c, base_channels * mult, g))
                c = base_channels * mult
            if i != len(channels_mult) - 1:
                blocks.append(Downsample(d, c))
            levels.append(nn.Sequential(*blocks))
        self.levels = nn.Sequential(*levels)
        mid: list[nn.Module] = [EncoderResBlock(d, c, c, g)]
        if mid_attention:
            mid.append(SelfAttention(d, c, g))
        mid.append(EncoderResBlock(d, c, c, g))
        self.mid = nn.Sequential(*mid)
        self.norm_out = group_norm(c, g, eps=1e-6)
        self.conv_out = conv_nd(d, c, out_channels, 3, padding=1)
        self.quant_conv = conv_nd(d, out_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)  # (B, c0, *S)
        h = self.levels(h)  # (B, c_last, *S/f)
        h = self.mid(h)
        h = self.conv_out(F.silu(self.norm_out(h)))  # (B, out_channels, *S/f)
        return self.quant_conv(h)
