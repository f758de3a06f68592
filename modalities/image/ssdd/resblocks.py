"""Convolutional pieces of the SSDD U-ViT decoder: time embedding, spatial AdaGN, ResBlock, resampling.

The latent context (``(B, c0, h_lat, w_lat)`` from the decoder's context embedding, passed as
tokens in a :class:`LatentContext`) enters
every ResBlock's first norm as a spatially varying scale/shift; the time embedding enters the
second norm. Scale/shift maps stay at latent resolution and are broadcast over each feature map's
``r × r`` pixel blocks (nearest resizing without materialising the resized maps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LatentContext", "TimestepEmbedding", "SpatialAdaGroupNorm", "modulate_nearest_", "ResBlock", "Downsample", "Upsample"]


@dataclass(frozen=True)
class LatentContext:
    """The decoder's latent context, once per forward: ``tokens`` (B, h·w, c0) row-major over ``grid`` (h, w)."""

    tokens: Tensor
    grid: tuple[int, int]

    @classmethod
    def from_map(cls, ctx: Tensor) -> "LatentContext":
        """From a (B, c0, h, w) map (a free view when the map is channels-last)."""
        return cls(tokens=ctx.flatten(2).transpose(1, 2), grid=(ctx.shape[-2], ctx.shape[-1]))


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of the network time (``1000·t``), then Linear -> SiLU -> Linear.

    Features: ``freqs_i = exp(-ln(max_period) · i / half)`` for ``i < half``, ``[cos(t·f), sin(t·f)]``
    (cos first, frequency shift 0).
    """

    def __init__(self, channels: int, out_dim: int, max_period: float = 10000.0) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"time embedding width must be even, got {channels}")
        self.channels, self.max_period = channels, max_period
        self.linear_1 = nn.Linear(channels, out_dim)
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def features(self, t: Tensor) -> Tensor:
        """``(B,) -> (B, channels)`` in fp32."""
        half = self.channels // 2
        exponent = -math.log(self.max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
        angles = t.float()[:, None] * exponent.exp()[None, :]  # (B, half)
        return torch.cat([angles.cos(), angles.sin()], dim=1)

    def forward(self, t: Tensor) -> Tensor:
        h = self.features(t).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(h)))  # (B, out_dim)


def modulate_nearest_(h: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """``h · (1 + scale↑) + shift↑`` IN PLACE on ``h``, where ``↑`` is nearest resizing of ``(B, C, hs, ws)`` maps to h's size.

    ``h`` (B, C, H, W) with ``H = ry·hs``, ``W = rx·ws``, a fresh tensor nothing else reads (a norm
    output: GroupNorm's backward needs its input, not its output). In place because a second
    full-size tensor next to ``h`` is the decoder's peak memory; the maps are broadcast over views of
    ``h``'s ``ry × rx`` blocks, so the resized maps never exist in memory either.
    """
    batch, channels, height, width = h.shape
    hs, ws = scale.shape[-2:]
    if height % hs or width % ws:
        raise ValueError(f"feature map {height}×{width} is not an integer multiple of the context grid {hs}×{ws}")
    ry, rx = height // hs, width // ws
    if ry == rx == 1:
        return h.mul_(1 + scale).add_(shift)
    blocks = h.view(batch, channels, hs, ry, ws, rx)  # a view: writing it writes h
    blocks.mul_(1 + scale[:, :, :, None, :, None]).add_(shift[:, :, :, None, :, None])
    return h


class SpatialAdaGroupNorm(nn.Module):
    """GroupNorm without affine, modulated by ``(scale, shift) = Conv1×1(ctx)`` nearest-resized."""

    def __init__(self, channels: int, ctx_channels: int, num_groups: int = 32, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_groups, self.eps = num_groups, eps
        self.ctx_proj = nn.Conv2d(ctx_channels, 2 * channels, 1)

    def forward(self, x: Tensor, ctx: LatentContext) -> Tensor:
        # The 1×1 conv as a matmul on the context tokens (a tiny conv costs more in dispatch than in math).
        mod = F.linear(ctx.tokens, self.ctx_proj.weight.flatten(1), self.ctx_proj.bias)  # (B, h·w, 2C)
        mod = mod.unflatten(1, ctx.grid).permute(0, 3, 1, 2)  # (B, 2C, h, w), channels-last strides
        scale, shift = mod.chunk(2, dim=1)  # (B, C, h, w) each
        return modulate_nearest_(F.group_norm(x, self.num_groups, eps=self.eps), scale, shift)


class ResBlock(nn.Module):
    """``x + conv2(SiLU(GN(h)·(1 + s_t) + b_t))`` with ``h = conv1(SiLU(AdaGN(x; ctx)))``.

    ``conv2`` is zero-initialised by the decoder; ``conv_shortcut`` (1×1) exists when widths differ.
    """

    def __init__(self, c_in: int, c_out: int, ctx_channels: int, t_dim: int, num_groups: int = 32) -> None:
        super().__init__()
        self.norm1 = SpatialAdaGroupNorm(c_in, ctx_channels, num_groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time_emb_proj = nn.Linear(t_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(num_groups, c_out, eps=1e-5)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: Tensor, temb_act: Tensor, ctx: LatentContext) -> Tensor:
        """``x`` (B, c_in, H, W), ``temb_act`` = SiLU(time embedding) (B, t_dim), latent context ``ctx``."""
        # In-place SiLU and residual add on tensors nothing else reads: on CPU a fresh full-size
        # output costs more than the arithmetic (page faults; SiLU on channels-last is ~2× slower
        # out of place), and autograd supports both in place here.
        h = self.conv1(F.silu(self.norm1(x, ctx), inplace=True))  # (B, c_out, H, W)
        scale, shift = self.time_emb_proj(temb_act)[:, :, None, None].chunk(2, dim=1)  # (B, c_out, 1, 1)
        h = self.norm2(h).mul_(1 + scale).add_(shift)  # in place on the fresh norm output
        h = self.conv2(F.silu(h, inplace=True))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return h.add_(skip)


class Downsample(nn.Module):
    """Stride-2 3×3 conv, padding 1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest ×2, then a 3×3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
