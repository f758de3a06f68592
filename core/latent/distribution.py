"""Latent distributions returned by ``encode`` (diffusers-compatible names)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LatentDist", "EncoderOutput", "DecoderOutput"]


@dataclass
class LatentDist:
    """A diagonal Gaussian over latents, or a point mass when ``std`` is None.

    Mirrors diffusers' ``DiagonalGaussianDistribution`` / ``IdentityDistribution``: pipelines call
    ``.sample(generator)`` or ``.mode()``.

    Attributes:
        mean: ``(B, C_z, *latent_spatial)``.
        std: same shape as ``mean``, or None for a deterministic latent (LayerNorm/identity).
    """

    mean: Tensor
    std: Tensor | None = None

    @property
    def deterministic(self) -> bool:
        """True when the latent has no noise (``std`` is None)."""
        return self.std is None

    @property
    def var(self) -> Tensor:
        """Variance (zeros for a deterministic latent)."""
        return torch.zeros_like(self.mean) if self.std is None else self.std.square()

    def mode(self) -> Tensor:
        """The most likely latent (the mean)."""
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised sample ``mean + std * eps``; the mean itself if deterministic."""
        if self.std is None:
            return self.mean
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def kl(self) -> Tensor:
        """KL to N(0, I) per sample: ``0.5 * sum(mu^2 + var - 1 - log var)`` over non-batch dims, ``(B,)``."""
        if self.std is None:
            return torch.zeros(self.mean.shape[0], device=self.mean.device, dtype=torch.float32)
        mean, var = self.mean.float(), self.std.float().square()
        return 0.5 * (mean.square() + var - 1.0 - var.log()).flatten(1).sum(dim=1)


@dataclass
class EncoderOutput:
    """What ``encode`` returns: ``.latent_dist`` like diffusers' ``AutoencoderKLOutput``."""

    latent_dist: LatentDist


@dataclass
class DecoderOutput:
    """What ``decode`` returns: ``.sample`` (B, C, *spatial) in the data range."""

    sample: Tensor
    num_function_evals: int = 0
