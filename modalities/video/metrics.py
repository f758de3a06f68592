"""Video reconstruction metrics on 8-bit-quantised clips ``(B, 3, T, H, W)``.

Per-frame PSNR / SSIM / LPIPS are the image plugin's metrics applied to the frames ``(B·T, 3, H, W)``
(so one frame counts like one image: means over frames and clips); on top of them the PSNR of frame 0
(the frame a causal tokenizer encodes alone, i.e. the image path) and a temporal-consistency error
``mean |Δx̂ − Δx|`` with ``Δ`` the difference of consecutive frames (flicker the per-frame metrics miss).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from core.eval.protocol import MetricSuite, ReconstructionMetric
from modalities.image.metrics import ReconstructionMetrics, image_metric_suite, psnr_per_image
from modalities.image.preview import to_uint8
from modalities.video.fvd import I3D_NOTE, I3DFeatures

log = logging.getLogger("difftok.video")

__all__ = ["VIDEO_METRIC_DEFINITIONS", "VIDEO_TABLE_COLUMNS", "frames_of", "PerFrame", "FrameZeroPSNR", "TemporalConsistency",
           "video_metric_suite", "video_reconstruction_metrics"]

# image metric names -> their per-frame names in video reports
FRAME_NAMES = {"psnr_mean_per_image": "psnr_per_frame", "num_images": "num_frames"}
VIDEO_METRIC_DEFINITIONS = {
    "psnr_per_frame": "mean over frames of all clips of 10 log10(255^2 / MSE_frame), 8-bit frames",
    "psnr_dataset": "10 log10(255^2 / MSE over every pixel of every frame)",
    "ssim": "torchmetrics SSIM per frame (gaussian 11 / 1.5, data range 1), mean over frames of all clips",
    "lpips_vgg": "LPIPS-VGG per frame, mean over frames of all clips (with lpips_vgg_weights)",
    "psnr_frame0": "mean over clips of the PSNR of frame 0 (the frame encoded alone: the image path)",
    "temporal_l1": "mean |(x̂[t+1] - x̂[t]) - (x[t+1] - x[t])| over pixels, frame pairs and clips, 8-bit frames scaled to [0, 1]",
    "rfvd": "Fréchet distance of I3D features (user-supplied TorchScript, see docs/video-data.md), with i3d=PATH",
}
VIDEO_TABLE_COLUMNS = [("rfvd", "rFVD"), ("psnr_per_frame", "PSNR frame"), ("psnr_frame0", "PSNR frame0"), ("ssim", "SSIM"),
                       ("lpips_vgg", "LPIPS-VGG"), ("temporal_l1", "temporal L1")]


def frames_of(clips: Tensor) -> Tensor:
    """``(B, C, T, H, W)`` -> ``(B·T, C, H, W)`` (clip-major: the frames of clip 0, then clip 1, ...)."""
    if clips.ndim != 5:
        raise ValueError(f"expected clips (B, C, T, H, W), got shape {tuple(clips.shape)}")
    return clips.movedim(2, 1).flatten(0, 1)


class PerFrame:
    """An image :class:`ReconstructionMetric` applied to every frame of the clips; keys renamed per :data:`FRAME_NAMES`."""

    def __init__(self, image_metric: ReconstructionMetric) -> None:
        self.image_metric = image_metric

    def update(self, reference: Tensor, reconstruction: Tensor) -> None:
        self.image_metric.update(frames_of(reference), frames_of(reconstruction))

    def compute(self) -> dict[str, float]:
        return {FRAME_NAMES.get(name, name): value for name, value in self.image_metric.compute().items()}


class FrameZeroPSNR:
    """Mean over clips of frame 0's PSNR (8-bit)."""

    def __init__(self) -> None:
        self.total, self.clips = 0.0, 0

    def update(self, reference: Tensor, reconstruction: Tensor) -> None:
        self.total += float(psnr_per_image(to_uint8(reference[:, :, 0]), to_uint8(reconstruction[:, :, 0])).sum())
        self.clips += reference.shape[0]

    def compute(self) -> dict[str, float]:
        if self.clips == 0:
            raise ValueError("no clips were evaluated")
        return {"psnr_frame0": self.total / self.clips}


class TemporalConsistency:
    """``mean |Δx̂ − Δx|`` on 8-bit frames scaled to [0, 1]; 1-frame clips have no frame pairs and add nothing."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, reference: Tensor, reconstruction: Tensor) -> None:
        if reference.shape[2] < 2:
            return
        ref, rec = to_uint8(reference).long(), to_uint8(reconstruction).long()  # exact integer differences
        error = (rec.diff(dim=2) - ref.diff(dim=2)).abs()
        self.total += float(error.sum()) / 255
        self.count += error.numel()

    def compute(self) -> dict[str, float]:
        return {"temporal_l1": self.total / self.count} if self.count else {}


def video_metric_suite(settings: Any | None, device: torch.device) -> MetricSuite:
    """The video modality's ``reconstruction_metrics`` hook.

    The image suite (PSNR both ways, SSIM, LPIPS-VGG when ``settings.lpips_vgg_weights`` is set; in
    training, ``settings`` None: PSNR and SSIM) on every frame, plus frame-0 PSNR and temporal consistency;
    offline, the rFVD features of ``settings.i3d`` (skipped with a note when it is not given).
    """
    image_suite = image_metric_suite(settings, device)

    def make() -> list[ReconstructionMetric]:
        return [*(PerFrame(metric) for metric in image_suite.make()), FrameZeroPSNR(), TemporalConsistency()]

    notes = [note.replace("LPIPS skipped", "per-frame LPIPS skipped") for note in image_suite.notes]
    i3d = getattr(settings, "i3d", None)
    features, features_note = None, None
    if settings is not None and getattr(settings, "fid", True):  # fid=false: no Fréchet distance at all
        if i3d:
            features = I3DFeatures(i3d, device)
            log.info("rFVD with I3D file %s (sha256 %s)", i3d, features.info["i3d_sha256"])
        else:
            features_note = I3D_NOTE  # the one note on the missing Fréchet distance (not core's generic rFID one)
    return MetricSuite(make=make, notes=tuple(notes), protocol=VIDEO_METRIC_DEFINITIONS, features=features,
                       features_note=features_note)


def video_reconstruction_metrics(reference: Tensor, reconstruction: Tensor) -> dict[str, float]:
    """Offline metrics (no LPIPS) of one batch of [-1, 1] clips."""
    values: dict[str, float] = {}
    for metric in (PerFrame(ReconstructionMetrics()), FrameZeroPSNR(), TemporalConsistency()):
        metric.update(reference, reconstruction)
        values.update(metric.compute())
    return values
