"""8-bit image quantisation and image grids (originals next to reconstructions), written as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from core.eval.protocol import Quantization

__all__ = ["to_uint8", "from_uint8", "EIGHT_BIT", "save_grid", "write_image_preview", "write_image_samples"]


def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] float (B, 3, H, W) -> uint8 (B, 3, H, W), rounding like an 8-bit image file."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(x: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the inverse of :func:`to_uint8` on its outputs)."""
    return x.float().div(127.5).sub(1.0)


EIGHT_BIT = Quantization(store=to_uint8, load=from_uint8, description="8-bit before all metrics")


def save_grid(rows: list[Tensor], path: str | Path, pad: int = 2) -> Path:
    """Save rows of images (each (N, 3, H, W) in [-1, 1], same N/H/W) as one PNG grid."""
    if not rows:
        raise ValueError("save_grid needs at least one row")
    n, _, h, w = rows[0].shape
    canvas = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        images = to_uint8(row).permute(0, 2, 3, 1).cpu().numpy()
        for c in range(n):
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            canvas[top : top + h, left : left + w] = images[c]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path


def write_image_preview(originals: Tensor, reconstructions: Tensor, path: Path) -> Path:
    """Two-row grid: originals on top, reconstructions below."""
    return save_grid([originals, reconstructions], path)


def write_image_samples(samples: Tensor, path: Path, per_row: int = 8) -> Path:
    """Generated images (B, 3, H, W) in [-1, 1] as a grid of ``per_row`` columns (last row padded white)."""
    rows = [samples[i : i + per_row] for i in range(0, samples.shape[0], per_row)]
    if len(rows) > 1 and rows[-1].shape[0] < per_row:
        blank = torch.ones(per_row - rows[-1].shape[0], *samples.shape[1:], dtype=samples.dtype, device=samples.device)
        rows[-1] = torch.cat([rows[-1], blank])
    return save_grid(rows, path)
