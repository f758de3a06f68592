"""Image reconstruction metrics on 8-bit-quantised images (PSNR per image and dataset level, SSIM, LPIPS)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from core.eval.protocol import MetricSuite, ReconstructionMetric
from modalities.image.preview import to_uint8

__all__ = ["ReconstructionMetrics", "HeldOutMetrics", "LPIPSMetric", "psnr_per_image", "reconstruction_metrics",
           "image_metric_suite", "METRIC_DEFINITIONS", "TABLE_COLUMNS"]

METRIC_DEFINITIONS = {
    "psnr_mean_per_image": "mean over images of 10 log10(255^2 / MSE_image) (DiTo)",
    "psnr_dataset": "10 log10(255^2 / MSE over all pixels of all images) (SSDD)",
    "ssim": "torchmetrics SSIM, gaussian window 11 / sigma 1.5, data range 1, mean over images",
}
TABLE_COLUMNS = [("rfid", "rFID"), ("psnr_mean_per_image", "PSNR img-mean"), ("psnr_dataset", "PSNR dataset"),
                 ("ssim", "SSIM"), ("lpips_vgg", "LPIPS-VGG")]


def psnr_per_image(reference_u8: Tensor, test_u8: Tensor) -> Tensor:
    """PSNR in dB per image of uint8 (B, 3, H, W) pairs, on the [0, 255] scale: ``(B,)``."""
    mse = (reference_u8.double() - test_u8.double()).square().flatten(1).mean(dim=1)
    return 10 * torch.log10(255.0**2 / mse.clamp(min=1e-10))


@dataclass
class ReconstructionMetrics:
    """Running sums for PSNR/SSIM over a dataset."""

    psnr_sum: float = 0.0
    ssim_sum: float = 0.0
    mse_sum: float = 0.0  # per-pixel squared error over every image, for the dataset-level PSNR
    pixels: int = 0
    images: int = 0

    def update(self, reference: Tensor, reconstruction: Tensor) -> None:
        """Add a batch of [-1, 1] images; both are quantised to 8 bits first."""
        ref, rec = to_uint8(reference), to_uint8(reconstruction)
        self.psnr_sum += psnr_per_image(ref, rec).sum().item()
        self.mse_sum += (ref.double() - rec.double()).square().sum().item()
        self.pixels += ref.numel()
        ssim = structural_similarity_index_measure(rec.float() / 255, ref.float() / 255, data_range=1.0, reduction="none")
        self.ssim_sum += ssim.sum().item()
        self.images += ref.shape[0]

    def compute(self) -> dict[str, float]:
        """``psnr_mean_per_image`` (mean of per-image PSNR), ``psnr_dataset`` (from pooled MSE), ``ssim``."""
        if self.images == 0:
            raise ValueError("no images were evaluated")
        mse = self.mse_sum / self.pixels
        return {
            "psnr_mean_per_image": self.psnr_sum / self.images,
            "psnr_dataset": 10 * math.log10(255.0**2 / max(mse, 1e-10)),  # float64, not a float32 tensor
            "ssim": self.ssim_sum / self.images,
            "num_images": self.images,
        }


class HeldOutMetrics(ReconstructionMetrics):
    """The in-training subset under the short names logged as ``eval/psnr_steps<n>``, ``eval/ssim_steps<n>``."""

    def compute(self) -> dict[str, float]:
        """``psnr`` (mean of per-image PSNR) and ``ssim``."""
        values = super().compute()
        return {"psnr": values["psnr_mean_per_image"], "ssim": values["ssim"]}


class LPIPSMetric:
    """Mean LPIPS distance over images; ``lpips`` maps two (B, 3, H, W) [-1, 1] batches to (B,) distances."""

    def __init__(self, lpips: Any) -> None:
        self.lpips, self.total, self.images = lpips, 0.0, 0

    def update(self, reference: Tensor, reconstruction: Tensor) -> None:
        self.total += float(self.lpips(reference, reconstruction).sum())
        self.images += reference.shape[0]

    def compute(self) -> dict[str, float]:
        return {"lpips_vgg": self.total / max(1, self.images)}


def _load_lpips(weights: str, device: torch.device) -> Any:
    try:
        from modalities.image.lpips import LPIPS  # optional: needs the VGG16 + LPIPS head weights
    except ImportError as err:
        raise ImportError(f"lpips_vgg_weights was given but modalities.image.lpips is unavailable ({err}); drop lpips_vgg_weights") from err
    return LPIPS(vgg_weights=weights).to(device).eval()


def image_metric_suite(settings: Any | None, device: torch.device) -> MetricSuite:
    """The image modality's ``reconstruction_metrics`` hook.

    Offline (``settings``: :class:`~modalities.image.eval_suite.ImageEvalSettings`): PSNR (both definitions),
    SSIM and, when ``settings.lpips_vgg_weights`` is set, LPIPS-VGG. In training (``settings`` None): PSNR
    (mean per image) and SSIM.
    """
    if settings is None:
        return MetricSuite(make=lambda: [HeldOutMetrics()], protocol=METRIC_DEFINITIONS)
    weights = getattr(settings, "lpips_vgg_weights", None)
    if not weights:
        note = "LPIPS skipped: pass lpips_vgg_weights=PATH (VGG16 backbone + LPIPS heads) to compute it"
        return MetricSuite(make=lambda: [ReconstructionMetrics()], notes=(note,), protocol=METRIC_DEFINITIONS)
    lpips = _load_lpips(weights, device)

    def make() -> list[ReconstructionMetric]:
        return [ReconstructionMetrics(), LPIPSMetric(lpips)]

    return MetricSuite(make=make, protocol=METRIC_DEFINITIONS)


def reconstruction_metrics(reference: Tensor, reconstruction: Tensor) -> dict[str, float]:
    """Metrics of one batch of [-1, 1] images."""
    acc = ReconstructionMetrics()
    acc.update(reference, reconstruction)
    return acc.compute()
