"""``save_pretrained`` / ``from_pretrained``: ``config.json`` + ``model.safetensors``.

Loading never unpickles: tensors come from safetensors and the architecture is rebuilt from
registry names in ``config.json``. Mismatches raise :class:`CheckpointMismatchError` naming the fix.

``config.json``'s ``latent`` section records the latent channels, the :class:`~core.shapes.ShapeRule`
(``shape_rule``: per-axis factors and causal flags; isotropic rules also keep ``downsample_factor``)
and the latent stats. Folders written before the shape rule was stored still load.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from core.autoencoder import DiffusionAutoencoder
from core.builder import AutoencoderConfig, build_autoencoder, config_from_dict
from core.fileio import atomic_output, atomic_write_bytes
from core.latent.stats import LatentStats
from core.shapes import ShapeRule
from core.weight_files import CorruptFileError, read_safetensors

__all__ = [
    "CheckpointMismatchError", "save_pretrained", "from_pretrained", "load_state_dict_strict", "write_latent_stats",
    "FORMAT_VERSION", "write_weights_and_config", "read_weights", "read_config_file", "read_pretrained_config",
    "autoencoder_config_of", "CorruptFileError",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
_REEXPORT = "save_pretrained / the run's export step"
LOSS_TERMS_PREFIX = "loss_terms."  # state-dict keys of trainable loss-term heads (DiffusionAutoencoder.loss_terms)


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the requested modality or architecture."""


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` requiring identical keys and shapes, with a readable report."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape:
        def head(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" … (+{len(keys) - 8})" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {head(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {head(unexpected)}")
        if shape:
            parts.append("shape mismatch: " + head([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shape]))
        raise CheckpointMismatchError(
            f"{source} does not match this architecture ({'; '.join(parts)}). Load it with the config it was "
            f"saved with (from_pretrained rebuilds it from config.json) or start from a fresh model."
        )
    model.load_state_dict(state, strict=True)


def save_pretrained(model: DiffusionAutoencoder, directory: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (atomically) to ``directory``."""
    if not isinstance(model.config, AutoencoderConfig):
        raise ValueError("save_pretrained needs a model built by core.builder.build_autoencoder (model.config is missing)")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = replace(model.config, latent_stats=replace(model.latent_stats))
    rule = model.shape_rule
    latent: dict[str, Any] = {
        "channels": model.latent_channels,
        "spatial_dims": model.spatial_dims,
        "shape_rule": rule.to_dict(),
        "shift": config.latent_stats.shift,
        "scale": config.latent_stats.scale,
    }
    if rule.is_isotropic:  # the field readers of older exports look for
        latent["downsample_factor"] = rule.factors[0]
    meta = {
        "format": "difftok",
        "format_version": FORMAT_VERSION,
        "class": type(model).__name__,
        "modality": config.modality,
        "latent": latent,
        "autoencoder": asdict(config),
        "extra": extra or {},
    }
    return write_weights_and_config(out, model.state_dict(), meta)


def write_weights_and_config(directory: str | os.PathLike[str], state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` then ``config.json`` atomically into ``directory`` (shared by every export)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    with atomic_output(out / WEIGHTS_NAME) as tmp:  # same file mode as config.json (umask honoured)
        save_file(tensors, tmp, metadata={"format": "pt", "difftok_format_version": str(FORMAT_VERSION)})
    atomic_write_bytes(out / CONFIG_NAME, json.dumps(meta, indent=2, sort_keys=True).encode())
    return out


