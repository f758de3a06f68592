"""Key names of the LDM/taming conv encoder (DiTo ``encoder.0.*``, SSDD ``encoder.*``) -> difftok.

difftok's :class:`core.nets.ConvEncoder` has the same layers in the same order; only names differ:
``down.{i}.block.{j}`` -> ``levels.{i}.{j}``, ``down.{i}.downsample`` -> ``levels.{i}.{n_blocks}``,
``nin_shortcut`` -> ``skip``, ``mid.block_1/attn_1/block_2`` -> ``mid.0/1/2``, and the extra 1×1
conv (DiTo ``encoder.1``, SSDD ``out_proj``) -> ``quant_conv``.
"""

from __future__ import annotations

import re

__all__ = ["ldm_encoder_key"]

_MID = {"block_1": "0", "attn_1": "1", "block_2": "2"}


def ldm_encoder_key(key: str, num_res_blocks: int = 2) -> str:
    """Map one official encoder key (without the model prefix) to the ConvEncoder name.

    Raises:
        KeyError: the key is not part of the LDM encoder layout.
    """
    if m := re.fullmatch(r"down\.(\d+)\.block\.(\d+)\.(norm1|conv1|norm2|conv2|nin_shortcut)\.(weight|bias)", key):
        level, block, layer, kind = m.groups()
        return f"levels.{level}.{block}.{'skip' if layer == 'nin_shortcut' else layer}.{kind}"
    if m := re.fullmatch(r"down\.(\d+)\.downsample\.conv\.(weight|bias)", key):
        return f"levels.{m.group(1)}.{num_res_blocks}.conv.{m.group(2)}"
    if m := re.fullmatch(r"mid\.(block_1|attn_1|block_2)\.(\w+)\.(weight|bias)", key):
        layer = "skip" if m.group(2) == "nin_shortcut" else m.group(2)
        return f"mid.{_MID[m.group(1)]}.{layer}.{m.group(3)}"
    if m := re.fullmatch(r"(conv_in|norm_out|conv_out)\.(weight|bias)", key):
        return key
    if m := re.fullmatch(r"out_proj\.(weight|bias)", key):
        return f"quant_conv.{m.group(1)}"
    raise KeyError(key)
