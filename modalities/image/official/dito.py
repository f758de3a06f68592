"""Import checkpoints of the official DiTo code (yinboc/dito) into difftok tokenizers.

The official trainer writes ``save/<exp>/ckpt-*.pth``: a torch pickle
``{config, model: {name: "dito", args, sd}, optimizers, iter, ...}`` with plain containers only,
so it is read with ``torch.load(weights_only=True)`` (memory-mapped, so the optimizer state is
never read into memory). ``model.sd`` holds ``encoder.0.*`` (LDM conv encoder), ``encoder.1.*``
(the 1×1 conv) and ``renderer.net.*`` (consistency-decoder UNet); the size is read from the
UNet widths. Every official tensor is consumed exactly once and every difftok tensor is filled,
with no reshaping (:func:`core.weight_import.import_state_dict`). Both codes predict
``u = x - (1 - sigma_min)·eps`` and feed ``1000·t``, so the weights need no sign or time change.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from core.autoencoder import DiffusionAutoencoder
from core.builder import build_autoencoder
from core.pretrained import save_pretrained
from core.weight_import import WeightImportError, import_state_dict
from modalities.image.dito import DITO_SIZES, dito_config, dito_size
from modalities.image.official.consistency_unet import consistency_unet_key
from modalities.image.official.ldm_encoder import ldm_encoder_key

__all__ = [
    "DEFAULT_DROP_PREFIXES",
    "OfficialDiToCheckpoint",
    "DiToImport",
    "load_dito_checkpoint",
    "detect_dito_size",
    "dito_official_key",
    "import_dito_state_dict",
    "import_dito_checkpoint",
    "convert_dito_checkpoint",
]

# The "+LPIPS" model stores its frozen LPIPS network (VGG16 + lin layers) as ``lpips_loss.*``:
# part of the loss, not of the tokenizer, so it is always left out.
DEFAULT_DROP_PREFIXES: tuple[str, ...] = ("lpips_loss",)
# Official tensors whose output width identifies the size: (c0, c1, c2).
_WIDTH_KEYS = ("renderer.net.embed_image.f.weight", "renderer.net.down.1.0.f_1.weight", "renderer.net.down.2.0.f_1.weight")


@dataclass
class OfficialDiToCheckpoint:
    """The parts of an official checkpoint that the import uses."""

    state_dict: Mapping[str, Tensor]
    name: str  # the official model registry name ("dito")
    args: dict[str, Any] = field(default_factory=dict)  # the official model args (config)
    iteration: int | None = None


@dataclass
class DiToImport:
    """An imported tokenizer and what the import did."""

    model: DiffusionAutoencoder
    size: str
    imported: int  # official tensors copied into the model
    dropped: list[str]  # official tensors left out on purpose (``drop_prefixes``)
    iteration: int | None = None
    source: str = "state dict"

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def load_dito_checkpoint(path: str | Path) -> OfficialDiToCheckpoint:
    """Read an official ``ckpt-*.pth`` without executing pickled code.

    Raises:
        WeightImportError: the file cannot be read with ``weights_only=True`` or is not shaped
            like an official DiTo checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official DiTo checkpoint {path} does not exist")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # files written with the legacy (non-zip) format cannot be mapped
            if "mmap" not in str(err):
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightImportError(
            f"{path} cannot be read with torch.load(weights_only=True) ({first_line}). Official DiTo checkpoints "
            f"hold only plain containers and tensors; if this file is trusted but holds other objects, re-save "
            f"just {{'model': {{'name', 'args', 'sd'}}}} from it and import that file."
        ) from None
    model = ckpt.get("model") if isinstance(ckpt, Mapping) else None
    if not isinstance(model, Mapping) or not isinstance(model.get("sd"), Mapping):
        found = sorted(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise WeightImportError(
            f"{path} is not an official DiTo checkpoint: expected {{'model': {{'name', 'args', 'sd'}}, ...}} "
            f"(save/<exp>/ckpt-*.pth of yinboc/dito), found {found}"
        )
    name = str(model.get("name", "dito"))
    if name != "dito":
        raise WeightImportError(f"{path} holds an official '{name}' model; only 'dito' checkpoints can be imported")
    state = model["sd"]
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise WeightImportError(f"{path}: model.sd must map names to tensors; bad entries: {bad[:5]}")
    iteration = ckpt.get("iter")
    return OfficialDiToCheckpoint(
        state_dict=state, name=name, args=dict(model.get("args") or {}),
        iteration=int(iteration) if isinstance(iteration, int) else None,
    )


def detect_dito_size(state_dict: Mapping[str, Tensor]) -> str:
    """The DiTo size (``b``, ``l``, ``xl``) whose decoder widths match ``state_dict``."""
    missing = [k for k in _WIDTH_KEYS if k not in state_dict]
    if missing:
        raise WeightImportError(f"not a DiTo state dict: {missing[0]} is missing (expected renderer.net.* UNet tensors)")
    widths = tuple(int(state_dict[k].shape[0]) for k in _WIDTH_KEYS)
    official = {name: row for name, row in DITO_SIZES.items() if row.official_config}
    for name, row in official.items():
        if row.widths == widths:
            return name
    table = ", ".join(f"{n}={r.widths}" for n, r in official.items())
    raise WeightImportError(f"DiTo decoder widths (c0, c1, c2)={widths} match no known size ({table})")


def is_dropped(key: str, drop_prefixes: tuple[str, ...]) -> bool:
    """Whether ``key`` is the module/tensor ``p`` or lies under ``p.`` for some ``p`` in ``drop_prefixes``."""
    return any(key == p.rstrip(".") or key.startswith(p.rstrip(".") + ".") for p in drop_prefixes)


def dito_official_key(key: str, drop_prefixes: tuple[str, ...] = DEFAULT_DROP_PREFIXES) -> str | None:
    """Official ``model.sd`` key -> difftok name; ``None`` for keys under ``drop_prefixes``.

    Raises:
        KeyError: the key belongs to neither the tokenizer nor ``drop_prefixes``.
    """
    if is_dropped(key, drop_prefixes):
        return None
    if key.startswith("encoder.0."):
        return "encoder." + ldm_encoder_key(key.removeprefix("encoder.0."))
    if m := re.fullmatch(r"encoder\.1\.(weight|bias)", key):
        return f"encoder.quant_conv.{m.group(1)}"
    if key.startswith("renderer.net."):
        return "decoder." + consistency_unet_key(key.removeprefix("renderer.net."))
    raise KeyError(key)


def _empty_model(size: str, noise_sync: bool, device: str | torch.device) -> DiffusionAutoencoder:
    """The difftok model with uninitialised storage (the import overwrites every tensor)."""
    with torch.device("meta"):
        model = build_autoencoder(dito_config(size, noise_sync=noise_sync))
    saved = set(model.state_dict())
    unsaved = [n for n, _ in model.named_buffers() if n not in saved]
    if unsaved:  # to_empty would leave them uninitialised and the import would not fill them
        raise RuntimeError(f"model has buffers outside its state dict ({unsaved[:3]}); build it normally before importing")
    return model if torch.device(device).type == "meta" else model.to_empty(device=device)


def import_dito_state_dict(
    state_dict: Mapping[str, Tensor],
    size: str | None = None,
    *,
    noise_sync: bool = False,
    drop_prefixes: tuple[str, ...] = DEFAULT_DROP_PREFIXES,
    device: str | torch.device = "cpu",
    source: str = "official DiTo state dict",
) -> DiToImport:
    """Build the difftok DiTo of ``size`` (detected when None) and fill it from an official ``model.sd``.

    Args:
        state_dict: official tensors (``encoder.0.*``, ``encoder.1.*``, ``renderer.net.*``).
        size: ``b``, ``l`` or ``xl``; detected from the UNet widths when None.
        noise_sync: record noise synchronization in the config (for continued training).
        drop_prefixes: official modules (or tensors) to leave out on purpose, e.g. ``zdm_net``,
            ``zdm_net_ema``, ``renderer_ema`` of a latent-DiT run; everything else must map.
        device: where the model lives (``"meta"`` checks names and shapes without memory).
        source: name used in error messages.

    Raises:
        WeightImportError: a tensor has no counterpart, a difftok tensor is left unfilled, or a
            shape differs; each is named.
    """
    size = detect_dito_size(state_dict) if size is None else dito_size(size).name
    model = _empty_model(size, noise_sync, device)
    drop = tuple(drop_prefixes)
    try:
        import_state_dict(model, state_dict, partial(dito_official_key, drop_prefixes=drop), source=source)
    except WeightImportError as err:
        if "no difftok counterpart" not in str(err):
            raise
        raise WeightImportError(
            f"{err}. Tensors outside the tokenizer (e.g. zdm_net.*, renderer_ema.*) can be left out on purpose "
            f"with drop_prefixes=('zdm_net', ...) (CLI: drop=zdm_net,zdm_net_ema,renderer_ema)"
        ) from None
    dropped = sorted(k for k in state_dict if is_dropped(k, drop))
    return DiToImport(
        model=model.eval(), size=size, imported=len(state_dict) - len(dropped), dropped=dropped, source=source
    )


def import_dito_checkpoint(
    path: str | Path, size: str | None = None, *, drop_prefixes: tuple[str, ...] = DEFAULT_DROP_PREFIXES
) -> DiToImport:
    """Read an official ``ckpt-*.pth`` and import it (size detected unless given)."""
    ckpt = load_dito_checkpoint(path)
    result = import_dito_state_dict(
        ckpt.state_dict, size, noise_sync=bool(ckpt.args.get("zaug_p")), drop_prefixes=drop_prefixes, source=str(path)
    )
    result.iteration = ckpt.iteration
    return result


def convert_dito_checkpoint(
    path: str | Path, out_dir: str | Path, size: str | None = None, *, drop_prefixes: tuple[str, ...] = DEFAULT_DROP_PREFIXES
) -> DiToImport:
    """Import an official checkpoint and write a difftok ``save_pretrained`` folder to ``out_dir``."""
    result = import_dito_checkpoint(path, size, drop_prefixes=drop_prefixes)
    extra = {
        "imported_from": str(path),
        "official_model": "yinboc/dito",
        "official_iteration": result.iteration,
        "dito_size": result.size,
        "dropped_tensors": len(result.dropped),
    }
    save_pretrained(result.model, out_dir, extra=extra)
    return result
