"""Import official SSDD checkpoints (``model_ae_ema.safetensors`` / ``model_ae.safetensors``).

The official file holds ``encoder.*`` (LDM conv encoder + 1×1 ``out_proj``) and ``decoder.*``
(U-ViT decoder). Encoder keys are renamed by :func:`ldm_encoder_key`; decoder keys by
:func:`ssdd_decoder_key`, whose only differences from difftok's names are::

    down_blocks.{i}.downsamplers.0.*                         -> down_blocks.{i}.downsample.*
    up_blocks.{i}.upsamplers.0.*                             -> up_blocks.{i}.upsample.*
    transformer_blocks.{k}.attn1.*                           -> transformer_blocks.{k}.attn.*
    transformer_blocks.{k}.relative_position_bias.relative_bias_table
                                                             -> transformer_blocks.{k}.attn.relative_bias_table

The import goes through :func:`core.weight_import.import_state_dict`: every official tensor is used
exactly once, every difftok tensor is filled, and nothing is reshaped (the bias table is
``(15, 15, heads)`` on both sides). Encoder (``f8c4`` / ``f16c4``) and decoder size are read from
the tensor shapes unless given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from core.autoencoder import DiffusionAutoencoder
from core.builder import build_autoencoder
from core.pretrained import save_pretrained
from core.weight_import import import_state_dict
from modalities.image.official.ldm_encoder import ldm_encoder_key
from modalities.image.ssdd.config import ENCODER_LATENTS, ssdd_config
from modalities.image.ssdd.sizes import SSDD_SIZES

__all__ = ["SSDDLayout", "ssdd_decoder_key", "ssdd_key", "detect_ssdd_layout", "ssdd_from_official_state", "import_ssdd"]

_RESNET_LAYER = r"(norm1\.ctx_proj|conv1|time_emb_proj|norm2|conv2|conv_shortcut)"
_BLOCK_LAYER = r"(norm1\.linear|attn1\.(?:to_q|to_k|to_v|out_proj)|norm2|ff\.proj_in_act\.proj|ff\.proj_out)"


def ssdd_decoder_key(key: str) -> str:
    """Map one official decoder key (without ``decoder.``) to the :class:`UViTDecoder` name.

    Raises:
        KeyError: the key is not part of the official U-ViT decoder layout.
    """
    if re.fullmatch(r"(conv_in|time_embedding\.linear_[12]|ada_ctx_proj\.[02]|conv_norm_out|conv_out)\.(weight|bias)", key):
        return key
    if re.fullmatch(rf"(down|up)_blocks\.\d+\.resnets\.\d+\.{_RESNET_LAYER}\.(weight|bias)", key):
        return key
    if m := re.fullmatch(r"(down_blocks\.\d+)\.downsamplers\.0\.conv\.(weight|bias)", key):
        return f"{m.group(1)}.downsample.conv.{m.group(2)}"
    if m := re.fullmatch(r"(up_blocks\.\d+)\.upsamplers\.0\.conv\.(weight|bias)", key):
        return f"{m.group(1)}.upsample.conv.{m.group(2)}"
    if re.fullmatch(r"mid_block\.(norm|proj_in|proj_out)\.(weight|bias)", key):
        return key
    if m := re.fullmatch(rf"(mid_block\.transformer_blocks\.\d+)\.{_BLOCK_LAYER}\.(weight|bias)", key):
        return f"{m.group(1)}.{m.group(2).replace('attn1.', 'attn.')}.{m.group(3)}"
    if m := re.fullmatch(r"(mid_block\.transformer_blocks\.\d+)\.relative_position_bias\.relative_bias_table", key):
        return f"{m.group(1)}.attn.relative_bias_table"
    raise KeyError(key)


def ssdd_key(key: str) -> str:
    """Map a full official SSDD key (``encoder.*`` / ``decoder.*``) to the difftok autoencoder name."""
    prefix, _, rest = key.partition(".")
    if prefix == "encoder":
        return f"encoder.{ldm_encoder_key(rest)}"
    if prefix == "decoder":
        return f"decoder.{ssdd_decoder_key(rest)}"
    raise KeyError(key)


@dataclass(frozen=True)
class SSDDLayout:
    """What an official checkpoint contains: encoder string (``f8c4``) and decoder size (``m``)."""

    encoder: str
    decoder: str


def _shape(state: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"'{key}' is missing: this is not an official SSDD checkpoint (keys encoder.* and decoder.*)")
    return tuple(state[key].shape)


def detect_ssdd_layout(state: Mapping[str, Tensor]) -> SSDDLayout:
    """Read the encoder factor/channels and the decoder size from tensor shapes."""
    levels = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k))}
    latent = _shape(state, "encoder.conv_out.weight")[0] // 2
    encoder = f"f{2 ** (len(levels) - 1)}c{latent}"
    if encoder not in ENCODER_LATENTS:
        raise ValueError(f"checkpoint encoder '{encoder}' is not supported; supported: {', '.join(ENCODER_LATENTS)}")
    widths = [_shape(state, f"decoder.down_blocks.{i}.resnets.0.conv1.weight")[0] for i in range(4)]
    layers = len({m.group(1) for k in state if (m := re.match(r"decoder\.mid_block\.transformer_blocks\.(\d+)\.", k))})
    heads = _shape(state, "decoder.mid_block.transformer_blocks.0.relative_position_bias.relative_bias_table")[-1]
    for name, size in SSDD_SIZES.items():
        if size.widths == widths and size.num_layers == layers and size.heads == heads:
            return SSDDLayout(encoder=encoder, decoder=name)
    raise ValueError(
        f"no SSDD decoder size has level widths {widths}, {layers} transformer blocks and {heads} heads; "
        f"known sizes: {', '.join(SSDD_SIZES)}"
    )


def ssdd_from_official_state(
    state: Mapping[str, Tensor],
    *,
    encoder: str | None = None,
    decoder: str | None = None,
    device: torch.device | str | None = None,
    sample_steps: int = 8,
) -> DiffusionAutoencoder:
    """A difftok SSDD tokenizer filled with an official state dict (auxiliary loss terms off).

    Args:
        state: official tensors by name.
        encoder, decoder: override the detected ``f8c4``/``f16c4`` and size (``s`` ... ``h``).
        device: where to build the model (``"meta"`` checks names and shapes without memory).
        sample_steps: default decode steps stored in the config (1 for a distilled decoder).
    """
    detected = detect_ssdd_layout(state) if encoder is None or decoder is None else None
    layout = SSDDLayout(encoder or detected.encoder, (decoder or detected.decoder).lower())
    config = ssdd_config(layout.decoder, encoder=layout.encoder, lpips_weight=0.0, repa_weight=0.0, sample_steps=sample_steps)
    # Built without values (no random init of ~100M parameters), then every tensor is filled by the
    # import, which fails unless the checkpoint covers the whole state dict.
    with torch.device("meta"):
        model = build_autoencoder(config)
    unsaved_buffers = set(dict(model.named_buffers())) - set(model.state_dict())
    if unsaved_buffers:  # the import could not fill these: build them normally instead
        raise RuntimeError(f"SSDD import cannot initialise non-persistent buffers {sorted(unsaved_buffers)}")
    model = model.to_empty(device=device or "cpu")
    import_state_dict(model, state, ssdd_key, source=f"official SSDD {layout.encoder} {layout.decoder.upper()} checkpoint")
    return model


def import_ssdd(
    weights: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    encoder: str | None = None,
    decoder: str | None = None,
    sample_steps: int = 8,
) -> Path:
    """Read an official ``model_ae[_ema].safetensors`` and write a difftok ``save_pretrained`` folder."""
    from safetensors.torch import load_file

    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass the official model_ae_ema.safetensors (or model_ae.safetensors)")
    model = ssdd_from_official_state(load_file(str(path)), encoder=encoder, decoder=decoder, sample_steps=sample_steps)
    return save_pretrained(model, str(out_dir), extra={"imported_from": str(path.name)})
