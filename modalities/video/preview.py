"""Video previews: frame strips as PNG (one row of frames per clip and version) and an animated GIF (Pillow).

Every PNG written here gets a ``.gif`` twin next to it: frame ``t`` of the GIF shows frame ``t`` of every
clip (rows) and version (columns: original, then each reconstruction), so flicker is visible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from modalities.image.preview import save_grid, to_uint8

__all__ = ["GIF_FRAME_MS", "write_gif", "save_clip_grid", "write_video_preview", "write_video_samples"]

GIF_FRAME_MS = 120


def _check_clips(clips: Tensor) -> None:
    if clips.ndim != 5:
        raise ValueError(f"expected clips (N, 3, T, H, W), got shape {tuple(clips.shape)}")


def write_gif(rows: list[Tensor], path: str | Path, pad: int = 2, frame_ms: int = GIF_FRAME_MS) -> Path:
    """Animated GIF of ``rows`` (each ``(K, 3, T, H, W)`` in [-1, 1], same shapes): clips down, versions across."""
    for row in rows:
        _check_clips(row)
    k, _, frames, h, w = rows[0].shape
    clips = np.stack([to_uint8(row).permute(0, 2, 3, 4, 1).cpu().numpy() for row in rows])  # (R, K, T, H, W, 3)
    pictures = []
    for t in range(frames):
        canvas = np.full((len(rows) * (h + pad) + pad, k * (w + pad) + pad, 3), 255, dtype=np.uint8)
        for r in range(len(rows)):
            for c in range(k):
                top, left = pad + r * (h + pad), pad + c * (w + pad)
                canvas[top : top + h, left : left + w] = clips[r, c, t]
        pictures.append(Image.fromarray(canvas))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    return path


def save_clip_grid(rows: list[Tensor], path: str | Path) -> Path:
    """The ``write_grid`` hook: rows of ``(K, 3, T, H, W)`` (original, then reconstructions) as a PNG of frame
    strips (one line of ``T`` frames per clip and version) plus the GIF twin; returns the PNG path."""
    if not rows:
        raise ValueError("save_clip_grid needs at least one row")
    for row in rows:
        _check_clips(row)
    strips = [version.movedim(1, 0) for row in rows for version in row]  # each (T, 3, H, W)
    png = save_grid(strips, Path(path).with_suffix(".png"))
    write_gif(rows, png.with_suffix(".gif"))
    return png


def write_video_preview(originals: Tensor, reconstructions: Tensor, path: Path) -> Path:
    """Per clip: a strip of the original frames above a strip of the reconstruction (PNG + GIF)."""
    _check_clips(originals)
    pairs = [torch.stack([original, reconstruction.to(original.dtype)]) for original, reconstruction in zip(originals, reconstructions)]
    return save_clip_grid(pairs, path)


def write_video_samples(samples: Tensor, path: Path) -> Path:
    """Generated clips ``(B, 3, T, H, W)``: one strip of frames per clip (PNG + GIF)."""
    _check_clips(samples)
    return save_clip_grid([clip.unsqueeze(0) for clip in samples], path)