def read_weights(directory: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of ``directory/model.safetensors`` (never unpickles)."""
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found")
    return read_safetensors(weights, device=str(map_location), fix=f"copy the folder again or re-export it ({_REEXPORT})")


def read_config_file(path: str | os.PathLike[str], writer: str) -> dict[str, Any]:
    """The JSON object in ``path`` (a pretrained folder's ``config.json`` written by ``writer``).

    Raises:
        FileNotFoundError: no such file.
        CorruptFileError: not valid UTF-8 JSON, or not a JSON object; the message names the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected a folder written by {writer}")
    fix = f"the file was cut short or edited by hand: restore it from a copy or re-export the folder with {writer}"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path} is not valid JSON ({type(err).__name__}: {err}); {fix}") from err
    if not isinstance(meta, dict):
        raise CorruptFileError(f"{path} holds a JSON {type(meta).__name__}, not an object; {fix}")
    return meta


def read_pretrained_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``config.json`` of a pretrained folder, with its ``autoencoder`` section present."""
    path = Path(directory) / CONFIG_NAME
    meta = read_config_file(path, "save_pretrained")
    if meta.get("format") != "difftok":
        raise CheckpointMismatchError(f"{path} is not a difftok config (format={meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointMismatchError(f"{path} has format_version {meta['format_version']}; upgrade difftok to read it")
    if not isinstance(meta.get("autoencoder"), dict):
        raise CorruptFileError(
            f"{path} has no 'autoencoder' section (keys: {sorted(meta)}), so the model cannot be rebuilt; "
            f"restore the file from a copy or re-export the folder ({_REEXPORT})"
        )
    return meta


def autoencoder_config_of(directory: str | os.PathLike[str], meta: dict[str, Any]) -> AutoencoderConfig:
    """The builder config in ``meta["autoencoder"]``; an invalid section raises naming ``directory/config.json``."""
    try:
        return config_from_dict(meta["autoencoder"])
    except (TypeError, ValueError) as err:
        raise CorruptFileError(
            f"{Path(directory) / CONFIG_NAME}: its 'autoencoder' section does not describe a model ({err}); the file was "
            f"edited by hand or written by a newer difftok: restore it or upgrade difftok"
        ) from err


def from_pretrained(
    directory: str | os.PathLike[str],
    *,
    modality: str | None = None,
    map_location: str | torch.device = "cpu",
    with_loss_terms: bool = False,
) -> DiffusionAutoencoder:
    """Rebuild a tokenizer from ``directory``; ``modality`` asserts which modality it must be.

    By default the auxiliary loss terms are not built, so inference never needs their frozen
    networks or weight files; their saved tensors (``loss_terms.*``, e.g. a REPA projector) are
    then skipped and everything else loads strictly. ``with_loss_terms=True`` rebuilds the full
    training objective and loads every tensor strictly.
    """
    meta = read_pretrained_config(directory)
    config = autoencoder_config_of(directory, meta)
    if modality is not None and config.modality != modality:
        raise CheckpointMismatchError(
            f"{directory} holds a '{config.modality}' tokenizer but a '{modality}' one was requested; "
            f"point to a {modality} checkpoint or load it with modality='{config.modality}'"
        )
    model = build_autoencoder(config, with_loss_terms=with_loss_terms)
    saved_rule = (meta.get("latent") or {}).get("shape_rule")
    if saved_rule is not None and ShapeRule.from_dict(saved_rule) != model.shape_rule:
        raise CheckpointMismatchError(
            f"{directory}/config.json records the shape rule {ShapeRule.from_dict(saved_rule).describe()} but its "
            f"autoencoder config builds {model.shape_rule.describe()}; the folder was edited by hand or written by "
            f"another difftok version: re-export it with save_pretrained"
        )
    weights = Path(directory) / WEIGHTS_NAME
    state = read_weights(directory, map_location)
    if not with_loss_terms:
        state = {k: v for k, v in state.items() if not k.startswith(LOSS_TERMS_PREFIX)}
    load_state_dict_strict(model, state, source=str(weights))
    return model.eval()


def write_latent_stats(
    directory: str | os.PathLike[str],
    stats: LatentStats,
    *,
    out: str | os.PathLike[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Record ``stats`` in a pretrained folder without rebuilding or re-saving the model.

    Only ``config.json`` changes (rewritten atomically), so the weights file (including any
    loss-term tensors that ``from_pretrained`` skips) stays byte-identical. With ``out`` the
    weights are copied there and ``directory`` is left untouched. ``extra`` entries are merged
    into the config's ``extra`` section.

    Returns:
        The folder that now holds the stats.
    """
    source = Path(directory)
    meta = read_pretrained_config(source)
    # parsing first fails before anything is written if the config is not loadable (and brings
    # a file in the older flat layout to the nested one)
    config = replace(autoencoder_config_of(source, meta), latent_stats=replace(stats))
    meta["autoencoder"] = asdict(config)
    meta["latent"] = {**meta.get("latent", {}), "shift": stats.shift, "scale": stats.scale}
    meta["extra"] = {**(meta.get("extra") or {}), **(extra or {})}
    target = source if out is None else Path(out)
    if target.resolve() != source.resolve():
        weights = source / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} not found")
        target.mkdir(parents=True, exist_ok=True)
        with atomic_output(target / WEIGHTS_NAME) as tmp:
            shutil.copyfile(weights, tmp)
    atomic_write_bytes(target / CONFIG_NAME, json.dumps(meta, indent=2, sort_keys=True).encode())
    return target
