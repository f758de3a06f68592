"""Evaluate an image tokenizer's reconstructions: metrics JSON-ready dict and a comparison grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from core.autoencoder import DiffusionAutoencoder
from modalities.image.metrics import ReconstructionMetrics
from modalities.image.preview import save_grid

__all__ = ["evaluate_reconstructions"]


@torch.no_grad()
def evaluate_reconstructions(
    autoencoder: DiffusionAutoencoder,
    dataset: Dataset,
    *,
    steps: Sequence[int] = (1, 10, 50),
    batch_size: int = 4,
    seed: int = 0,
    grid_path: str | Path | None = None,
    grid_count: int = 4,
    device: str | torch.device = "cpu",
) -> dict[str, dict[str, float]]:
    """PSNR/SSIM of reconstructions for each decode step count (seeded initial noise).

    Returns:
        ``{"steps_<n>": {"psnr_mean_per_image", "psnr_dataset", "ssim", "num_images"}}``. When
        ``grid_path`` is given, writes a grid: originals, then one row per step count.
    """
    autoencoder = autoencoder.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    results: dict[str, ReconstructionMetrics] = {f"steps_{n}": ReconstructionMetrics() for n in steps}
    grid_rows: list[list[Tensor]] = [[] for _ in range(len(steps) + 1)]
    for batch_index, batch in enumerate(loader):
        x = batch["x"].to(device)
        z = autoencoder.encode(x).latent_dist.mode()
        if batch_index * batch_size < grid_count:
            grid_rows[0].append(x.cpu())
        for row, n in enumerate(steps, start=1):
            generator = torch.Generator(device=device).manual_seed(seed + batch_index)
            rec = autoencoder.decode(z, n, generator=generator).sample
            results[f"steps_{n}"].update(x, rec)
            if batch_index * batch_size < grid_count:
                grid_rows[row].append(rec.cpu())
    if grid_path is not None:
        save_grid([torch.cat(r)[:grid_count] for r in grid_rows], grid_path)
    return {key: acc.compute() for key, acc in results.items()}
