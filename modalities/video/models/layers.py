"""(2+1)-D building blocks on ``(B, C, T, H, W)``: factorized convs, per-frame norms and attention.

Every 3-wide convolution of the image networks becomes a spatial ``(1, k, k)`` conv followed by a
temporal ``(3, 1, 1)`` conv (:class:`FactorizedConv`). The spatial conv keeps the image conv's name
(``<name>.spatial``), so an image DiTo export inflates into these layers tensor by tensor
(:mod:`modalities.video.models.inflation`). Norms and attention act per frame (time folded into
the batch): a frame's statistics never see other frames, which is what makes the encoder causal
and makes a 1-frame clip run exactly like the image network.

Causal temporal convs pad with copies of the first frame (Cosmos-style) or, while streaming, with
the previous chunk's last frames from an explicit ``cache`` dict that the caller owns and passes to
every forward (no state lives on the modules).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["StreamCache", "FrameGroupNorm", "FactorizedConv", "pointwise_conv", "FrameSelfAttention", "TemporalSelfAttention"]

StreamCache = dict  # {temporal conv module: its last input frames}, owned by the caller of a streamed encode

TEMPORAL_KERNEL = 3


def _fold_time(x: Tensor) -> Tensor:
    """``(B, C, T, H, W) -> (B·T, C, H, W)``."""
    return x.transpose(1, 2).flatten(0, 1)


def _unfold_time(x: Tensor, batch: int) -> Tensor:
    """``(B·T, C, H, W) -> (B, C, T, H, W)``."""
    return x.unflatten(0, (batch, -1)).transpose(1, 2)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics span one frame's ``(C/G, H, W)``, never time (causal, T=1 == image).

    ``num_groups`` is reduced to ``gcd(channels, num_groups)`` like :func:`core.nets.layers.group_norm`.
    """

    def __init__(self, channels: int, num_groups: int = 32, eps: float = 1e-5) -> None:
        super().__init__(math.gcd(channels, num_groups), channels, eps=eps, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        return _unfold_time(super().forward(_fold_time(x)), x.shape[0])


def pointwise_conv(c_in: int, c_out: int) -> nn.Conv3d:
    """A ``1×1×1`` conv (image ``1×1`` convs: skips, quant conv, attention projections)."""
    return nn.Conv3d(c_in, c_out, 1)


class FactorizedConv(nn.Module):
    """Spatial ``(1, k, k)`` conv then temporal ``(3, 1, 1)`` conv.

    Args:
        c_in, c_out: channels.
        kernel: spatial kernel size (odd; the image conv's).
        causal: pad time with first-frame copies on the left only (encoder); otherwise replicate-pad
            one frame on each side (decoder, non-causal like LTX-Video's).
        spatial_stride: 2 for the encoder's downsampling (zero pad right/bottom, no other padding,
            as :class:`core.nets.conv_encoder.Downsample`).
        temporal_stride: 2 for causal temporal downsampling ``T -> 1 + (T - 1) / 2``.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, *, causal: bool, spatial_stride: int = 1,
                 temporal_stride: int = 1) -> None:
        super().__init__()
        if temporal_stride not in (1, 2) or (temporal_stride == 2 and not causal):
            raise ValueError(f"temporal_stride must be 1, or 2 for a causal conv; got {temporal_stride} (causal={causal})")
        self.causal, self.spatial_stride, self.temporal_stride = causal, spatial_stride, temporal_stride
        padding = 0 if spatial_stride > 1 else kernel // 2
        self.spatial = nn.Conv3d(c_in, c_out, (1, kernel, kernel), stride=(1, spatial_stride, spatial_stride),
                                 padding=(0, padding, padding))
        self.temporal = nn.Conv3d(c_out, c_out, (TEMPORAL_KERNEL, 1, 1), stride=(temporal_stride, 1, 1))

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        if self.spatial_stride > 1:
            x = F.pad(x, (0, 1, 0, 1))
        h = self.spatial(x)  # (B, c_out, T, H', W')
        return self.temporal(self._pad_time(h, cache))

    def _pad_time(self, h: Tensor, cache: StreamCache | None) -> Tensor:
        if not self.causal:
            return torch.cat([h[:, :, :1], h, h[:, :, -1:]], dim=2)
        history = cache.get(self) if cache is not None else None
        if history is None:  # the clip starts here: its first frame stands in for the past
            history = h[:, :, :1].expand(-1, -1, TEMPORAL_KERNEL - 1, -1, -1)
        padded = torch.cat([history, h], dim=2)
        if cache is not None:  # what the next chunk's first outputs need (kernel - stride frames)
            cache[self] = padded[:, :, padded.shape[2] - (TEMPORAL_KERNEL - self.temporal_stride):]
        return padded


def _attend(norm: nn.Module, q: nn.Module, k: nn.Module, v: nn.Module, x: Tensor) -> Tensor:
    """Single-head attention over the last dim of ``(N, C, L)`` inputs -> ``(N, C, L)``."""
    h = norm(x)
    qs, ks, vs = (m(h).transpose(1, 2)[:, None] for m in (q, k, v))  # (N, 1, L, C)
    return F.scaled_dot_product_attention(qs, ks, vs)[:, 0].transpose(1, 2)


class FrameSelfAttention(nn.Module):
    """Single-head spatial self-attention within each frame (the image encoder's mid attention)."""

    def __init__(self, channels: int, num_groups: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(math.gcd(channels, num_groups), channels, eps=eps)
        self.q, self.k, self.v, self.proj_out = (nn.Conv1d(channels, channels, 1) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        frames = _fold_time(x)  # (B·T, C, H, W)
        flat = frames.flatten(2)  # (B·T, C, H·W)
        out = self.proj_out(_attend(self.norm, self.q, self.k, self.v, flat)).reshape(frames.shape)
        return x + _unfold_time(out, x.shape[0])


class TemporalSelfAttention(nn.Module):
    """Single-head self-attention along time at every spatial position (non-causal, decoder only).

    The output projection starts at zero, so a fresh block is the identity (inflation keeps the
    image decoder's function; a 1-frame clip is unchanged by it).
    """

    def __init__(self, channels: int, num_groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(math.gcd(channels, num_groups), channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv1d(channels, channels, 1) for _ in range(4))
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        seq = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, t)  # (B·H·W, C, T)
        out = self.proj_out(_attend(self.norm, self.q, self.k, self.v, seq))
        return x + out.reshape(b, h, w, c, t).permute(0, 3, 4, 1, 2)
