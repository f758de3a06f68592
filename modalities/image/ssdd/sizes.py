"""SSDD decoder sizes (the official ``UViTDecoder.SIZES``) registered as ``ssdd_<size>`` decoders.

Heads are 4 for XS and S, otherwise ``min(16, max(4, mid_width // 64))``; every size attends in
windows of 8. ``tiny`` is a difftok-only size for tests (8-group norms, 2 blocks).
:func:`~modalities.image.ssdd.config.ssdd_config` writes a row's fields into the decoder kwargs
(:func:`size_row_kwargs`), so each can be overridden (``model.decoder.kwargs.window=4``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.registry import DECODERS
from modalities.image.size_table import size_kwargs
from modalities.image.ssdd.decoder import UViTDecoder, level_widths

__all__ = ["SSDDSize", "SSDD_SIZES", "ssdd_decoder", "default_heads", "size_row_kwargs"]


@dataclass(frozen=True)
class SSDDSize:
    """Architecture hyper-parameters of one decoder size."""

    channels: int
    channels_mult: tuple[int, ...]
    num_layers: int
    heads: int
    num_groups: int = 32
    window: int = 8  # attention window of the middle transformer (keys within ±(w - 1) tokens per axis)

    @property
    def widths(self) -> list[int]:
        return level_widths(self.channels, self.channels_mult, self.num_groups)


def default_heads(mid_width: int) -> int:
    """Official head rule for sizes without an explicit head count."""
    return min(16, max(4, mid_width // 64))


def _size(channels: int, mult: tuple[int, ...], layers: int, heads: int | None = None) -> SSDDSize:
    mid = level_widths(channels, mult)[-1]
    return SSDDSize(channels, mult, layers, heads if heads is not None else default_heads(mid))


SSDD_SIZES: dict[str, SSDDSize] = {
    "tiny": SSDDSize(16, (1, 1, 2, 2), 2, 2, num_groups=8),
    "xs": _size(32, (1, 2, 3, 3), 8, heads=4),
    "s": _size(48, (1, 2, 3, 3), 8, heads=4),
    "b": _size(64, (1, 2, 3, 3), 10),
    "m": _size(96, (1, 2, 3, 3), 12),
    "l": _size(96, (1, 2, 4, 4), 16),
    "xl": _size(128, (1, 2, 4, 4), 16),
    "h": _size(192, (1, 2, 4, 4), 16),
}


def size_row_kwargs(size: str) -> dict[str, Any]:
    """The architecture kwargs of decoder size ``size`` (a row of :data:`SSDD_SIZES`)."""
    if size not in SSDD_SIZES:
        raise KeyError(f"unknown SSDD decoder size '{size}'; sizes: {', '.join(SSDD_SIZES)}")
    return asdict(SSDD_SIZES[size])


def ssdd_decoder(size: str, **kwargs: Any) -> UViTDecoder:
    """Build the SSDD decoder of a named size; ``kwargs`` are the builder's and overrides."""
    size_row_kwargs(size)  # names the sizes when ``size`` is unknown
    rows = {name: asdict(spec) for name, spec in SSDD_SIZES.items()}
    return UViTDecoder(**size_kwargs("ssdd", size, rows, kwargs))


def _register(size: str) -> None:
    def factory(**kwargs: Any) -> UViTDecoder:
        return ssdd_decoder(size, **kwargs)

    factory.__name__ = factory.__qualname__ = f"ssdd_{size}"
    factory.__doc__ = f"SSDD-{size.upper()} U-ViT decoder ({SSDD_SIZES[size]})."
    DECODERS.add(f"ssdd_{size}", factory)


for _name in SSDD_SIZES:
    _register(_name)
