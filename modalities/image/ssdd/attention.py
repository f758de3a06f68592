"""Local (neighbourhood) self-attention over a token grid with a learned relative-position bias.

Each query at grid position ``(y, x)`` attends only to keys with ``|Δy| <= R`` and ``|Δx| <= R``
(``R = window - 1 = 7`` for SSDD: a 15×15 neighbourhood), adding ``table[Δy + R, Δx + R, head]``
to the score, with ``Δ = query - key`` (Swin convention). ``table`` has shape
``(2R + 1, 2R + 1, heads)``, one per transformer block, zero-initialised.

Two backends give the same numbers:

- ``flex``: FlexAttention with a block mask (skips key blocks outside every window) and the bias
  as a ``score_mod`` reading the table directly; compiled. Used on CUDA by ``auto``.
- ``sdpa``: one additive ``(1, heads, N, N)`` bias, gathered from the table and ``-inf`` outside the
  window, shared by the whole batch; used on every other device by ``auto``.
- ``flex_eager``: uncompiled FlexAttention (slow reference; for tests on CPU).

What depends only on the grid (gather index, block mask) lives in :class:`WindowLayout`, built once
per transformer forward and shared by its blocks. Nothing derived from the table is ever kept
between calls, so an optimiser step is always visible in the next forward.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AttentionBackend", "WindowLayout", "LocalAttention", "resolve_backend"]

AttentionBackend = Literal["auto", "flex", "flex_eager", "sdpa"]
BACKENDS = ("auto", "flex", "flex_eager", "sdpa")
# FlexAttention's block size. Sequences are zero-padded to a multiple of it (padded keys masked):
# compiled CPU FlexAttention (torch 2.14) returned NaN rows for a 120-token sequence without padding.
FLEX_BLOCK = 128


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto`` -> ``flex`` on CUDA, ``sdpa`` elsewhere; other names are checked and returned."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend '{backend}'; choose one of {BACKENDS}")
    if backend == "auto":
        return "flex" if device.type == "cuda" else "sdpa"
    return backend


@functools.lru_cache(maxsize=2)
def _flex_attention(compiled: bool) -> Any:
    """The FlexAttention function (compiled once per process when asked); holds no tensors."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False) if compiled else flex_attention


@dataclass(frozen=True)
class WindowLayout:
    """Grid geometry shared by all attention blocks of one forward.

    Attributes:
        height, width: token grid (N = height · width, row-major tokens).
        radius: window radius R (keys with ``|Δy|, |Δx| <= R``).
        backend: resolved backend (``flex``, ``flex_eager`` or ``sdpa``).
        table_index: ``(N, N)`` long index into the flattened table, or ``(2R+1)²`` (the ``-inf``
            slot) outside the window; sdpa only.
        block_mask: FlexAttention block mask over N padded to a multiple of 128; flex only.
    """

    height: int
    width: int
    radius: int
    backend: str
    table_index: Tensor | None = None
    block_mask: Any = None

    @classmethod
    def build(cls, height: int, width: int, radius: int, backend: str, device: torch.device) -> "WindowLayout":
        """Precompute what ``backend`` needs for an ``height × width`` grid."""
        backend = resolve_backend(backend, device)
        if backend == "sdpa":
            ys = torch.arange(height, device=device).repeat_interleave(width)  # (N,) row of each token
            xs = torch.arange(width, device=device).repeat(height)  # (N,) column of each token
            dy = ys[:, None] - ys[None, :]  # (N, N) query - key
            dx = xs[:, None] - xs[None, :]
            inside = (dy.abs() <= radius) & (dx.abs() <= radius)
            side = 2 * radius + 1
            index = (dy + radius) * side + (dx + radius)
            return cls(height, width, radius, backend, table_index=torch.where(inside, index, side * side))
        from torch.nn.attention.flex_attention import create_block_mask

        n = height * width

        def in_window(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            dy = q_idx // width - kv_idx // width
            dx = q_idx % width - kv_idx % width
            return (dy.abs() <= radius) & (dx.abs() <= radius) & (kv_idx < n)

        padded = -(-n // FLEX_BLOCK) * FLEX_BLOCK
        mask = create_block_mask(in_window, None, None, padded, padded, device=device)
        return cls(height, width, radius, backend, block_mask=mask)

    @property
    def num_tokens(self) -> int:
        return self.height * self.width

    def dense_bias(self, table: Tensor, dtype: torch.dtype) -> Tensor:
        """``(1, heads, N, N)`` additive bias: table entries inside the window, ``-inf`` outside.

        The leading batch dim of 1 broadcasts over the batch; a 4-D mask also lets CPU SDPA use its
        fused flash kernel (a 3-D mask falls back to the unfused math path, ~2× slower).
        """
        heads = table.shape[-1]
        flat = table.reshape(-1, heads).t()  # (heads, (2R+1)²)
        padded = torch.cat([flat, flat.new_full((heads, 1), float("-inf"))], dim=1)  # (heads, (2R+1)² + 1)
        return padded[:, self.table_index].to(dtype)[None]  # (1, heads, N, N)

    def score_mod(self, table: Tensor) -> Any:
        """FlexAttention ``score_mod`` adding ``table[Δy + R, Δx + R, head]`` to each score."""
        width, radius, last = self.width, self.radius, 2 * self.radius

        def add_relative_bias(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            # Clamped so positions outside the window (masked anyway) still index the table.
            dy = (q_idx // width - kv_idx // width + radius).clamp(0, last)
            dx = (q_idx % width - kv_idx % width + radius).clamp(0, last)
            return score + table[dy, dx, h]

        return add_relative_bias


class LocalAttention(nn.Module):
    """Multi-head windowed self-attention on ``(B, N, dim)`` tokens of a grid.

    Args:
        dim: token width.
        heads: attention heads (``dim`` must be divisible by it).
        window: the official ``attn_window`` w; the bias table is ``(2w - 1, 2w - 1, heads)`` and
            keys within ``±(w - 1)`` are visible.
    """

    def __init__(self, dim: int, heads: int, window: int = 8) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.window = heads, dim // heads, window
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, dim)
        self.relative_bias_table = nn.Parameter(torch.zeros(2 * window - 1, 2 * window - 1, heads))

    @property
    def radius(self) -> int:
        return self.window - 1

    def forward(self, x: Tensor, layout: WindowLayout) -> Tensor:
        """``x`` (B, N, dim) in row-major grid order -> (B, N, dim)."""
        batch, n, dim = x.shape
        if n != layout.num_tokens:
            raise ValueError(f"{n} tokens do not fill the {layout.height}×{layout.width} grid of the layout")
        if layout.radius != self.radius:
            raise ValueError(f"layout radius {layout.radius} != attention radius {self.radius}")

        def heads_first(t: Tensor) -> Tensor:
            return t.view(batch, n, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, N, head_dim)

        q, k, v = heads_first(self.to_q(x)), heads_first(self.to_k(x)), heads_first(self.to_v(x))
        if layout.backend == "sdpa":
            bias = layout.dense_bias(self.relative_bias_table, q.dtype)  # (1, heads, N, N), broadcast over B
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            flex = _flex_attention(compiled=layout.backend == "flex")
            pad = -n % FLEX_BLOCK
            if pad:
                q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))  # (B, heads, N + pad, head_dim)
            out = flex(q, k, v, score_mod=layout.score_mod(self.relative_bias_table), block_mask=layout.block_mask)
            out = out[:, :, :n]
        out = out.transpose(1, 2).reshape(batch, n, dim)  # (B, N, dim)
        return self.out_proj(out)
