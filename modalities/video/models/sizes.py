"""Video tokenizer sizes (spec §3.6) and their registrations.

- ``causal_video_f4s8`` / ``causal_video_f8s8`` (ENCODERS): the causal encoder at 4×8×8 and the
  compact 8×8×8 compression (one more temporal downsampling), ``size=`` picks the row's widths.
- ``video_dito_{tiny,s,b,l,xl}`` (DECODERS): the (2+1)-D flow UNet at the row's widths; ``tiny``
  is the CPU test size, ``s`` the CPU evidence size, ``b`` paper scale (DiTo-B widths), ``l`` /
  ``xl`` DiTo-L / XL widths with the same factorization.

Every row's architecture kwargs can be overridden (``model.decoder.kwargs.temporal_attention=true``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.registry import DECODERS, ENCODERS
from core.shapes import ShapeRule
from modalities.video.models.decoder import VideoUNetDecoder
from modalities.video.models.encoder import CausalVideoEncoder

__all__ = ["VideoEncoderSize", "VideoDecoderSize", "ENCODER_SIZES", "DECODER_SIZES", "video_encoder", "video_decoder",
           "SIZE_NAMES"]


@dataclass(frozen=True)
class VideoEncoderSize:
    """Encoder widths of one size (kwargs of :class:`CausalVideoEncoder`)."""

    base_channels: int
    channels_mult: tuple[int, ...]
    num_res_blocks: int
    num_groups: int = 32
    mid_attention: bool = False


@dataclass(frozen=True)
class VideoDecoderSize:
    """Decoder widths and topology of one size (kwargs of :class:`VideoUNetDecoder`)."""

    stage_channels: tuple[int, ...]
    down_blocks: int = 3
    mid_blocks: int = 2
    up_blocks: int = 4
    pe_dim: int = 320
    t_dim: int = 1280
    num_groups: int = 32
    temporal_attention: bool = False


SIZE_NAMES = ("tiny", "s", "b", "l", "xl")
_B_ENCODER = VideoEncoderSize(128, (1, 2, 4, 4), 2)  # shared by b/l/xl, as DiTo shares its encoder across sizes
ENCODER_SIZES: dict[str, VideoEncoderSize] = {
    "tiny": VideoEncoderSize(16, (1, 2, 2, 4), 1, num_groups=8),
    "s": VideoEncoderSize(32, (1, 2, 4, 4), 1),
    "b": _B_ENCODER,
    "l": _B_ENCODER,
    "xl": _B_ENCODER,
}
DECODER_SIZES: dict[str, VideoDecoderSize] = {
    "tiny": VideoDecoderSize((16, 32, 32, 64), 1, 1, 2, pe_dim=32, t_dim=64, num_groups=8),
    "s": VideoDecoderSize((32, 64, 128, 128), 2, 1, 3, pe_dim=64, t_dim=256),
    "b": VideoDecoderSize((128, 256, 512, 512)),
    "l": VideoDecoderSize((192, 384, 768, 768)),
    "xl": VideoDecoderSize((320, 640, 1024, 1024)),
}


def _row(table: dict[str, Any], size: str, what: str) -> dict[str, Any]:
    key = size.lower().removeprefix("video_dito_").removeprefix("video_")
    if key not in table:
        raise KeyError(f"unknown video {what} size '{size}'; choose one of {', '.join(table)}")
    return asdict(table[key])


def _merge(row: dict[str, Any], overrides: dict[str, Any], name: str) -> dict[str, Any]:
    unknown = set(overrides) - set(row)
    if unknown:
        raise TypeError(f"{name} got unknown kwargs {sorted(unknown)}; overridable: {', '.join(row)}")
    merged = {**row, **overrides}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()}  # OmegaConf lists -> tuples


def video_encoder(size: str = "b", *, temporal_factor: int = 4, spatial_dims: int = 3, in_channels: int = 3,
                  out_channels: int = 16, **overrides: Any) -> CausalVideoEncoder:
    """The causal video encoder of ``size`` (``tiny``, ``s``, ``b``; ``l``/``xl`` share ``b``'s)."""
    kwargs = _merge(_row(ENCODER_SIZES, size, "encoder"), overrides, "causal video encoder")
    return CausalVideoEncoder(in_channels=in_channels, out_channels=out_channels, temporal_factor=temporal_factor,
                              spatial_dims=spatial_dims, **kwargs)


@ENCODERS.register("causal_video_f4s8")
def causal_video_f4s8(size: str = "b", spatial_dims: int = 3, in_channels: int = 3, out_channels: int = 16,
                      **overrides: Any) -> CausalVideoEncoder:
    """Causal (2+1)-D encoder, 4×8×8 compression (``T = 1 + 4k`` frames, H, W multiples of 8)."""
    return video_encoder(size, temporal_factor=4, spatial_dims=spatial_dims, in_channels=in_channels,
                         out_channels=out_channels, **overrides)


@ENCODERS.register("causal_video_f8s8")
def causal_video_f8s8(size: str = "b", spatial_dims: int = 3, in_channels: int = 3, out_channels: int = 16,
                      **overrides: Any) -> CausalVideoEncoder:
    """Compact causal (2+1)-D encoder, 8×8×8 compression (``T = 1 + 8k`` frames; Cosmos / LTX rate)."""
    return video_encoder(size, temporal_factor=8, spatial_dims=spatial_dims, in_channels=in_channels,
                         out_channels=out_channels, **overrides)


def video_decoder(size: str, *, shape_rule: ShapeRule | None = None, spatial_dims: int = 3, in_channels: int = 3,
                  latent_channels: int = 16, **overrides: Any) -> VideoUNetDecoder:
    """The (2+1)-D flow decoder of ``size``; ``shape_rule`` defaults to the 4×8×8 causal rule."""
    kwargs = _merge(_row(DECODER_SIZES, size, "decoder"), overrides, f"video_dito_{size}")
    rule = shape_rule if shape_rule is not None else ShapeRule((4, 8, 8), (True, False, False))
    return VideoUNetDecoder(rule, in_channels=in_channels, latent_channels=latent_channels, spatial_dims=spatial_dims, **kwargs)


def _register_decoder(size: str) -> None:
    def factory(shape_rule: ShapeRule | None = None, spatial_dims: int = 3, in_channels: int = 3, latent_channels: int = 16,
                **overrides: Any) -> VideoUNetDecoder:
        return video_decoder(size, shape_rule=shape_rule, spatial_dims=spatial_dims, in_channels=in_channels,
                             latent_channels=latent_channels, **overrides)

    factory.__name__ = factory.__qualname__ = f"video_dito_{size}"
    factory.__doc__ = f"(2+1)-D DiTo-style video flow decoder, widths {DECODER_SIZES[size].stage_channels}."
    DECODERS.add(f"video_dito_{size}", factory)


for _size in SIZE_NAMES:
    _register_decoder(_size)
