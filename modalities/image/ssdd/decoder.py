"""SSDD's U-ViT flow decoder ``u = D(x_t, 1000·t, z)`` (a conv U-Net with a transformer middle).

Data path (widths for SSDD-M, 256² input, f8c4 latent):

1. ``conv_in``: concat(x_t, z nearest-upsampled to H×W) (3 + c) -> c0 (96).
2. Context ``ctx = conv(SiLU(conv(z)))`` at latent resolution (c0 channels), shared by every
   ResBlock's AdaGN and every transformer block's AdaLN.
3. Time: sinusoidal(1000·t, c0) -> Linear -> SiLU -> Linear (4·c0); modulates ResBlocks' 2nd norm.
4. Down: 4 levels × 2 ResBlocks, a stride-2 conv after levels 0–2. Skips (diffusers style): the
   ``conv_in`` output, every ResBlock output and every downsample output.
5. Middle at H/8: :class:`~modalities.image.ssdd.transformer.MiddleTransformer`.
6. Up: 4 levels × 3 ResBlocks, each on concat(h, popped skip); nearest ×2 + conv after levels 3–1.
7. Out: GN -> SiLU -> conv 3×3 to the data channels.

Init: conv weights N(0, 0.02), Linear weights xavier-uniform, biases 0, ResBlock ``conv2`` and FF
``proj_out`` zero, relative-bias tables zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modalities.image.ssdd.resblocks import Downsample, LatentContext, ResBlock, TimestepEmbedding, Upsample
from modalities.image.ssdd.transformer import MiddleTransformer

__all__ = ["UViTDecoder", "level_widths"]

MID_LEVEL_STRIDE = 8  # three stride-2 downsamplings: each middle token covers 8×8 pixels


def level_widths(channels: int, channels_mult: tuple[int, ...], num_groups: int = 32) -> list[int]:
    """``ceil(channels · mult / groups) · groups`` per level (GroupNorm-compatible widths)."""
    return [-(-channels * m // num_groups) * num_groups for m in channels_mult]


class DownLevel(nn.Module):
    """ResBlocks of one resolution, optionally followed by a stride-2 conv."""

    def __init__(self, c_in: int, width: int, num_blocks: int, ctx_channels: int, t_dim: int, groups: int, downsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResBlock(c_in if j == 0 else width, width, ctx_channels, t_dim, groups) for j in range(num_blocks)
        )
        self.downsample = Downsample(width) if downsample else None

    def forward(self, h: Tensor, temb_act: Tensor, ctx: LatentContext, skips: list[Tensor]) -> Tensor:
        for resnet in self.resnets:
            h = resnet(h, temb_act, ctx)
            skips.append(h)
        if self.downsample is not None:
            h = self.downsample(h)
            skips.append(h)
        return h


class UpLevel(nn.Module):
    """ResBlocks of one resolution, each on concat(h, skip), optionally followed by nearest ×2 + conv."""

    def __init__(self, c_in: int, skip_widths: list[int], width: int, ctx_channels: int, t_dim: int, groups: int, upsample: bool) -> None:
        super().__init__()
        ins = [c_in] + [width] * (len(skip_widths) - 1)
        self.resnets = nn.ModuleList(ResBlock(i + s, width, ctx_channels, t_dim, groups) for i, s in zip(ins, skip_widths))
        self.upsample = Upsample(width) if upsample else None

    def forward(self, h: Tensor, temb_act: Tensor, ctx: LatentContext, skips: list[Tensor]) -> Tensor:
        for resnet in self.resnets:
            h = torch.cat([h, skips.pop()], dim=1)  # rebinding frees the pre-concat h before the block runs
            h = resnet(h, temb_act, ctx)
        if self.upsample is not None:
            h = self.upsample(h)
        return h


class UViTDecoder(nn.Module):
    """SSDD decoder; registered sizes are in :mod:`modalities.image.ssdd.sizes`.

    Args:
        spatial_dims: must be 2.
        in_channels: data channels (also the output channels).
        latent_channels: channels of z.
        upsample_factor: data / latent resolution (8 or 16; a multiple of 8).
        channels: base width before rounding (per level ``level_widths``).
        channels_mult: width multipliers of the 4 levels.
        num_layers: transformer blocks in the middle.
        heads: attention heads.
        window: attention window w (keys within ±(w - 1) tokens in each axis).
        num_groups: GroupNorm groups (32 in every official size).
        down_blocks: ResBlocks per down level (the up path has one more).
        attention_backend: ``auto`` | ``local`` | ``flex`` | ``flex_eager`` | ``xformers`` | ``sdpa`` (see :mod:`.attention`).

    Attributes:
        repa_module: dotted name of the transformer block whose output feeds REPA.
        repa_dim: width of those tokens.
        token_stride: pixels per middle token along each axis (8).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        latent_channels: int = 4,
        upsample_factor: int = 8,
        channels: int = 96,
        channels_mult: tuple[int, ...] = (1, 2, 3, 3),
        num_layers: int = 12,
        heads: int = 4,
        window: int = 8,
        num_groups: int = 32,
        down_blocks: int = 2,
        attention_backend: str = "auto",
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"the SSDD decoder is 2-D only (spatial_dims=2), got spatial_dims={spatial_dims}")
        if len(channels_mult) != 4:
            raise ValueError(f"the SSDD decoder has 4 levels (middle at H/8); got channels_mult={tuple(channels_mult)}")
        if upsample_factor < MID_LEVEL_STRIDE or upsample_factor % MID_LEVEL_STRIDE:
            raise ValueError(f"upsample_factor must be a multiple of {MID_LEVEL_STRIDE} (f8, f16, ...), got {upsample_factor}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.spatial_dims, self.in_channels, self.latent_channels = spatial_dims, in_channels, latent_channels
        self.upsample_factor = upsample_factor
        widths = level_widths(channels, tuple(channels_mult), num_groups)
        c0, t_dim, g = widths[0], 4 * widths[0], num_groups

        self.conv_in = nn.Conv2d(in_channels + latent_channels, c0, 3, padding=1)
        self.time_embedding = TimestepEmbedding(c0, t_dim)
        self.ada_ctx_proj = nn.Sequential(
            nn.Conv2d(latent_channels, c0, 3, padding=1), nn.SiLU(), nn.Conv2d(c0, c0, 3, padding=1)
        )
        skip_widths, c = [c0], c0
        self.down_blocks = nn.ModuleList()
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            self.down_blocks.append(DownLevel(c, width, down_blocks, c0, t_dim, g, downsample=not last))
            c = width
            skip_widths += [width] * (down_blocks + (0 if last else 1))
        self.mid_block = MiddleTransformer(c, num_layers, heads, c0, window, g, attention_backend)
        self.up_blocks = nn.ModuleList()
        for i, width in reversed(list(enumerate(widths))):
            level_skips = [skip_widths.pop() for _ in range(down_blocks + 1)]
            self.up_blocks.append(UpLevel(c, level_skips, width, c0, t_dim, g, upsample=i != 0))
            c = width
        self.conv_norm_out = nn.GroupNorm(g, c0, eps=1e-5)
        self.conv_out = nn.Conv2d(c0, in_channels, 3, padding=1)

        repa_index = min(4, num_layers // 2)
        self.repa_module = f"mid_block.transformer_blocks.{repa_index}"
        self.repa_dim = widths[-1]
        self.token_stride = MID_LEVEL_STRIDE
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Official init: convs N(0, 0.02), Linear xavier-uniform, biases 0, residual outputs zero."""
        if self.conv_in.weight.is_meta:  # shape-only model (parameter counts, FLOPs): nothing to fill
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.02)
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
            elif isinstance(module, (nn.GroupNorm, nn.LayerNorm)) and module.weight is not None:
                nn.init.ones_(module.weight)
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.GroupNorm, nn.LayerNorm)) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, module in self.named_modules():
            if name.endswith(".conv2") or name.endswith(".ff.proj_out"):
                nn.init.zeros_(module.weight)
            if name.endswith(".attn"):
                nn.init.zeros_(module.relative_bias_table)

    def forward(self, x_t: Tensor, t: Tensor, z: Tensor) -> Tensor:
        """``x_t`` (B, C, H, W), network time ``t = 1000·t`` (B,) or scalar, ``z`` (B, C_z, H/f, W/f) -> u (B, C, H, W)."""
        batch, _, height, width = x_t.shape
        f = self.upsample_factor
        if z.shape[-2:] != (height // f, width // f) or height % f or width % f:
            raise ValueError(
                f"latent {tuple(z.shape)} does not match x_t {tuple(x_t.shape)} at factor {f}; "
                f"image sides must be multiples of {f} and z must be (B, C_z, H/{f}, W/{f})"
            )
        z = z.to(x_t.dtype).contiguous(memory_format=torch.channels_last)
        t = t.reshape(-1).expand(batch)
        z_up = F.interpolate(z, scale_factor=float(f), mode="nearest")  # (B, C_z, H, W)
        # channels-last activations: faster convolutions, and the middle's token view needs no copy
        h = self.conv_in(torch.cat([x_t, z_up], dim=1).contiguous(memory_format=torch.channels_last))  # (B, c0, H, W)
        temb_act = F.silu(self.time_embedding(t))  # (B, 4·c0); every ResBlock applies SiLU first
        ctx = LatentContext.from_map(self.ada_ctx_proj(z))  # (B, H/f·W/f, c0) tokens
        skips = [h]
        for level in self.down_blocks:
            h = level(h, temb_act, ctx, skips)
        h = self.mid_block(h, ctx)  # (B, c3, H/8, W/8)
        for level in self.up_blocks:
            h = level(h, temb_act, ctx, skips)
        return self.conv_out(F.silu(self.conv_norm_out(h), inplace=True)).contiguous()  # (B, C, H, W)
