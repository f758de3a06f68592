"""Dataset-level scalar latent statistics (shift/scale) for downstream generators.

SSDD normalises KL latents for its DiT with one scalar mean and std over a dataset; DiTo's
LayerNorm latents need none (shift 0, scale 1). The stats live in the pretrained ``config.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

__all__ = ["LatentStats", "compute_latent_stats"]


@dataclass(frozen=True)
class LatentStats:
    """Scalar latent normalisation: ``z_model = (z - shift) / scale``."""

    shift: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"latent scale must be > 0, got {self.scale}")

    def normalize(self, z: Tensor) -> Tensor:
        """Tokenizer latents -> generator latents."""
        return (z - self.shift) / self.scale

    def denormalize(self, z: Tensor) -> Tensor:
        """Generator latents -> tokenizer latents."""
        return z * self.scale + self.shift

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def compute_latent_stats(encode: Callable[[Tensor], Tensor], batches: Iterable[Tensor], max_batches: int | None = None) -> LatentStats:
    """Scalar mean and std of ``encode(x)`` over a dataset, accumulated in float64.

    Args:
        encode: maps a data batch to latents (e.g. ``lambda x: ae.encode(x).latent_dist.mode()``).
        batches: iterable of data batches.
        max_batches: stop after this many batches.
    """
    total, total_sq, count = 0.0, 0.0, 0
    for i, x in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        z = encode(x).double()
        total += z.sum().item()
        total_sq += z.square().sum().item()
        count += z.numel()
    if count == 0:
        raise ValueError("compute_latent_stats received no data")
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0)
    return LatentStats(shift=mean, scale=max(var**0.5, 1e-12))
