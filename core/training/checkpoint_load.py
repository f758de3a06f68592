"""Load a tokenizer for inference from either checkpoint format training produces.

- a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``; EMA weights already folded in
  when the run used EMA), or
- a Lightning ``.ckpt`` from ``<output_dir>/checkpoints`` (``state_dict`` keys ``autoencoder.*`` and,
  with EMA, ``ema.shadow_<i>``; the architecture is in ``checkpoint["difftok"]["autoencoder"]``).
  Loaded with ``torch.load(weights_only=True)``: tensors and plain containers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from core.autoencoder import DiffusionAutoencoder
from core.builder import build_autoencoder, config_from_dict
from core.ema import EMA
from core.pretrained import CheckpointMismatchError, from_pretrained, load_state_dict_strict, read_pretrained_config

__all__ = ["LoadedAutoencoder", "load_autoencoder"]


@dataclass
class LoadedAutoencoder:
    """A tokenizer in eval mode plus where its weights came from."""

    model: DiffusionAutoencoder
    format: str  # "pretrained" or "lightning"
    weights: str  # "export" (pretrained folder), "ema" or "live" (Lightning checkpoint)
    global_step: int | None


def load_autoencoder(
    path: str | Path, *, modality: str | None = None, use_ema: bool = True, map_location: str | torch.device = "cpu"
) -> LoadedAutoencoder:
    """Rebuild the tokenizer stored at ``path`` (pretrained folder or Lightning ``.ckpt``).

    Args:
        modality: when given, the checkpoint must be of this modality.
        use_ema: for Lightning checkpoints, use the EMA weights when the run kept them.
    """
    path = Path(path)
    if path.is_dir():
        meta = read_pretrained_config(path)
        model = from_pretrained(path, modality=modality, map_location=map_location)
        step = (meta.get("extra") or {}).get("global_step")
        return LoadedAutoencoder(model, "pretrained", "export", int(step) if step is not None else None)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass a save_pretrained folder (e.g. <run>/export) or a .ckpt file")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    saved = (checkpoint.get("difftok") or {}).get("autoencoder") if isinstance(checkpoint, dict) else None
    if saved is None or "state_dict" not in checkpoint:
        raise CheckpointMismatchError(
            f"{path} is not a difftok training checkpoint (no 'difftok' model config); pass a file from "
            f"<output_dir>/checkpoints or a save_pretrained folder"
        )
    config = config_from_dict(saved)
    if modality is not None and config.modality != modality:
        raise CheckpointMismatchError(f"{path} holds a '{config.modality}' tokenizer but a '{modality}' one was requested")
    model = build_autoencoder(config)
    state = checkpoint["state_dict"]
    live = {k.removeprefix("autoencoder."): v for k, v in state.items() if k.startswith("autoencoder.")}
    load_state_dict_strict(model, live, source=str(path))
    ema_state = {k.removeprefix("ema."): v for k, v in state.items() if k.startswith("ema.")}
    weights = "live"
    if use_ema and ema_state:
        ema = EMA(model)
        ema.load_state_dict(ema_state)
        ema.copy_to(model)
        weights = "ema"
    step = checkpoint.get("global_step")
    return LoadedAutoencoder(model.eval(), "lightning", weights, int(step) if step is not None else None)
