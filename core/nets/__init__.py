"""Dimension-generic reference networks registered as ``conv_encoder`` and ``unet_decoder``, plus the
latent generator ``DiT`` (registered in ``GENERATORS`` as ``dit_{s,b,l,xl}_{2,4,8}`` and ``dit_tiny_2``).

They are modality agnostic (``spatial_dims`` = 1, 2 or 3); modality plugins register named sizes
on top of them (e.g. the image plugin's quickstart tokenizer).
"""

from __future__ import annotations

from core.nets.conv_encoder import ConvEncoder
from core.nets.dit import DIT_SIZES, DiT  # importing registers the dit_* generators
from core.nets.unet_decoder import UNetDecoder
from core.registry import DECODERS, ENCODERS
from core.shapes import ShapeRule

__all__ = ["ConvEncoder", "UNetDecoder", "DiT", "DIT_SIZES"]


@ENCODERS.register("conv_encoder")
def conv_encoder(**kwargs) -> ConvEncoder:
    """LDM-style conv encoder; see :class:`ConvEncoder` for arguments."""
    return ConvEncoder(**kwargs)


@DECODERS.register("unet_decoder")
def unet_decoder(shape_rule: ShapeRule | None = None, **kwargs) -> UNetDecoder:
    """Consistency-decoder-style flow UNet; see :class:`UNetDecoder` for arguments (``shape_rule``
    is named here so the builder passes the encoder's per-axis rule)."""
    return UNetDecoder(shape_rule=shape_rule, **kwargs)
