"""SSDD (arXiv 2510.04961) for images: U-ViT flow decoders, KL encoders and paper configs.

Registers decoders ``ssdd_tiny``, ``ssdd_xs``, ``ssdd_s``, ``ssdd_b``, ``ssdd_m``, ``ssdd_l``,
``ssdd_xl``, ``ssdd_h`` and encoders ``kl_f8c4``, ``kl_f16c4``. See ``docs/image/ssdd.md``.
"""

from __future__ import annotations

from modalities.image.ssdd.attention import LocalAttention, WindowLayout
from modalities.image.ssdd.config import ssdd_config
from modalities.image.ssdd.decoder import UViTDecoder
from modalities.image.ssdd.encoders import kl_encoder
from modalities.image.ssdd.sizes import SSDD_SIZES, SSDDSize, ssdd_decoder

__all__ = [
    "LocalAttention",
    "WindowLayout",
    "UViTDecoder",
    "SSDDSize",
    "SSDD_SIZES",
    "ssdd_decoder",
    "kl_encoder",
    "ssdd_config",
]
