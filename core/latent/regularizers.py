"""Latent regularizers: map raw encoder output to a :class:`LatentDist` and a penalty.

- ``layernorm`` (DiTo): LayerNorm over all non-batch dims, no affine, eps 1e-5; deterministic.
- ``layernorm_frames`` (video, audio): the same LayerNorm at every position of axis 2 (time) separately,
  so a latent frame never depends on the clip's length and noise sync's unit-variance premise holds per frame.
- ``kl`` (SSDD/LDM): raw output holds (mean, logvar) on channels; logvar clamped to [-30, 20];
  penalty = KL to N(0, I) summed over non-batch dims and averaged over the batch.
- ``identity``: the raw output, no penalty.

``raw_channels_per_latent`` tells the autoencoder builder how many encoder output channels one
latent channel needs (2 for ``kl``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.latent.distribution import LatentDist
from core.registry import REGULARIZERS

__all__ = ["LatentRegularizer", "LayerNormLatent", "FrameLayerNormLatent", "KLLatent", "IdentityLatent"]


class LatentRegularizer(nn.Module):
    """Base class: ``forward(raw) -> LatentDist`` and ``penalty(dist) -> scalar``."""

    raw_channels_per_latent: int = 1

    def forward(self, raw: Tensor) -> LatentDist:  # pragma: no cover - interface
        raise NotImplementedError

    def penalty(self, dist: LatentDist) -> Tensor:
        """Regularization loss (scalar, fp32); zero by default."""
        return torch.zeros((), device=dist.mean.device, dtype=torch.float32)


class LayerNormLatent(LatentRegularizer):
    """Per-sample LayerNorm over all non-batch dims (mean 0, std 1 per sample), no affine."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, raw: Tensor) -> LatentDist:
        z = F.layer_norm(raw, raw.shape[1:], eps=self.eps)  # (B, C, *spatial), normalised jointly
        return LatentDist(mean=z)


class FrameLayerNormLatent(LatentRegularizer):
    """LayerNorm over every dim except batch and time (axis 2), no affine: mean 0, std 1 per frame.

    For ``(B, C, T, *S)`` latents (video ``(B, C, T, H, W)``, audio ``(B, C, L)``). Per-frame statistics
    keep causal encoders causal: ``encode(x[:, :, :k])`` equals the first latent frames of ``encode(x)``.
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, raw: Tensor) -> LatentDist:
        if raw.ndim < 3:
            raise ValueError(f"layernorm_frames needs a time axis: raw latent (B, C, T, ...) got shape {tuple(raw.shape)}")
        frames_last = raw.movedim(2, -1)  # (B, C, *S, T)
        dims = tuple(range(1, frames_last.ndim - 1))  # every dim but batch and time
        mean = frames_last.mean(dim=dims, keepdim=True)
        var = frames_last.var(dim=dims, keepdim=True, unbiased=False)
        z = (frames_last - mean) * torch.rsqrt(var + self.eps)  # (B, C, *S, T), standardised per frame
        return LatentDist(mean=z.movedim(-1, 2))


class KLLatent(LatentRegularizer):
    """Diagonal Gaussian latent; the raw output is (mean, logvar) concatenated on channels."""

    raw_channels_per_latent = 2

    def __init__(self, logvar_min: float = -30.0, logvar_max: float = 20.0) -> None:
        super().__init__()
        self.logvar_min, self.logvar_max = logvar_min, logvar_max

    def forward(self, raw: Tensor) -> LatentDist:
        mean, logvar = raw.chunk(2, dim=1)
        logvar = logvar.clamp(self.logvar_min, self.logvar_max)
        return LatentDist(mean=mean, std=torch.exp(0.5 * logvar))

    def penalty(self, dist: LatentDist) -> Tensor:
        return dist.kl().mean()


class IdentityLatent(LatentRegularizer):
    """The raw encoder output as a deterministic latent."""

    def forward(self, raw: Tensor) -> LatentDist:
        return LatentDist(mean=raw)


@REGULARIZERS.register("layernorm")
def layernorm(eps: float = 1e-5) -> LayerNormLatent:
    """DiTo's LayerNorm latent."""
    return LayerNormLatent(eps=eps)


@REGULARIZERS.register("layernorm_frames")
def layernorm_frames(eps: float = 1e-5) -> FrameLayerNormLatent:
    """Per-frame LayerNorm latent (video and audio: statistics never mix time steps)."""
    return FrameLayerNormLatent(eps=eps)


@REGULARIZERS.register("kl")
def kl(logvar_min: float = -30.0, logvar_max: float = 20.0) -> KLLatent:
    """SSDD/LDM diagonal-Gaussian latent with a KL penalty."""
    return KLLatent(logvar_min=logvar_min, logvar_max=logvar_max)


@REGULARIZERS.register("identity")
def identity() -> IdentityLatent:
    """No regularization."""
    return IdentityLatent()
