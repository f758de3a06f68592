"""Key names of the consistency-decoder UNet (DiTo ``renderer.net.*``) -> difftok :class:`UNetDecoder`.

The official UNet nests its blocks per stage: ``down.{stage}.{block}`` (3 ResBlocks then the
Downsample block, except at the last stage) and ``up.{stage}.{block}`` (4 ResBlocks then the
Upsample block, except at stage 0), with the up stages run from the last to stage 0. difftok
keeps one flat list per path in execution order, so only the indices and layer names change:

========================  ========================
official                  difftok
========================  ========================
``embed_image.f``         ``stem``
``embed_time.f_1 / f_2``  ``time_embed.mlp.0 / 2``
``*.f_t``                 ``*.t_proj``
``*.gn_1 / gn_2``         ``*.norm1 / norm2``
``*.f_1 / f_2``           ``*.conv1 / conv2``
``*.f_s``                 ``*.skip`` (1×1 conv when widths change)
``output.gn / output.f``  ``norm_out / conv_out``
========================  ========================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["UNetTopology", "consistency_unet_key"]

_LAYER = {"f_t": "t_proj", "gn_1": "norm1", "f_1": "conv1", "gn_2": "norm2", "f_2": "conv2", "f_s": "skip"}
_FIXED = {
    "embed_image.f": "stem",
    "embed_time.f_1": "time_embed.mlp.0",
    "embed_time.f_2": "time_embed.mlp.2",
    "output.gn": "norm_out",
    "output.f": "conv_out",
}


@dataclass(frozen=True)
class UNetTopology:
    """Block counts of the UNet (DiTo: 4 stages, 3 down, 2 mid, 4 up ResBlocks)."""

    num_stages: int = 4
    down_blocks: int = 3
    mid_blocks: int = 2
    up_blocks: int = 4

    def down_index(self, stage: int, block: int) -> int:
        """Flat ``down`` index of official ``down.{stage}.{block}``; KeyError when out of range."""
        per_stage = self.down_blocks + (1 if stage < self.num_stages - 1 else 0)  # + Downsample
        if not (0 <= stage < self.num_stages and 0 <= block < per_stage):
            raise KeyError(f"down.{stage}.{block}")
        return stage * (self.down_blocks + 1) + block

    def up_index(self, stage: int, block: int) -> int:
        """Flat ``up`` index of official ``up.{stage}.{block}`` (stages run last -> 0)."""
        per_stage = self.up_blocks + (1 if stage > 0 else 0)  # + Upsample
        if not (0 <= stage < self.num_stages and 0 <= block < per_stage):
            raise KeyError(f"up.{stage}.{block}")
        return (self.num_stages - 1 - stage) * (self.up_blocks + 1) + block


def consistency_unet_key(key: str, topology: UNetTopology = UNetTopology()) -> str:
    """Map one official UNet key (without the ``renderer.net.`` prefix) to the UNetDecoder name.

    Raises:
        KeyError: the key is not part of the consistency-decoder UNet layout.
    """
    if m := re.fullmatch(r"(down|up)\.(\d+)\.(\d+)\.(f_t|gn_1|f_1|gn_2|f_2|f_s)\.(weight|bias)", key):
        path, stage, block, layer, kind = m.groups()
        index = (topology.down_index if path == "down" else topology.up_index)(int(stage), int(block))
        return f"{path}.{index}.{_LAYER[layer]}.{kind}"
    if m := re.fullmatch(r"mid\.(\d+)\.(f_t|gn_1|f_1|gn_2|f_2|f_s)\.(weight|bias)", key):
        index, layer, kind = m.groups()
        if int(index) >= topology.mid_blocks:
            raise KeyError(key)
        return f"mid.{index}.{_LAYER[layer]}.{kind}"
    if m := re.fullmatch(r"(embed_image\.f|embed_time\.f_[12]|output\.gn|output\.f)\.(weight|bias)", key):
        return f"{_FIXED[m.group(1)]}.{m.group(2)}"
    raise KeyError(key)
