"""Typed per-modality data options: ``data.options`` (a dict, so Hydra overrides keep working) validated
into the modality's options dataclass.

Every modality's options extend :class:`SampleDataOptions` (the keys the generic datamodule reads);
an unknown key or a value of the wrong type is refused with one error naming the valid keys / type.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from core.data.sources import LABEL_MODES

__all__ = ["SampleDataOptions", "parse_options"]

OptionsT = TypeVar("OptionsT", bound="SampleDataOptions")


@dataclass(frozen=True)
class SampleDataOptions:
    """Options every modality's data has (``data.options.<name>``).

    Attributes:
        samples_per_epoch: virtual epoch length (folders: at least one batch; shards: default the
            count in the shards' ``index.json``); 0 = automatic.
        cache: keep decoded samples in memory (small folders).
        verify: open every file at setup and drop the unreadable ones.
        shuffle_buffer: samples held by the shard stream's shuffle buffer.
        labels: the ``"cls"`` of folder items: ``folder`` (class sub-folders -> sorted class index),
            ``file`` (each file its own class) or ``none`` (all 0); streamed shards yield their stored ``.cls``.
    """

    samples_per_epoch: int = 0
    cache: bool = False
    verify: bool = True
    shuffle_buffer: int = 1000
    labels: str = "folder"

    def __post_init__(self) -> None:
        if self.labels not in LABEL_MODES:
            raise ValueError(f"data.options.labels={self.labels!r}; choose one of {LABEL_MODES}")
        if self.samples_per_epoch < 0 or self.shuffle_buffer < 0:
            raise ValueError(f"data.options.samples_per_epoch / shuffle_buffer must be >= 0, got {self.samples_per_epoch} / {self.shuffle_buffer}")


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """``value`` as ``kind`` (int, float, bool or str); strings from the command line are parsed."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise TypeError(f"data.options.{name}={value!r} must be {kind.__name__}")


def parse_options(options_type: type[OptionsT], options: Mapping[str, Any] | None) -> OptionsT:
    """Validate the ``data.options`` dict into ``options_type`` (unknown keys and wrong types refused)."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    given = dict(options or {})
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ValueError(f"unknown data.options key(s) {unknown}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(options_type)
    return options_type(**{name: _coerce(name, value, hints[name]) for name, value in given.items()})
