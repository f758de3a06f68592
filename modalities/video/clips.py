"""Clip sampling and the per-clip transform: ``num_frames`` frames ``frame_stride`` apart -> ``(3, T, H, W)`` in [-1, 1].

Training: start uniform in ``[0, n - (T-1)·s - 1]`` with ``n`` the safe frame count (decord's length
minus 2, see :mod:`modalities.video.reader`); ONE resize (shorter side), ONE random crop and ONE flip
decision per clip, so frames stay aligned. Evaluation: the clip starting at frame 0, center crop, no flip.
A video with fewer than ``(T-1)·s + 1`` safe frames raises :class:`~core.data.skips.TooShortError`
(skipped and counted as ``too_short``; never padded).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.data.skips import TooShortError
from core.data.sources import TarMember
from modalities.video.reader import VideoSource, open_video

__all__ = ["clip_span", "clip_indices", "frames_to_clip", "VideoClipTransform"]


def clip_span(num_frames: int, frame_stride: int) -> int:
    """Frames a clip covers: ``(num_frames - 1) * frame_stride + 1``."""
    return (num_frames - 1) * frame_stride + 1


def clip_indices(safe_frames: int, num_frames: int, frame_stride: int, rng: random.Random | None = None) -> list[int]:
    """Frame indices of one clip: a random start with ``rng``, else the clip starting at frame 0.

    Raises:
        TooShortError: fewer than :func:`clip_span` safe frames.
    """
    span = clip_span(num_frames, frame_stride)
    if safe_frames < span:
        raise TooShortError(f"{safe_frames} readable frames, a clip of {num_frames} frames at stride {frame_stride} needs {span}; "
                            f"lower data.options.num_frames / frame_stride to use such videos")
    start = rng.randint(0, safe_frames - span) if rng is not None else 0
    return list(range(start, start + span, frame_stride))


def frames_to_clip(frames: np.ndarray, size: int, resize: int, rng: random.Random | None = None) -> Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(3, T, size, size)`` float in [-1, 1].

    The shorter side goes to ``resize`` (bilinear, antialiased), then a ``size`` crop: random with ``rng``
    (plus a horizontal flip with probability 1/2), centered without.
    """
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (T, 3, H, W) in [0, 255]
    height, width = clip.shape[-2:]
    scale = resize / min(height, width)
    if scale != 1:
        target = (max(resize, round(height * scale)), max(resize, round(width * scale)))
        clip = F.interpolate(clip, size=target, mode="bilinear", antialias=True, align_corners=False)
    height, width = clip.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"frames {width}x{height} are smaller than the crop {size} after resizing to {resize}")
    if rng is not None:
        top, left = rng.randint(0, height - size), rng.randint(0, width - size)
    else:
        top, left = (height - size) // 2, (width - size) // 2
    clip = clip[..., top : top + size, left : left + size]
    if rng is not None and rng.random() < 0.5:
        clip = clip.flip(-1)
    return clip.clamp(0, 255).div(127.5).sub(1.0).permute(1, 0, 2, 3).contiguous()


@dataclass(frozen=True)
class VideoClipTransform:
    """Opened video (a path, bytes or tar member; see :data:`~modalities.video.reader.VideoSource`) -> one clip.

    Attributes:
        num_frames: frames per clip (``T``).
        frame_stride: distance between sampled frames.
        size: spatial crop.
        resize: shorter side before the crop (>= ``size``).
        train: random start / crop / flip (else the first clip, centered).
    """

    num_frames: int
    frame_stride: int
    size: int
    resize: int
    train: bool = True

    def __call__(self, video: VideoSource, rng: random.Random | None) -> Tensor:
        rng = rng if self.train else None
        with open_video(video) as reader:
            indices = clip_indices(reader.safe_frames, self.num_frames, self.frame_stride, rng)
            frames = reader.frames(indices)
        return frames_to_clip(frames, self.size, self.resize, rng)

    def for_cache(self, video: VideoSource) -> VideoSource:
        """The encoded bytes (a clip is drawn anew every time, so decoded frames are not worth keeping)."""
        if isinstance(video, bytes):
            return video
        return video.read_bytes() if isinstance(video, TarMember) else Path(video).read_bytes()

    def describe(self) -> str:
        """One line for reports."""
        where = "random start, random crop, flip 1/2" if self.train else "first clip (start 0), center crop"
        return (f"{self.num_frames} frames at stride {self.frame_stride}, {where}; shorter side {self.resize} "
                f"(bilinear, antialiased), crop {self.size}")
