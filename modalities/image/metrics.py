"""Reconstruction metrics on 8-bit-quantised images (PSNR per image and dataset level, SSIM)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from modalities.image.preview import to_uint8

__all__ = ["ReconstructionMetrics", "psnr_per_image", "reconstruction_metrics"]


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


def reconstruction_metrics(reference: Tensor, reconstruction: Tensor) -> dict[str, float]:
    """Metrics of one batch of [-1, 1] images."""
    acc = ReconstructionMetrics()
    acc.update(reference, reconstruction)
    return acc.compute()
