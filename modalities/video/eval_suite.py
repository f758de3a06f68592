"""Which clips the offline tools read, and the video settings of ``evaluate``, ``latent_stats`` and ``cache_latents``.

Protocol of ``python -m recipes.video.evaluate`` (the loop is :mod:`core.eval.command`; every choice is
recorded in ``metrics.json``): a seeded class-stratified subset of ``num_videos`` videos of a folder,
shards or the bundled clips; from each, the clip of ``num_frames`` frames ``frame_stride`` apart starting
at frame 0, shorter side to ``resolution`` (bilinear, antialiased), center crop; reconstructions from
per-clip seeded noise, quantised to 8 bits before the metrics of :mod:`modalities.video.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from torch import Tensor

from core.data.sources import SampleRef
from core.eval.command import EvalSettings
from core.eval.samples import CacheInputs, EvalSamples, SampleRequest
from core.eval.selection import CacheSource, SourceData, list_cache_inputs, select_samples
from core.latent.cache_command import CacheLatentsSettings
from core.latent.stats_command import LatentStatsSettings
from modalities.video.clips import VideoClipTransform
from modalities.video.data import VideoDataOptions, video_data_spec

__all__ = ["ClipGeometry", "ClipLoader", "VideoEvalSettings", "VideoLatentStatsSettings", "VideoCacheLatentsSettings",
           "select_video_samples", "video_cache_inputs"]

VIDEO_DATA = video_data_spec(VideoDataOptions())  # file types and demo clips (the offline tools do no setup scan)


@dataclass(frozen=True)
class ClipGeometry:
    """The clip an offline tool cuts from each video (``SampleRequest.size`` of the video modality)."""

    size: int = 64
    num_frames: int = 17
    frame_stride: int = 4


class ClipLoader:
    """``ref -> (3, num_frames, size, size)`` in [-1, 1]: the first clip, center crop (picklable for workers)."""

    def __init__(self, geometry: ClipGeometry) -> None:
        self.transform = VideoClipTransform(geometry.num_frames, geometry.frame_stride, geometry.size, geometry.size, train=False)

    def __call__(self, ref: SampleRef) -> Tensor:
        return self.transform(ref, None)

    def describe(self) -> str:
        return self.transform.describe()


def select_video_samples(request: SampleRequest) -> EvalSamples:
    """The video modality's ``select_eval_samples`` hook (``request.size``: a :class:`ClipGeometry`)."""
    loader = ClipLoader(request.size)
    return select_samples(VIDEO_DATA, request.data, request.count, request.seed, loader, loader.describe())


@dataclass
class VideoEvalSettings(EvalSettings):
    """Settings of one video evaluation run (``python -m recipes.video.evaluate``)."""

    modality: str = "video"
    data: SourceData = field(default_factory=SourceData)
    num_videos: int = 100  # <= 0: every video
    resolution: int = 256
    num_frames: int = 17  # must fit the tokenizer's frame rule (causal f4: 1 + 4k)
    frame_stride: int = 4
    batch_size: int = 4
    lpips_vgg_weights: Optional[str] = None
    i3d: Optional[str] = None  # I3D TorchScript file for rFVD (see docs/video-data.md)

    def sample_request(self) -> SampleRequest:
        return SampleRequest(self.data, self.num_videos, self.seed, ClipGeometry(self.resolution, self.num_frames, self.frame_stride))


@dataclass
class VideoLatentStatsSettings(LatentStatsSettings):
    """Settings of ``python -m recipes.latent_stats modality=video`` (all recorded in ``latent_stats.json``)."""

    modality: str = "video"
    data: SourceData = field(default_factory=SourceData)
    num_videos: int = 200  # <= 0: every video
    size: int = 256
    num_frames: int = 17
    frame_stride: int = 4
    batch_size: int = 4

    def sample_request(self) -> SampleRequest:
        return SampleRequest(self.data, self.num_videos, self.seed, ClipGeometry(self.size, self.num_frames, self.frame_stride))


@dataclass
class VideoCacheLatentsSettings(CacheLatentsSettings):
    """Arguments of ``python -m recipes.cache_latents modality=video`` (``flip_axis=-1``: horizontal flip)."""

    modality: str = "video"
    data: CacheSource = field(default_factory=CacheSource)
    size: int = 256
    num_frames: int = 17
    frame_stride: int = 4
    labels: str = "folder"  # folder | file | none
    batch_size: int = 4


def video_cache_inputs(settings: VideoCacheLatentsSettings) -> CacheInputs:
    """The video modality's ``cache_inputs`` hook: the first clip of every video, in the deterministic order."""
    loader = ClipLoader(ClipGeometry(settings.size, settings.num_frames, settings.frame_stride))
    return list_cache_inputs(VIDEO_DATA, settings.data, settings.labels, loader, loader.describe(), shuffle=settings.shuffle,
                             seed=settings.seed)
