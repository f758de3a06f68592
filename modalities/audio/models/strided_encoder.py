"""DAC/Oobleck-style strided 1-D encoder with arbitrary strides and optional causal padding.

Layout: a 7-wide input conv, then per stride ``s`` one stage of three residual units (dilations
1, 3, 9; 7-wide dilated conv then 1-wide conv) followed by a strided conv (kernel ``2s``, stride
``s``) that doubles the width; a 3-wide output conv gives the raw latent. The hop is the product of
the strides (``(2, 4, 5, 8)`` = 320 samples: 50 Hz at 16 kHz, the DAC-16k / EnCodec class of rates).

There is no normalisation layer: a GroupNorm would average over the whole clip, so a latent frame
would depend on audio far away and on the clip length. With ``causal=True`` every conv pads on the
left only, so latent frame ``j`` depends only on samples up to the end of frame ``j``; encoding a
window with :attr:`StridedConv1dEncoder.receptive_field` samples of left context then equals
encoding the whole file (:func:`core.windowed.windowed_encode`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.registry import ENCODERS

__all__ = ["StridedConv1dEncoder", "Snake"]

DILATIONS = (1, 3, 9)


class Snake(nn.Module):
    """``x + sin²(αx) / α`` with a learned ``α`` per channel (BigVGAN/DAC's periodic activation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + torch.sin(self.alpha * x).pow(2) / (self.alpha + 1e-9)


def _activation(name: str, channels: int) -> nn.Module:
    if name == "snake":
        return Snake(channels)
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"unknown activation '{name}'; use 'snake' or 'silu'")


class PaddedConv1d(nn.Module):
    """A 1-D conv whose padding keeps ``L_out = L_in / stride``: all on the left when causal, else split."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, stride: int = 1, dilation: int = 1, causal: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation)
        total = dilation * (kernel - 1) + 1 - stride  # input samples beyond L that a stride-aligned output needs
        self.pad = (total, 0) if causal else (total // 2, total - total // 2)
        self.kernel, self.stride, self.dilation = kernel, stride, dilation

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, self.pad))


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, dilation: int, activation: str, causal: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(
            _activation(activation, channels), PaddedConv1d(channels, channels, 7, dilation=dilation, causal=causal),
            _activation(activation, channels), PaddedConv1d(channels, channels, 1, causal=causal),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class StridedConv1dEncoder(nn.Module):
    """Waveform encoder ``(B, in_channels, L) -> (B, out_channels, L / hop)``, ``hop = prod(strides)``.

    Args:
        spatial_dims: must be 1 (the builder passes it).
        in_channels: audio channels (1 mono, 2 stereo).
        out_channels: raw latent channels (the builder passes ``C_z`` x the regularizer's factor).
        base_channels: width after the input conv; each stride stage doubles it.
        strides: downsampling per stage, any positive integers.
        causal: pad on the left only (chunked encoding equals full encoding).
        activation: ``"snake"`` (DAC) or ``"silu"``.
    """

    def __init__(
        self,
        spatial_dims: int = 1,
        in_channels: int = 1,
        out_channels: int = 16,
        base_channels: int = 32,
        strides: tuple[int, ...] = (2, 4, 5, 8),
        causal: bool = False,
        activation: str = "snake",
    ) -> None:
        super().__init__()
        if spatial_dims != 1:
            raise ValueError(f"strided_conv1d_encoder encodes waveforms (B, C, L): spatial_dims must be 1, got {spatial_dims}")
        strides = tuple(int(s) for s in strides)
        if not strides or any(s < 1 for s in strides):
            raise ValueError(f"strides must be positive integers, e.g. (2, 4, 5, 8) for hop 320; got {strides}")
        self.spatial_dims, self.in_channels, self.out_channels = 1, in_channels, out_channels
        self.strides, self.causal = strides, bool(causal)
        self.downsample_factor = math.prod(strides)
        layers: list[nn.Module] = [PaddedConv1d(in_channels, base_channels, 7, causal=causal)]
        c = base_channels
        for stride in strides:
            layers += [ResidualUnit(c, d, activation, causal) for d in DILATIONS]
            layers += [_activation(activation, c), PaddedConv1d(c, 2 * c, 2 * stride, stride=stride, causal=causal)]
            c *= 2
        layers += [_activation(activation, c), PaddedConv1d(c, out_channels, 3, causal=causal)]
        self.layers = nn.Sequential(*layers)

    @property
    def receptive_field(self) -> int:
        """Input samples one latent frame depends on (an upper bound; the context a window needs)."""
        field, step = 1, 1
        for conv in (m for m in self.modules() if isinstance(m, PaddedConv1d)):
            field += (conv.dilation * (conv.kernel - 1)) * step
            step *= conv.stride
        return field

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % self.downsample_factor:
            raise ValueError(f"length {x.shape[-1]} is not a multiple of the hop {self.downsample_factor}; pad on the right")
        return self.layers(x)


# the class itself is the factory: the builder reads its signature, and its docstring documents it
ENCODERS.add("strided_conv1d_encoder", StridedConv1dEncoder)
