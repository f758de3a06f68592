"""Local (neighbourhood) self-attention over a token grid with a learned relative-position bias.

Each query at grid position ``(y, x)`` attends only to keys with ``|Δy| <= R`` and ``|Δx| <= R``
(``R = window - 1 = 7`` for SSDD: a 15×15 neighbourhood), adding ``table[Δy + R, Δx + R, head]``
to the score, with ``Δ = query - key`` (Swin convention). ``table`` has shape
``(2R + 1, 2R + 1, heads)``, one per transformer block, zero-initialised.

Backends (all give the same numbers up to fp32 rounding):

- ``local``: query tiles attend to their key halos in one batched SDPA call
  (:mod:`.window_tiles`); memory and time O(N · window²). Used on every non-CUDA device by ``auto``.
- ``flex``: FlexAttention with a block mask (skips key blocks outside every window, built from
  block bounding boxes, never an ``N × N`` mask) and the bias as a ``score_mod`` reading the table
  directly; compiled. Used on CUDA by ``auto``.
- ``xformers``: the ``local`` tiling through ``xformers.ops.memory_efficient_attention`` with the
  tile bias as a dense tensor bias; CUDA with xformers installed (``pip install 'difftok[xformers]'``).
- ``sdpa``: one dense additive ``(1, heads, N, N)`` bias (``-inf`` outside the window) shared by
  the batch; O(N²) memory, kept as the reference the others are tested against.
- ``flex_eager``: uncompiled FlexAttention (slow reference; for tests on CPU).

What depends only on the grid (gather indices, tiles, block mask) lives in :class:`WindowLayout`,
built once per transformer forward and shared by its blocks. Nothing derived from the table is
ever kept between calls, so an optimiser step is always visible in the next forward.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modalities.image.ssdd.window_tiles import HaloTiling

__all__ = ["AttentionBackend", "WindowLayout", "LocalAttention", "resolve_backend", "window_block_mask"]

AttentionBackend = Literal["auto", "local", "flex", "flex_eager", "xformers", "sdpa"]
BACKENDS = ("auto", "local", "flex", "flex_eager", "xformers", "sdpa")
# FlexAttention's block size. Sequences are zero-padded to a multiple of it (padded keys masked):
# compiled CPU FlexAttention (torch 2.14) returned NaN rows for a 120-token sequence without padding.
FLEX_BLOCK = 128


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto`` -> ``flex`` on CUDA, ``sdpa`` on meta, ``local`` elsewhere; other names are checked and returned.

    ``xformers`` needs a CUDA device and the xformers package; either missing raises here, naming the fix.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend '{backend}'; choose one of {BACKENDS}")
    if backend == "auto":
        # A meta-device decoder only counts parameters and FLOPs; the dense path keeps FLOP counts in
        # the convention of the spec and the official code (the window is a mask on full attention).
        return {"cuda": "flex", "meta": "sdpa"}.get(device.type, "local")
    if backend == "xformers":
        if device.type != "cuda":
            raise ValueError(
                f"attention backend 'xformers' runs on CUDA only, but the decoder is on {device}; "
                f"use attention_backend='auto' (or 'local') there"
            )
        _xformers_ops()
    return backend


@functools.lru_cache(maxsize=1)
def _xformers_ops() -> Any:
    """``xformers.ops`` (imported once); a clear error when it is not installed."""
    try:
        import xformers.ops as xops
    except ImportError as err:
        raise ImportError(
            "attention backend 'xformers' needs the xformers package: pip install 'difftok[xformers]' "
            "(a build matching your torch and CUDA), or use attention_backend='auto'"
        ) from err
    return xops


def xformers_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """SDPA-layout ``(B, H, M, d)`` tensors and a ``(1, H, M, K)`` bias through xformers'
    ``memory_efficient_attention`` (which wants ``(B, M, H, d)`` and a ``(B, H, M, K)`` bias whose
    rows start on 8-element boundaries) -> ``(B, H, M, d)``."""
    batch, heads, m, _ = q.shape
    keys = k.shape[2]
    aligned = -(-keys // 8) * 8
    storage = bias.new_empty(1, heads, m, aligned)
    storage[..., :keys] = bias
    attn_bias = storage[..., :keys].expand(batch, heads, m, keys)
    out = _xformers_ops().memory_efficient_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=attn_bias
    )
    return out.transpose(1, 2)


@functools.lru_cache(maxsize=2)
def _flex_attention(compiled: bool) -> Any:
    """The FlexAttention function (compiled once per process when asked); holds no tensors."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False) if compiled else flex_attention


