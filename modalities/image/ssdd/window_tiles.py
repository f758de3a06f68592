"""Windowed attention in O(N · window²): query tiles that each attend to their key halo.

The ``H × W`` token grid is cut into ``ty × tx`` query tiles. A tile's queries can only see keys
within ``±R`` of the tile, so each tile attends to the ``(ty + 2R) × (tx + 2R)`` halo around it
(keys past the grid border are padding and masked). All tiles then form one batched attention
call of shape ``(B, heads · tiles, ty · tx, halo)``: memory and time grow with ``N · halo`` instead
of ``N²``, and the kernel (SDPA's fused CPU path, or xformers on CUDA) stays a plain dense one.

Because the halo moves with its tile, the relative bias ``table[Δy + R, Δx + R]`` (``-inf`` outside
the window) is the same ``(ty · tx, halo)`` block for every tile; only the padding mask differs
between border tiles. An axis short enough that one tile covering it costs no more keys than a
halo (``n <= tile + 2R``) is not cut at all and gets no halo along it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["HaloTiling", "DEFAULT_QUERY_TILE"]

# Query tile side chosen by measurement (docs/benchmarks.md, "Local attention per call"): 8×8 queries
# with a 22×22 halo were fastest on CPU among 4, 8 and 16 at SSDD-M's 32² (batch 1), 64² and 128² token grids.
DEFAULT_QUERY_TILE = 8


def _axis_plan(size: int, radius: int, tile: int) -> tuple[int, int, int]:
    """(query tile, halo, tile count) along one axis."""
    if size <= tile + 2 * radius:
        return size, 0, 1
    return tile, radius, -(-size // tile)


@dataclass(frozen=True)
class HaloTiling:
    """Tiles and halos of one ``height × width`` grid with window radius ``radius``.

    Attributes:
        height, width, radius: the grid and the window (keys with ``|Δy|, |Δx| <= radius``).
        tile: query tile ``(ty, tx)``; ``halo``: key margin ``(hy, hx)`` on each side (0 or R).
        tiles: tile counts ``(nty, ntx)``.
        table_index: ``(ty·tx, ky·kx)`` long index into the flattened ``(2R+1)²`` table, ``(2R+1)²``
            (the ``-inf`` slot) outside the window.
        key_padding: ``(nty·ntx, 1, ky·kx)`` bool, True where a halo key lies outside the grid;
            None when no tile has such keys.
    """

    height: int
    width: int
    radius: int
    tile: tuple[int, int]
    halo: tuple[int, int]
    tiles: tuple[int, int]
    table_index: Tensor
    key_padding: Tensor | None

    @classmethod
    def build(cls, height: int, width: int, radius: int, device: torch.device, query_tile: int = DEFAULT_QUERY_TILE) -> "HaloTiling":
        """Plan the tiles of an ``height × width`` grid (index tensors on ``device``)."""
        if query_tile < 1:
            raise ValueError(f"query_tile must be >= 1, got {query_tile}")
        (ty, hy, nty), (tx, hx, ntx) = _axis_plan(height, radius, query_tile), _axis_plan(width, radius, query_tile)
        ky, kx = ty + 2 * hy, tx + 2 * hx
        side = 2 * radius + 1
        qy, qx = torch.arange(ty, device=device), torch.arange(tx, device=device)
        key_y, key_x = torch.arange(ky, device=device), torch.arange(kx, device=device)
        # Δ = query - key in grid units; halo coordinates start ``halo`` before the tile
        dy = (qy[:, None] - key_y[None, :] + hy)[:, None, :, None]  # (ty, 1, ky, 1)
        dx = (qx[:, None] - key_x[None, :] + hx)[None, :, None, :]  # (1, tx, 1, kx)
        inside = (dy.abs() <= radius) & (dx.abs() <= radius)
        index = torch.where(inside, (dy + radius) * side + (dx + radius), side * side).reshape(ty * tx, ky * kx)
        # a halo key's grid position: tile origin - halo + offset; outside [0, size) is padding
        rows = torch.arange(nty, device=device)[:, None] * ty - hy + key_y[None, :]  # (nty, ky)
        cols = torch.arange(ntx, device=device)[:, None] * tx - hx + key_x[None, :]  # (ntx, kx)
        row_out, col_out = (rows < 0) | (rows >= height), (cols < 0) | (cols >= width)
        padding = row_out[:, None, :, None] | col_out[None, :, None, :]  # (nty, ntx, ky, kx)
        key_padding = padding.reshape(nty * ntx, 1, ky * kx) if padding.is_meta or bool(padding.any()) else None
        return cls(height, width, radius, (ty, tx), (hy, hx), (nty, ntx), index, key_padding)

    @property
    def num_tiles(self) -> int:
        return self.tiles[0] * self.tiles[1]

    def queries(self, q: Tensor) -> Tensor:
        """``(B, heads, N, d)`` row-major tokens -> ``(B, heads · tiles, ty·tx, d)`` query tiles."""
        if self.num_tiles == 1:  # one tile, no halo, no padding: the grid itself, no copy
            return q
        batch, heads, _, d = q.shape
        (ty, tx), (nty, ntx) = self.tile, self.tiles
        grid = q.view(batch, heads, self.height, self.width, d)
        grid = F.pad(grid, (0, 0, 0, ntx * tx - self.width, 0, nty * ty - self.height))
        tiles = grid.view(batch, heads, nty, ty, ntx, tx, d).permute(0, 1, 2, 4, 3, 5, 6)
        return tiles.reshape(batch, heads * nty * ntx, ty * tx, d)

    def keys(self, k: Tensor) -> Tensor:
        """``(B, heads, N, d)`` -> ``(B, heads · tiles, ky·kx, d)``: each tile's halo (zero-padded)."""
        if self.num_tiles == 1:
            return k
        batch, heads, _, d = k.shape
        (ty, tx), (hy, hx), (nty, ntx) = self.tile, self.halo, self.tiles
        grid = k.view(batch, heads, self.height, self.width, d)
        grid = F.pad(grid, (0, 0, hx, ntx * tx - self.width + hx, hy, nty * ty - self.height + hy))
        halos = grid.unfold(2, ty + 2 * hy, ty).unfold(3, tx + 2 * hx, tx)  # (B, heads, nty, ntx, d, ky, kx) view
        return halos.permute(0, 1, 2, 3, 5, 6, 4).reshape(batch, heads * nty * ntx, -1, d)

    def bias(self, table: Tensor, dtype: torch.dtype) -> Tensor:
        """``(1, heads · tiles, ty·tx, ky·kx)`` additive mask: the relative bias in the window,
        ``-inf`` outside it, and the most negative finite value on padding keys (so a padded query
        whose whole window is padding gets a finite softmax instead of NaN; its output is dropped)."""
        heads = table.shape[-1]
        flat = table.reshape(-1, heads).t()  # (heads, (2R+1)²)
        padded = torch.cat([flat, flat.new_full((heads, 1), float("-inf"))], dim=1)
        shared = padded[:, self.table_index].to(dtype)  # (heads, ty·tx, ky·kx), the same for every tile
        if self.key_padding is None:
            return shared[:, None].expand(heads, self.num_tiles, *shared.shape[1:]).reshape(1, heads * self.num_tiles, *shared.shape[1:])
        pad = torch.zeros(self.key_padding.shape, dtype=dtype, device=table.device)
        pad.masked_fill_(self.key_padding, torch.finfo(dtype).min)  # (tiles, 1, ky·kx)
        return (shared[:, None] + pad[None]).reshape(1, heads * self.num_tiles, *shared.shape[1:])

    def merge(self, out: Tensor) -> Tensor:
        """``(B, heads · tiles, ty·tx, d)`` tile outputs -> ``(B, N, heads · d)`` tokens (padding dropped)."""
        batch, _, _, d = out.shape
        if self.num_tiles == 1:
            return out.transpose(1, 2).reshape(batch, self.height * self.width, -1)
        (ty, tx), (nty, ntx) = self.tile, self.tiles
        heads = out.shape[1] // (nty * ntx)
        grid = out.view(batch, heads, nty, ntx, ty, tx, d).permute(0, 2, 4, 3, 5, 1, 6)  # (B, nty, ty, ntx, tx, heads, d)
        grid = grid.reshape(batch, nty * ty, ntx * tx, heads * d)[:, : self.height, : self.width]
        return grid.reshape(batch, self.height * self.width, heads * d)
