"""Start a run from earlier weights: a whole tokenizer (fine-tuning, distillation) or only its
encoder (SSDD trains the encoder once, then freezes it and shares it across decoder sizes)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from core.autoencoder import DiffusionAutoencoder
from core.pretrained import WEIGHTS_NAME, CheckpointMismatchError
from core.training.config import InitConfig

__all__ = ["load_weights_into", "apply_init", "freeze_encoder"]

log = logging.getLogger("difftok")

# Auxiliary-loss modules (e.g. the REPA projector) may be absent from, or extra in, a source folder.
_OPTIONAL_PREFIX = "loss_terms."


def _read(directory: str) -> dict[str, torch.Tensor]:
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: init.* and distill.teacher expect a folder written by save_pretrained (e.g. <run>/export)")
    return load_file(str(path))


def _convert(model: DiffusionAutoencoder, source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Let the encoder / decoder translate foreign tensors into their format (a video network
    inflating an image export) through an optional ``convert_weights(state) -> state`` method."""
    for name in ("encoder", "decoder"):
        convert = getattr(getattr(model, name), "convert_weights", None)
        head = f"{name}."
        part = {k[len(head):]: v for k, v in source.items() if k.startswith(head)}
        if convert is None or not part:
            continue
        source = {k: v for k, v in source.items() if not k.startswith(head)}
        source.update({head + k: v for k, v in convert(part).items()})
    return source


@torch.no_grad()
def load_weights_into(model: DiffusionAutoencoder, directory: str, *, prefix: str = "") -> list[str]:
    """Copy the tensors of ``directory`` whose names start with ``prefix`` into ``model``.

    Every model tensor under ``prefix`` must be present with the same shape, except auxiliary-loss
    modules; returns the names of auxiliary tensors left at their initial values.

    Raises:
        CheckpointMismatchError: missing tensors or shape mismatches, listed by name.
    """
    source = {k: v for k, v in _convert(model, _read(directory)).items() if k.startswith(prefix)}
    target = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    missing = [k for k in target if k not in source and not k.startswith(_OPTIONAL_PREFIX)]
    unexpected = [k for k in source if k not in target and not k.startswith(_OPTIONAL_PREFIX)]
    shapes = [f"{k}: {tuple(source[k].shape)} vs {tuple(v.shape)}" for k, v in target.items() if k in source and source[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"{directory} does not fit this model (prefix '{prefix}'): missing {missing[:8]}, unexpected {unexpected[:8]}, "
            f"shape mismatches {shapes[:8]}; check that the recipe's model matches the one that wrote the folder"
        )
    kept = [k for k in target if k not in source]
    state = model.state_dict()
    for key, value in source.items():
        if key in state:
            state[key].copy_(value)
    if kept:
        log.info("initialised from %s; %d auxiliary tensors keep their fresh values", directory, len(kept))
    return kept


def freeze_encoder(model: DiffusionAutoencoder) -> None:
    """No gradients (hence no optimiser updates, weight decay included) for the encoder."""
    model.encoder.requires_grad_(False)
    model.regularizer.requires_grad_(False)


def apply_init(model: DiffusionAutoencoder, cfg: InitConfig) -> None:
    """Apply ``cfg`` to a freshly built model (before the optimiser is created)."""
    if cfg.weights:
        load_weights_into(model, cfg.weights)
    if cfg.encoder_weights:
        load_weights_into(model, cfg.encoder_weights, prefix="encoder.")
    if cfg.freeze_encoder:
        if not (cfg.weights or cfg.encoder_weights):
            log.warning("init.freeze_encoder=true without init.weights/encoder_weights freezes a random encoder")
        freeze_encoder(model)
