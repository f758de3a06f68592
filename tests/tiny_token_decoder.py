"""A tiny stand-in for a transformer decoder exposing the REPA attributes (tests only).

Patchify ``x_t`` with stride ``token_stride``, add the (nearest-resized) latent and a time bias, run
``depth`` pre-norm transformer blocks on the ``(B, N, d)`` tokens, unpatchify. Like the SSDD
decoder it names the block REPA aligns (``repa_module``), its width and the token stride.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor, nn

from core.registry import DECODERS

NAME = "tiny_token_decoder"


class TinyBlock(nn.Module):
    """Pre-norm self-attention + MLP on ``(B, N, d)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads=2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.norm1(tokens)
        tokens = tokens + self.attn(h, h, h, need_weights=False)[0]
        return tokens + self.mlp(self.norm2(tokens))


class TinyTokenDecoder(nn.Module):
    def __init__(self, spatial_dims: int = 2, in_channels: int = 3, latent_channels: int = 4, upsample_factor: int = 4,
                 dim: int = 32, depth: int = 2, token_stride: int = 8, repa_block: int = 0) -> None:
        super().__init__()
        assert spatial_dims == 2
        self.patch = nn.Conv2d(in_channels, dim, token_stride, stride=token_stride)
        self.cond = nn.Conv2d(latent_channels, dim, 1)
        self.time = nn.Linear(1, dim)
        self.blocks = nn.ModuleList(TinyBlock(dim) for _ in range(depth))
        self.unpatch = nn.ConvTranspose2d(dim, in_channels, token_stride, stride=token_stride)
        self.repa_module, self.repa_dim, self.token_stride = f"blocks.{repa_block}", dim, token_stride

    def forward(self, x_t: Tensor, t: Tensor, z: Tensor) -> Tensor:
        h = self.patch(x_t)  # (B, d, H/s, W/s)
        batch, dim, gh, gw = h.shape
        h = h + F.interpolate(self.cond(z), size=(gh, gw)) + self.time(t[:, None] / 1000)[:, :, None, None]
        tokens = h.flatten(2).transpose(1, 2)  # (B, N, d), row-major
        for block in self.blocks:
            tokens = block(tokens)
        return self.unpatch(tokens.transpose(1, 2).reshape(batch, dim, gh, gw))


@contextmanager
def registered() -> Iterator[str]:
    """Register the stand-in decoder under :data:`NAME` for the duration of a test."""
    DECODERS.add(NAME, TinyTokenDecoder, override=True)
    try:
        yield NAME
    finally:
        DECODERS.remove(NAME)