def _block_boxes(start: Tensor, stop: Tensor, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Row and column bounding boxes ``(r0, r1, c0, c1)`` of row-major token ranges ``[start, stop)``."""
    last = stop - 1
    r0, r1 = start // width, last // width
    one_row = r0 == r1
    c0 = torch.where(one_row, start % width, torch.zeros_like(start))
    c1 = torch.where(one_row, last % width, torch.full_like(start, width - 1))
    return r0, r1, c0, c1


def _gap(a0: Tensor, a1: Tensor, b0: Tensor, b1: Tensor) -> Tensor:
    """Distance between intervals ``[a0, a1]`` (rows of a matrix) and ``[b0, b1]`` (columns); 0 if they meet."""
    return torch.maximum(b0[None, :] - a1[:, None], a0[:, None] - b1[None, :]).clamp(min=0)


def window_block_mask(height: int, width: int, radius: int, device: torch.device, mask_mod: Any) -> Any:
    """FlexAttention ``BlockMask`` over ``height · width`` tokens padded to a multiple of 128.

    A key block is kept for a query block when the two blocks' grid bounding boxes are within
    ``radius`` rows and columns (a superset of the blocks holding a visible pair; ``mask_mod``
    masks the rest). Costs O((N / 128)²), never an ``N × N`` intermediate. Key blocks holding only
    padding are dropped.
    """
    from torch.nn.attention.flex_attention import BlockMask

    n = height * width
    blocks = -(-n // FLEX_BLOCK)
    starts = torch.arange(blocks, device=device) * FLEX_BLOCK
    q_box = _block_boxes(starts, starts + FLEX_BLOCK, width)  # padded queries count (their rows are dropped)
    k_box = _block_boxes(starts, (starts + FLEX_BLOCK).clamp(max=n), width)
    keep = (_gap(q_box[0], q_box[1], k_box[0], k_box[1]) <= radius) & (_gap(q_box[2], q_box[3], k_box[2], k_box[3]) <= radius)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept key blocks first, ascending
    kv_num = keep.sum(dim=1).to(torch.int32)[None, None]  # (1, 1, q blocks)
    kv_indices = order.to(torch.int32)[None, None]  # (1, 1, q blocks, kv blocks)
    padded = blocks * FLEX_BLOCK
    return BlockMask.from_kv_blocks(kv_num, kv_indices, BLOCK_SIZE=FLEX_BLOCK, mask_mod=mask_mod, seq_lengths=(padded, padded))


@dataclass(frozen=True)
class WindowLayout:
    """Grid geometry shared by all attention blocks of one forward.

    Attributes:
        height, width: token grid (N = height · width, row-major tokens).
        radius: window radius R (keys with ``|Δy|, |Δx| <= R``).
        backend: resolved backend (``local``, ``xformers``, ``flex``, ``flex_eager`` or ``sdpa``).
        table_index: ``(N, N)`` long index into the flattened table, or ``(2R+1)²`` (the ``-inf``
            slot) outside the window; sdpa only.
        tiling: query tiles and key halos; local and xformers only.
        block_mask: FlexAttention block mask over N padded to a multiple of 128; flex only.
    """

    height: int
    width: int
    radius: int
    backend: str
    table_index: Tensor | None = None
    tiling: HaloTiling | None = None
    block_mask: Any = None

    @classmethod
    def build(cls, height: int, width: int, radius: int, backend: str, device: torch.device) -> "WindowLayout":
        """Precompute what ``backend`` needs for an ``height × width`` grid."""
        backend = resolve_backend(backend, device)
        if backend in ("local", "xformers"):
            return cls(height, width, radius, backend, tiling=HaloTiling.build(height, width, radius, device))
        if backend == "sdpa":
            ys = torch.arange(height, device=device).repeat_interleave(width)  # (N,) row of each token
            xs = torch.arange(width, device=device).repeat(height)  # (N,) column of each token
            dy = ys[:, None] - ys[None, :]  # (N, N) query - key
            dx = xs[:, None] - xs[None, :]
            inside = (dy.abs() <= radius) & (dx.abs() <= radius)
            side = 2 * radius + 1
            index = (dy + radius) * side + (dx + radius)
            return cls(height, width, radius, backend, table_index=torch.where(inside, index, side * side))
        n = height * width

        def in_window(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            dy = q_idx // width - kv_idx // width
            dx = q_idx % width - kv_idx % width
            return (dy.abs() <= radius) & (dx.abs() <= radius) & (kv_idx < n)

        return cls(height, width, radius, backend, block_mask=window_block_mask(height, width, radius, device, in_window))

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
        if layout.tiling is not None:
            tiling = layout.tiling
            q_tiles, k_halos, v_halos = tiling.queries(q), tiling.keys(k), tiling.keys(v)
            bias = tiling.bias(self.relative_bias_table, q.dtype)  # (1, heads·tiles, ty·tx, ky·kx)
            if layout.backend == "xformers":
                out = xformers_attention(q_tiles, k_halos, v_halos, bias)
            else:
                out = F.scaled_dot_product_attention(q_tiles, k_halos, v_halos, attn_mask=bias)
            return self.out_proj(tiling.merge(out))  # (B, N, dim)
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
