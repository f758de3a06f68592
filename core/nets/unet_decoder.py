"""Consistency-decoder-style flow UNet (DiTo's decoder family), generic over 1-D/2-D/3-D.

Input is ``x_t`` concatenated on channels with the latent ``z`` nearest-upsampled to the data
resolution (:func:`core.shapes.upsample_nearest`, which honours per-axis and causal factors); the time ``1000·t`` enters through sinusoidal features + MLP and modulates the second
GroupNorm of every block as ``GN(h)·(1 + scale) + shift``. No attention. Stage widths
``stage_channels`` (DiTo: c0, c1, c2, c2), ``down_blocks`` ResBlocks per down stage followed by
a resampling block, ``mid_blocks`` in the middle, ``up_blocks`` per up stage each concatenating
one skip (the stem output and every down-block output, resampling blocks included, are skips).
The output is the velocity-type prediction ``u`` with ``out_channels`` channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.nets.layers import SinusoidalTimeEmbedding, avg_pool_nd, check_spatial_dims, conv_nd, group_norm
from core.shapes import ShapeRule, upsample_nearest

__all__ = ["UNetDecoder", "UNetOps", "TimeResBlock"]


@dataclass(frozen=True)
class UNetOps:
    """The layers a :class:`UNetDecoder` is built from, so a plugin changes the layers, not the topology.

    ``conv(c_in, c_out)``: the 3-wide conv (stem, blocks, output); ``pointwise(c_in, c_out)``: the
    1-wide skip conv; ``norm(c, groups)``; ``down(x, factor)`` / ``up(x, factor)``: the resampling
    between stages; ``first_resampled_axis``: the first axis of ``x`` the resampling shrinks (2:
    every data axis; video: 3, frames are never resampled).
    """

    conv: Callable[[int, int], nn.Module]
    pointwise: Callable[[int, int], nn.Module]
    norm: Callable[[int, int], nn.Module]
    down: Callable[[Tensor, int], Tensor]
    up: Callable[[Tensor, int], Tensor]
    first_resampled_axis: int = 2

    @staticmethod
    def dense(dims: int) -> UNetOps:
        """Plain ``dims``-D convs, GroupNorm, average pooling and nearest upsampling on every axis (DiTo's)."""
        return UNetOps(
            conv=partial(_conv3, dims), pointwise=partial(_pointwise, dims), norm=group_norm,
            down=avg_pool_nd, up=_nearest_up,
        )


def _conv3(dims: int, c_in: int, c_out: int) -> nn.Module:
    return conv_nd(dims, c_in, c_out, 3, padding=1)


def _pointwise(dims: int, c_in: int, c_out: int) -> nn.Module:
    return conv_nd(dims, c_in, c_out, 1)


def _nearest_up(x: Tensor, factor: int) -> Tensor:
    return F.interpolate(x, scale_factor=float(factor), mode="nearest")


class TimeResBlock(nn.Module):
    """ResBlock with time scale/shift on the second norm; optional down/up resampling by ``factor``."""

    def __init__(
        self, ops: UNetOps, c_in: int, c_out: int, t_dim: int, num_groups: int, resample: str = "none", factor: int = 2,
    ) -> None:
        super().__init__()
        self.resample, self.factor = resample, factor
        self._down, self._up = ops.down, ops.up
        self.norm1 = ops.norm(c_in, num_groups)
        self.conv1 = ops.conv(c_in, c_out)
        self.t_proj = nn.Linear(t_dim, 2 * c_out)
        self.norm2 = ops.norm(c_out, num_groups)
        self.conv2 = ops.conv(c_out, c_out)
        self.skip = ops.pointwise(c_in, c_out) if c_in != c_out else nn.Identity()

    def _resample(self, x: Tensor) -> Tensor:
        if self.resample == "down":
            return self._down(x, self.factor)
        if self.resample == "up":
            return self._up(x, self.factor)
        return x

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        h = self.conv1(self._resample(F.silu(self.norm1(x))))
        scale, shift = self.t_proj(F.silu(t_emb)).chunk(2, dim=1)  # (B, c_out) each
        shape = (h.shape[0], h.shape[1]) + (1,) * (h.ndim - 2)
        h = self.norm2(h) * (1 + scale.reshape(shape)) + shift.reshape(shape)
        h = self.conv2(F.silu(h))
        return self.skip(self._resample(x)) + h


class UNetDecoder(nn.Module):
    """Flow decoder ``u = D(x_t, 1000·t, z)``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: data channels (also the output channels).
        latent_channels: channels of z.
        upsample_factor: one data / latent ratio for every axis (default 8); give either this or ``shape_rule``.
        shape_rule: the encoder's per-axis rule (factors, causal axes); the builder passes it.
        stage_channels: width per resolution stage.
        down_blocks, mid_blocks, up_blocks: ResBlocks per down stage / middle / up stage.
        pe_dim, t_dim: sinusoidal feature count and time-embedding width.
        num_groups: GroupNorm groups (reduced automatically for narrow layers).
        resample_factors: down/up factor between consecutive stages, one per stage boundary
            (``len(stage_channels) - 1`` entries; default all 2). Audio uses e.g. ``(2, 4, 5, 8)`` so a
            hop-320 latent sits at the lowest stage with 5 stages instead of 9.
        ops: the layers (default :meth:`UNetOps.dense`); video passes factorized convs and per-frame norms.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        latent_channels: int = 4,
        upsample_factor: int | None = None,
        stage_channels: tuple[int, ...] = (128, 256, 512, 512),
        down_blocks: int = 3,
        mid_blocks: int = 2,
        up_blocks: int = 4,
        pe_dim: int = 320,
        t_dim: int = 1280,
        num_groups: int = 32,
        shape_rule: ShapeRule | None = None,
        resample_factors: tuple[int, ...] | None = None,
        ops: UNetOps | None = None,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        factors = _resolve_resample_factors(len(stage_channels), resample_factors)
        d, g = spatial_dims, num_groups
        self.spatial_dims, self.in_channels, self.latent_channels = d, in_channels, latent_channels
        self.shape_rule = _resolve_rule(spatial_dims, upsample_factor, shape_rule)
        self.resample_factors = factors
        self.resample_levels = len(stage_channels) - 1
        self.size_multiple = math.prod(factors)  # poolings: data sizes must be multiples of their product
        self.ops = ops = ops or UNetOps.dense(d)
        self.time_embed = SinusoidalTimeEmbedding(pe_dim, t_dim)
        self.stem = ops.conv(in_channels + latent_channels, stage_channels[0])

        skip_channels = [stage_channels[0]]
        self.down = nn.ModuleList()
        c = stage_channels[0]
        for i, width in enumerate(stage_channels):
            for _ in range(down_blocks):
                self.down.append(TimeResBlock(ops, c, width, t_dim, g))
                c = width
                skip_channels.append(c)
            if i != len(stage_channels) - 1:
                self.down.append(TimeResBlock(ops, c, c, t_dim, g, resample="down", factor=factors[i]))
                skip_channels.append(c)
        self.mid = nn.ModuleList(TimeResBlock(ops, c, c, t_dim, g) for _ in range(mid_blocks))
        self.up = nn.ModuleList()
        self.up_concat: list[bool] = []  # True for blocks that consume a skip
        for i in reversed(range(len(stage_channels))):
            width = stage_channels[i]
            for _ in range(up_blocks):
                self.up.append(TimeResBlock(ops, c + skip_channels.pop(), width, t_dim, g))
                self.up_concat.append(True)
                c = width
            if i != 0:
                self.up.append(TimeResBlock(ops, c, c, t_dim, g, resample="up", factor=factors[i - 1]))
                self.up_concat.append(False)
        if skip_channels:
            raise ValueError(
                f"UNet topology leaves {len(skip_channels)} unused skips: up_blocks must equal down_blocks + 1"
            )
        self.norm_out = ops.norm(c, g)
        self.conv_out = ops.conv(c, in_channels)

    def middle(self, h: Tensor, t_emb: Tensor) -> Tensor:
        """The middle blocks at the lowest resolution (a plugin may add layers between them)."""
        for block in self.mid:
            h = block(h, t_emb)
        return h

    def forward(self, x_t: Tensor, t: Tensor, z: Tensor) -> Tensor:
        """``x_t`` (B, C, *S), network time ``t`` (B,) (already ×1000), ``z`` (B, C_z, *S/f)."""
        z_up = upsample_nearest(z.to(x_t.dtype), self.shape_rule)
        if z_up.shape[2:] != x_t.shape[2:]:
            raise ValueError(f"latent {tuple(z.shape)} does not match x_t {tuple(x_t.shape)} at {self.shape_rule.describe()}")
        stride, resampled = self.size_multiple, x_t.shape[self.ops.first_resampled_axis :]
        if any(s % stride for s in resampled):
            raise ValueError(
                f"{type(self).__name__} with {self.resample_levels + 1} stages needs data sizes that are multiples of {stride}, got "
                f"{tuple(resampled)}; use fewer stage_channels (one stage works for any size) or crop/pad the data"
            )
        t_emb = self.time_embed(t)  # (B, t_dim)
        h = self.stem(torch.cat([x_t, z_up], dim=1))  # (B, c0, *S)
        skips = [h]
        for block in self.down:
            h = block(h, t_emb)
            skips.append(h)
        h = self.middle(h, t_emb)
        for block, concat in zip(self.up, self.up_concat):
            if concat:
                h = torch.cat([h, skips.pop()], dim=1)
            h = block(h, t_emb)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, *S)

    @property
    def upsample_factor(self) -> int:
        """The one factor of an isotropic rule (``shape_rule`` describes every case)."""
        if not self.shape_rule.is_isotropic:
            raise ValueError(f"this decoder has no single upsample factor ({self.shape_rule.describe()}); use .shape_rule")
        return self.shape_rule.factors[0]


def _resolve_rule(spatial_dims: int, upsample_factor: int | None, shape_rule: ShapeRule | None) -> ShapeRule:
    if shape_rule is None:
        return ShapeRule.isotropic(8 if upsample_factor is None else upsample_factor, spatial_dims)
    if upsample_factor is not None and shape_rule != ShapeRule.isotropic(upsample_factor, spatial_dims):
        raise ValueError(f"upsample_factor={upsample_factor} contradicts shape_rule {shape_rule.describe()}; pass only one")
    if shape_rule.dims != spatial_dims:
        raise ValueError(f"shape_rule covers {shape_rule.dims} axes but spatial_dims is {spatial_dims}")
    return shape_rule


def _resolve_resample_factors(num_stages: int, factors: tuple[int, ...] | None) -> tuple[int, ...]:
    if factors is None:
        return (2,) * (num_stages - 1)
    factors = tuple(int(f) for f in factors)
    if len(factors) != num_stages - 1 or any(f < 1 for f in factors):
        raise ValueError(
            f"resample_factors needs one integer >= 1 per stage boundary ({num_stages - 1} for {num_stages} "
            f"stage_channels), got {factors}; e.g. resample_factors={(2,) * (num_stages - 1)}"
        )
    return factors
