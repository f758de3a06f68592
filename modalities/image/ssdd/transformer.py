"""The SSDD decoder's middle stage: a pre-norm transformer over the H/8 × W/8 token grid.

``out = x + unflatten(proj_out(blocks(proj_in(GN(x)))))``. Each block is
``h += attn(AdaLN(h; ctx))`` then ``h += FF(LN(h))``: spatial AdaLN from the latent context before
attention only (no gate, no time input), GEGLU feed-forward with a zero-initialised output, and
windowed attention with a relative-position bias (:mod:`.attention`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modalities.image.ssdd.attention import LocalAttention, WindowLayout
from modalities.image.ssdd.resblocks import LatentContext

__all__ = ["SpatialAdaLayerNorm", "GEGLUFeedForward", "TransformerBlock", "MiddleTransformer"]


class SpatialAdaLayerNorm(nn.Module):
    """LayerNorm without affine, then ``·(1 + scale) + shift`` with ``(shift, scale) = Linear(SiLU(ctx))``.

    The modulation is computed per latent position and repeated over each ``r × r`` block of tokens
    (``r = 1`` for f8 latents, 2 for f16) by broadcasting.
    """

    def __init__(self, dim: int, ctx_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.linear = nn.Linear(ctx_channels, 2 * dim)

    def forward(self, h: Tensor, ctx_tokens: Tensor, layout: WindowLayout, ctx_grid: tuple[int, int]) -> Tensor:
        """``h`` (B, N, dim) on the layout's grid; ``ctx_tokens`` = SiLU(ctx) as (B, h_lat·w_lat, c0)."""
        batch, n, dim = h.shape
        shift, scale = self.linear(ctx_tokens).chunk(2, dim=-1)  # (B, L, dim) each
        normed = F.layer_norm(h, (dim,), eps=self.eps)
        hl, wl = ctx_grid
        ry, rx = layout.height // hl, layout.width // wl
        if ry == rx == 1:
            return torch.addcmul(shift, normed, 1 + scale)
        blocks = normed.view(batch, hl, ry, wl, rx, dim)
        shift = shift.view(batch, hl, 1, wl, 1, dim)
        scale = scale.view(batch, hl, 1, wl, 1, dim)
        return torch.addcmul(shift, blocks, 1 + scale).reshape(batch, n, dim)


class GEGLU(nn.Module):
    """``value · GELU(gate)`` with ``(value, gate) = proj(x)`` split in halves."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * hidden)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class GEGLUFeedForward(nn.Module):
    """GEGLU (``dim -> mult·dim``) then Linear back to ``dim`` (zero-initialised by the decoder)."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.proj_in_act = GEGLU(dim, mult * dim)
        self.proj_out = nn.Linear(mult * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj_out(self.proj_in_act(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: spatial-AdaLN windowed attention, then LayerNorm GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, ctx_channels: int, window: int = 8) -> None:
        super().__init__()
        self.norm1 = SpatialAdaLayerNorm(dim, ctx_channels)
        self.attn = LocalAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = GEGLUFeedForward(dim)

    def forward(self, h: Tensor, ctx_tokens: Tensor, layout: WindowLayout, ctx_grid: tuple[int, int]) -> Tensor:
        """``h`` (B, N, dim) -> (B, N, dim) (REPA reads this output)."""
        h = h + self.attn(self.norm1(h, ctx_tokens, layout, ctx_grid), layout)
        return h + self.ff(self.norm2(h))


class MiddleTransformer(nn.Module):
    """``x + unflatten(proj_out(blocks(proj_in(GN(x)))))`` on a (B, C, h, w) feature map.

    Args:
        channels: feature width C (also the token width).
        num_layers: transformer blocks.
        heads: attention heads.
        ctx_channels: width of the latent context.
        window: attention window w (keys within ±(w - 1)).
        num_groups: groups of the input GroupNorm.
        attention_backend: ``auto``, ``local``, ``flex``, ``flex_eager``, ``xformers`` or ``sdpa`` (see :mod:`.attention`).
    """

    def __init__(
        self,
        channels: int,
        num_layers: int,
        heads: int,
        ctx_channels: int,
        window: int = 8,
        num_groups: int = 32,
        attention_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.window, self.attention_backend = window, attention_backend
        self.norm = nn.GroupNorm(num_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(TransformerBlock(channels, heads, ctx_channels, window) for _ in range(num_layers))
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: Tensor, ctx: LatentContext) -> Tensor:
        """``x`` (B, C, h, w) and the latent context (grid h_lat × w_lat) -> (B, C, h, w)."""
        batch, channels, height, width = x.shape
        hl, wl = ctx.grid
        if height % hl or width % wl:
            raise ValueError(f"token grid {height}×{width} is not an integer multiple of the latent grid {hl}×{wl}")
        layout = WindowLayout.build(height, width, self.window - 1, self.attention_backend, x.device)
        ctx_tokens = F.silu(ctx.tokens)  # (B, h_lat·w_lat, c0), shared by every block's AdaLN
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, N, C); a view for channels-last x
        h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, ctx_tokens, layout, ctx.grid)
        h = self.proj_out(h)  # (B, N, C)
        return x + h.transpose(1, 2).reshape(batch, channels, height, width)
