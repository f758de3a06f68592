"""Deltas every CPU recipe applies to its paper recipe: the bundled photographs, one CPU process.

Used by ``quickstart``, ``dito_cpu_evidence`` and ``ssdd_cpu_evidence`` through
:func:`core.training.config.with_overrides`; each recipe adds its own sizes and cadences.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.builder import ComponentConfig

__all__ = ["CPU_DEMO_DELTAS", "cpu_dito_networks"]

CPU_DEMO_DELTAS: dict[str, Any] = {
    "data.demo": True,  # the photographs bundled with scikit-image: no dataset to download
    "data.num_workers": 0,  # decoding a few cached photographs is cheaper than spawning workers
    "trainer.accelerator": "cpu",  # the evidence is meant to reproduce on any laptop
    "trainer.log_every_n_steps": 10,  # runs are hundreds, not hundreds of thousands, of steps
    "trainer.preview_count": 2,  # two held-out photographs in each preview grid
}


def cpu_dito_networks(
    *, encoder_res_blocks: int, decoder_channels: Sequence[int], blocks: tuple[int, int, int], downsample: int = 8,
) -> dict[str, Any]:
    """Deltas ``model.encoder`` / ``model.decoder``: DiTo's LDM conv encoder at 1/8 width (16
    channels; DiTo: 128), 4 latent channels, spatial factor ``downsample`` (8: DiTo's f8c4; 4: one
    level fewer, f4c4), and its consistency UNet at ``decoder_channels`` with ``blocks`` =
    (down, mid, up) blocks per stage (DiTo: 3/2/4)."""
    multipliers = {8: [1, 2, 4, 4], 4: [1, 2, 4]}
    if downsample not in multipliers:
        raise ValueError(f"cpu_dito_networks: downsample must be one of {sorted(multipliers)}, got {downsample}")
    down, mid, up = blocks
    return {
        "model.encoder": ComponentConfig(
            "conv_encoder",
            {"base_channels": 16, "channels_mult": multipliers[downsample], "num_res_blocks": encoder_res_blocks, "num_groups": 8},
        ),
        "model.decoder": ComponentConfig(
            "unet_decoder",
            {"stage_channels": list(decoder_channels), "down_blocks": down, "mid_blocks": mid, "up_blocks": up,
             "pe_dim": 64, "t_dim": 256, "num_groups": 8},
        ),
    }
