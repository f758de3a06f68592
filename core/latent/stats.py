"""Dataset-level scalar latent statistics (shift/scale) for downstream generators.

SSDD normalises KL latents for its DiT with one scalar mean and std over a dataset; DiTo's
LayerNorm latents need none (shift 0, scale 1). The stats live in the pretrained ``config.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

__all__ = ["LatentStats", "LatentMoments", "compute_latent_moments", "compute_latent_stats"]


@dataclass
class LatentStats:
    """Scalar latent normalisation: ``z_model = (z - shift) / scale``.

    Not frozen: it is also a Hydra/OmegaConf structured-config node (``model.latent_stats.scale=...``),
    and OmegaConf makes frozen dataclass nodes read-only.
    """

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


class LatentMoments:
    """Running float64 sums of latents, overall and per channel (channel dim 1 of ``(B, C, *S)``)."""

    def __init__(self) -> None:
        self.count = 0  # values per channel seen so far
        self.num_samples = 0  # batch items seen so far
        self.channel_sum: Tensor | None = None  # (C,) float64
        self.channel_sum_sq: Tensor | None = None  # (C,) float64

    def update(self, z: Tensor) -> None:
        """Add a latent batch ``(B, C, *S)`` (a ``(B, C)`` or ``(B,)`` batch works too)."""
        z = z.detach().double()
        z = z.reshape(z.shape[0], z.shape[1] if z.ndim > 1 else 1, -1)  # (B, C, S)
        channel_sum, channel_sum_sq = z.sum(dim=(0, 2)).cpu(), z.square().sum(dim=(0, 2)).cpu()  # (C,)
        if self.channel_sum is None or self.channel_sum_sq is None:
            self.channel_sum, self.channel_sum_sq = channel_sum, channel_sum_sq
        elif channel_sum.shape != self.channel_sum.shape:
            raise ValueError(f"latent batch has {channel_sum.numel()} channels, earlier batches had {self.channel_sum.numel()}")
        else:
            self.channel_sum, self.channel_sum_sq = self.channel_sum + channel_sum, self.channel_sum_sq + channel_sum_sq
        self.count += z.shape[0] * z.shape[2]
        self.num_samples += z.shape[0]

    def _sums(self) -> tuple[Tensor, Tensor]:
        if self.channel_sum is None or self.channel_sum_sq is None or self.count == 0:
            raise ValueError("compute_latent_stats received no data")
        return self.channel_sum, self.channel_sum_sq

    def stats(self) -> LatentStats:
        """Scalar mean and (population) std over every latent value: the generator normalisation."""
        channel_sum, channel_sum_sq = self._sums()
        values = self.count * channel_sum.numel()
        mean = float(channel_sum.sum()) / values
        var = max(float(channel_sum_sq.sum()) / values - mean * mean, 0.0)
        return LatentStats(shift=mean, scale=max(var**0.5, 1e-12))

    def channel_mean(self) -> list[float]:
        """Per-channel mean (for information; the normalisation is scalar)."""
        channel_sum, _ = self._sums()
        return (channel_sum / self.count).tolist()

    def channel_std(self) -> list[float]:
        """Per-channel population std (for information)."""
        channel_sum, channel_sum_sq = self._sums()
        mean = channel_sum / self.count
        return (channel_sum_sq / self.count - mean.square()).clamp_min(0).sqrt().tolist()


@torch.no_grad()
def compute_latent_moments(encode: Callable[[Tensor], Tensor], batches: Iterable[Tensor], max_batches: int | None = None) -> LatentMoments:
    """Accumulate :class:`LatentMoments` of ``encode(x)`` over ``batches`` (see :func:`compute_latent_stats`)."""
    moments = LatentMoments()
    for i, x in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        moments.update(encode(x))
    return moments


@torch.no_grad()
def compute_latent_stats(encode: Callable[[Tensor], Tensor], batches: Iterable[Tensor], max_batches: int | None = None) -> LatentStats:
    """Scalar mean and std of ``encode(x)`` over a dataset, accumulated in float64.

    Args:
        encode: maps a data batch to latents (e.g. ``lambda x: ae.encode(x).latent_dist.mode()``).
        batches: iterable of data batches.
        max_batches: stop after this many batches.
    """
    return compute_latent_moments(encode, batches, max_batches).stats()
