"""Dimension-generic building blocks (1-D, 2-D or 3-D signals, layout ``(B, C, *spatial)``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["conv_nd", "avg_pool_nd", "group_norm", "check_spatial_dims", "SinusoidalTimeEmbedding"]


def check_spatial_dims(spatial_dims: int) -> None:
    """Raise unless ``spatial_dims`` is 1, 2 or 3."""
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")


def conv_nd(spatial_dims: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv1d/2d/3d`` by dimensionality."""
    check_spatial_dims(spatial_dims)
    return (nn.Conv1d, nn.Conv2d, nn.Conv3d)[spatial_dims - 1](*args, **kwargs)


def avg_pool_nd(x: Tensor, factor: int = 2) -> Tensor:
    """Average pooling by ``factor`` over every spatial dim."""
    return (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[x.ndim - 3](x, factor)


def group_norm(channels: int, num_groups: int = 32, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm with at most ``num_groups`` groups (fewer when ``channels`` is small)."""
    groups = math.gcd(channels, num_groups)
    return nn.GroupNorm(groups, channels, eps=eps, affine=True)


class SinusoidalTimeEmbedding(nn.Module):
    """cos/sin features of a scalar time (consistency-decoder style) followed by an MLP.

    ``freqs_i = (1 / max_period) ** (i / (half - 1))`` for ``i = 0..half-1`` (endpoint included);
    features are ``[cos(t·f), sin(t·f)]`` (cos first), then Linear -> SiLU -> Linear (in the
    MLP's dtype).

    Args:
        pe_dim: number of sinusoidal features (even).
        out_dim: embedding width.
        max_period: the longest period.
    """

    def __init__(self, pe_dim: int = 320, out_dim: int = 1280, max_period: float = 10000.0) -> None:
        super().__init__()
        if pe_dim % 2 or pe_dim < 4:
            raise ValueError(f"pe_dim must be even and >= 4, got {pe_dim}")
        self.pe_dim, self.max_period = pe_dim, max_period
        self.mlp = nn.Sequential(nn.Linear(pe_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def features(self, t: Tensor) -> Tensor:
        """``(B,) -> (B, pe_dim)`` sinusoidal features in ``t``'s dtype (at least fp32).

        As in the official DiTo decoder, the frequencies are computed in fp32 and the angles
        ``t·f`` in the input's dtype, so a float64 model matches the official float64 forward.
        Half-precision (and integer) times are lifted to fp32: an fp16/bf16 angle near
        ``1000·t`` would lose whole radians.
        """
        half = self.pe_dim // 2
        exponent = torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1)
        freqs = (1.0 / self.max_period) ** exponent  # (half,), fp32 like the official code
        dtype = torch.promote_types(t.dtype, torch.float32)
        angles = t.to(dtype)[:, None] * freqs.to(dtype)[None, :]  # (B, half)
        return torch.cat([angles.cos(), angles.sin()], dim=1)

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(self.features(t).to(self.mlp[0].weight.dtype))
