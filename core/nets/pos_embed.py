"""Fixed sin-cos position embeddings over a 1-D, 2-D or 3-D token grid (MAE/DiT convention).

One axis with ``D`` channels: ``omega_i = 1 / 10000 ** (i / (D/2))`` for ``i < D/2`` and
``emb = [sin(pos·omega), cos(pos·omega)]`` (sin first). Several axes: the width is split into one
even-width chunk per axis, assigned in **reverse** axis order, so for a 2-D ``(H, W)`` grid the first
half encodes the column (w) coordinate and the second half the row (h), exactly like DiT's
``get_2d_sincos_pos_embed`` (its ``meshgrid(w, h)`` puts w first); a 3-D ``(T, H, W)`` grid gets
``[w | h | t]``. Tokens are in row-major grid order (last axis fastest), matching
``conv(x).flatten(2)``. Computed in float64 (as DiT's numpy code) and returned in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["axis_widths", "sincos_embed_1d", "sincos_pos_embed"]


def axis_widths(embed_dim: int, num_axes: int) -> list[int]:
    """Channels per axis, in assignment order (last grid axis first).

    Equal even chunks when ``embed_dim`` is divisible by ``2 * num_axes`` (always the case for the
    DiT sizes in 1-D/2-D/3-D except DiT-L in 3-D); otherwise the first chunks get 2 extra channels.

    Raises:
        ValueError: ``embed_dim`` is odd or too small to give every axis at least one sin/cos pair.
    """
    if embed_dim % 2 or embed_dim < 2 * num_axes:
        raise ValueError(f"sin-cos position embedding needs an even width >= {2 * num_axes} for {num_axes} axes, got {embed_dim}")
    pairs, extra = divmod(embed_dim // 2, num_axes)
    return [2 * (pairs + (i < extra)) for i in range(num_axes)]


def sincos_embed_1d(embed_dim: int, positions: Tensor) -> Tensor:
    """``(M,)`` positions -> ``(M, embed_dim)`` ``[sin, cos]`` features, in the dtype of ``positions``."""
    half = embed_dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=positions.dtype, device=positions.device) / half)  # (D/2,)
    angles = positions[:, None] * omega[None, :]  # (M, D/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_pos_embed(embed_dim: int, grid: Sequence[int], *, device: torch.device | str | None = None) -> Tensor:
    """Fixed position embedding of a token grid ``grid = (S_0, ..., S_{d-1})`` -> ``(prod(grid), embed_dim)`` float32.

    Args:
        embed_dim: channels (the transformer width).
        grid: tokens per spatial axis, in tensor order (e.g. ``(H, W)``).
        device: where to compute (default: the current default device).
    """
    axes = [torch.arange(n, dtype=torch.float64, device=device) for n in grid]
    coords = torch.meshgrid(*axes, indexing="ij")  # d tensors of shape grid; row-major flatten
    widths = axis_widths(embed_dim, len(grid))
    chunks = [sincos_embed_1d(w, coords[axis].reshape(-1)) for w, axis in zip(widths, reversed(range(len(grid))))]
    return torch.cat(chunks, dim=1).float()  # (N, embed_dim)
