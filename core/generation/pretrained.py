"""Generator export: ``config.json`` (``format: difftok-generator``) + ``model.safetensors``.

The folder records the tokenizer path and latent statistics, so ``load_generator`` plus
``from_pretrained(config.tokenizer)`` is all a user needs to sample and decode.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from core.generation.config import build_generator, generator_config_from_dict
from core.generation.objective import LatentGenerator
from core.pretrained import (
    CONFIG_NAME, WEIGHTS_NAME, CheckpointMismatchError, load_state_dict_strict, read_config_file, read_weights, write_weights_and_config,
)

__all__ = ["save_generator", "load_generator", "read_generator_config", "GENERATOR_FORMAT"]

GENERATOR_FORMAT = "difftok-generator"
FORMAT_VERSION = 1


def save_generator(model: LatentGenerator, directory: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> Path:
    """Write the generator (its current weights; pass EMA weights in for exports) to ``directory``."""
    if model.config is None:
        raise ValueError("save_generator needs a model built by core.generation.build_generator (model.config is missing)")
    meta = {"format": GENERATOR_FORMAT, "format_version": FORMAT_VERSION, "generator": asdict(model.config), "extra": extra or {}}
    return write_weights_and_config(directory, model.state_dict(), meta)


def read_generator_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``config.json`` of a generator folder."""
    path = Path(directory) / CONFIG_NAME
    meta = read_config_file(path, "save_generator (a run's export/)")
    if meta.get("format") != GENERATOR_FORMAT:
        raise CheckpointMismatchError(
            f"{path} is not a latent-generator folder (format={meta.get('format')!r}); tokenizers load with core.from_pretrained"
        )
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointMismatchError(f"{path} has format_version {meta['format_version']}; upgrade difftok to read it")
    return meta


def load_generator(directory: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> LatentGenerator:
    """Rebuild a generator from ``directory`` (eval mode)."""
    meta = read_generator_config(directory)
    model = build_generator(generator_config_from_dict(meta["generator"]))
    load_state_dict_strict(model, read_weights(directory, map_location), source=str(Path(directory) / WEIGHTS_NAME))
    return model.eval()
