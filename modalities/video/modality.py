"""The ``video`` modality registration: clips ``(B, 3, T, H, W)`` in [-1, 1] (data, metrics, previews, tool settings).

rFVD features are not a fixed hook (``Modality.feature_extractor`` is None): they need the run's
``i3d=`` file, so the offline metric suite supplies them (:func:`modalities.video.metrics.video_metric_suite`)
and notes how to enable them when the file is not given.
"""

from __future__ import annotations

from typing import Any

from core.modality import Modality, ToolSettings, datamodule_eval_split
from core.registry import MODALITIES
from modalities.image.preview import EIGHT_BIT
from modalities.video.data import VideoDataModule, video_sample_extent
from modalities.video.eval_suite import (VideoCacheLatentsSettings, VideoEvalSettings, VideoLatentStatsSettings, select_video_samples,
                                         video_cache_inputs)
from modalities.video.metrics import video_metric_suite
from modalities.video.preview import save_clip_grid, write_video_preview, write_video_samples

__all__ = ["video", "make_video_datamodule"]


def make_video_datamodule(cfg: Any, seed: int, batch_size: int) -> VideoDataModule:
    """Datamodule factory used by ``core.training.train``."""
    return VideoDataModule(cfg, seed=seed, batch_size=batch_size)



@MODALITIES.register("video")
def video() -> Modality:
    """RGB clips, 3 data axes (time, height, width), [-1, 1]."""
    return Modality(
        name="video",
        spatial_dims=3,
        channels=3,
        make_datamodule=make_video_datamodule,
        write_preview=write_video_preview,
        write_samples=write_video_samples,
        preview_suffix=".png",
        description="RGB clips (B, 3, T, H, W) in [-1, 1]; previews are PNG frame strips + GIF",
        held_out_dataset=datamodule_eval_split,
        reconstruction_metrics=video_metric_suite,
        quantization=EIGHT_BIT,
        feature_extractor=None,
        write_grid=save_clip_grid,
        select_eval_samples=select_video_samples,
        cache_inputs=video_cache_inputs,
        sample_extent=video_sample_extent,
        tool_settings=ToolSettings(evaluate=VideoEvalSettings, latent_stats=VideoLatentStatsSettings,
                                   cache_latents=VideoCacheLatentsSettings),
    )
