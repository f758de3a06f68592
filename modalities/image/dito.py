"""DiTo (arXiv 2501.18593) image tokenizer presets: encoder, decoder sizes and the paper config.

- ``ldm_f8c4`` (ENCODERS): the SD/LDM f8 conv encoder with DiTo's extra 1×1 conv (34.1M params),
  shared by every size. 2-D only.
- ``dito_tiny`` / ``dito_b`` / ``dito_l`` / ``dito_xl`` (DECODERS): the consistency-decoder UNet
  at the widths of :data:`DITO_SIZES` (paper Table 3; ``tiny`` is a test size).
- :func:`dito_config`: the paper's tokenizer (LayerNorm latent, flow matching with
  ``sigma_min = 1e-5``, ``t ~ U[0, 1]``, 50 uniform Euler steps; optional noise sync and LPIPS).

The layers themselves are the core's dimension-generic :class:`~core.nets.ConvEncoder` and
:class:`~core.nets.UNetDecoder`; this file only fixes their hyper-parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from core.autoencoder import SamplingConfig
from core.builder import AutoencoderConfig, ComponentConfig, LossTermConfig
from core.latent.noise_sync import NoiseSyncConfig
from core.nets import ConvEncoder, UNetDecoder
from core.registry import DECODERS, ENCODERS
from modalities.image.size_table import size_kwargs

__all__ = [
    "DiToSize",
    "DITO_SIZES",
    "DITO_LPIPS_WEIGHT",
    "DITO_NOISE_SYNC_P",
    "ldm_f8c4",
    "dito_decoder",
    "dito_config",
    "dito_size",
    "dito_row_kwargs",
    "DITO_ARCHITECTURE_FIELDS",
]

DITO_LPIPS_WEIGHT = 0.5  # paper App. E ("DiTo (+LPIPS)"); the official code's default of 1 is not used
DITO_NOISE_SYNC_P = 0.1  # paper §4, config dito-XL-f8c4-noise-sync (zaug_p)


@dataclass(frozen=True)
class DiToSize:
    """One row of the DiTo size table.

    Attributes:
        name: short name (``b``, ``l``, ``xl``, ``tiny``); the decoder is registered as ``dito_<name>``.
        widths: UNet widths ``(c0, c1, c2)`` at 1, 1/2 and 1/4 (and 1/8) resolution; the paper
            calls them c1, c2, c3.
        pe_dim, t_dim: sinusoidal time features and time-embedding width.
        num_groups: GroupNorm groups.
        paper_decoder_params_m: decoder parameters reported in the paper (millions).
        a100_hours, nodes: the paper's training compute (A100-hours, nodes of 8 A100).
        official_config: the official experiment config that trains this size.
    """

    name: str
    widths: tuple[int, int, int]
    pe_dim: int = 320
    t_dim: int = 1280
    num_groups: int = 32
    paper_decoder_params_m: float | None = None
    a100_hours: int | None = None
    nodes: int | None = None
    official_config: str | None = None

    @property
    def stage_channels(self) -> tuple[int, int, int, int]:
        """Per-stage widths ``(c0, c1, c2, c2)`` at resolutions 1, 1/2, 1/4, 1/8."""
        c0, c1, c2 = self.widths
        return (c0, c1, c2, c2)


DITO_SIZES: dict[str, DiToSize] = {
    s.name: s
    for s in (
        DiToSize("tiny", (8, 16, 24), pe_dim=32, t_dim=64, num_groups=8),  # ~0.4M params, for tests
        DiToSize("b", (128, 256, 512), paper_decoder_params_m=162.8, a100_hours=432, nodes=1, official_config="dito-B-f8c4"),
        DiToSize("l", (192, 384, 768), paper_decoder_params_m=338.5, a100_hours=864, nodes=2, official_config="dito-L-f8c4"),
        DiToSize("xl", (320, 640, 1024), paper_decoder_params_m=620.9, a100_hours=1728, nodes=4, official_config="dito-XL-f8c4"),
    )
}
# The UNet topology is the same for every size (consistency decoder): 3 ResBlocks + 1 resampling
# block per down stage, 2 middle blocks, 4 ResBlocks (+ 1 resampling block) per up stage.
DITO_UNET_TOPOLOGY: dict[str, int] = {"down_blocks": 3, "mid_blocks": 2, "up_blocks": 4}


def dito_size(size: str) -> DiToSize:
    """The table row for ``size`` (``"b"``, ``"B"``, ``"dito_b"`` and ``"DiTo-B"`` all work)."""
    key = size.lower().replace("-", "_").removeprefix("dito_")
    if key not in DITO_SIZES:
        raise KeyError(f"unknown DiTo size '{size}'; choose one of {', '.join(DITO_SIZES)}")
    return DITO_SIZES[key]


@ENCODERS.register("ldm_f8c4")
def ldm_f8c4(spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 4) -> ConvEncoder:
    """SD/LDM ``f8`` conv encoder (ch 128, mult 1-2-4-4, 2 ResBlocks per level, mid attention,
    GroupNorm eps 1e-6) with DiTo's extra 1×1 conv; 34.1M parameters for 4 latent channels."""
    if spatial_dims != 2:
        raise ValueError(
            f"ldm_f8c4 is the 2-D image encoder of DiTo/LDM; got spatial_dims={spatial_dims}. "
            f"For 1-D or 3-D data use the dimension-generic 'conv_encoder' (same layers, any spatial_dims)."
        )
    return ConvEncoder(
        spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
        base_channels=128, channels_mult=(1, 2, 4, 4), num_res_blocks=2, num_groups=32, mid_attention=True,
    )


DITO_ARCHITECTURE_FIELDS = ("widths", "pe_dim", "t_dim", "num_groups")  # the columns that shape the network


def dito_row_kwargs(size: str) -> dict[str, Any]:
    """The architecture kwargs of ``size`` (:data:`DITO_ARCHITECTURE_FIELDS` of its table row)."""
    row = dito_size(size)
    return {name: getattr(row, name) for name in DITO_ARCHITECTURE_FIELDS}


def dito_decoder(
    size: str, *, spatial_dims: int = 2, in_channels: int = 3, latent_channels: int = 4, upsample_factor: int = 8,
    **overrides: Any,
) -> UNetDecoder:
    """The DiTo decoder of ``size`` (consistency-decoder UNet, no attention, time scale/shift).

    ``overrides`` replace table columns (``widths``, ``pe_dim``, ``t_dim``, ``num_groups``);
    :func:`dito_config` writes the row there so each is overridable from the CLI.
    """
    unknown = set(overrides) - set(DITO_ARCHITECTURE_FIELDS)
    if unknown:
        raise TypeError(f"dito_{dito_size(size).name} got unknown kwargs {sorted(unknown)}; overridable: {', '.join(DITO_ARCHITECTURE_FIELDS)}")
    rows = {name: dito_row_kwargs(name) for name in DITO_SIZES}
    merged = size_kwargs("dito", dito_size(size).name, rows, overrides)
    row = replace(dito_size(size), **{**merged, "widths": tuple(merged["widths"])})
    return UNetDecoder(
        spatial_dims=spatial_dims, in_channels=in_channels, latent_channels=latent_channels,
        upsample_factor=upsample_factor, stage_channels=row.stage_channels, pe_dim=row.pe_dim, t_dim=row.t_dim,
        num_groups=row.num_groups, **DITO_UNET_TOPOLOGY,
    )


def _register_decoder(size: str) -> None:
    row = dito_size(size)

    def factory(spatial_dims: int = 2, in_channels: int = 3, latent_channels: int = 4, upsample_factor: int = 8,
                **overrides: Any) -> UNetDecoder:
        return dito_decoder(size, spatial_dims=spatial_dims, in_channels=in_channels, latent_channels=latent_channels,
                            upsample_factor=upsample_factor, **overrides)

    params = "" if row.paper_decoder_params_m is None else f": {row.paper_decoder_params_m}M parameters"
    label = "DiTo topology at test widths" if row.name == "tiny" else f"DiTo-{row.name.upper()} decoder"
    factory.__name__ = factory.__qualname__ = f"dito_{row.name}"
    factory.__doc__ = f"{label}, widths {row.widths}{params}."
    DECODERS.add(f"dito_{row.name}", factory)


for _size in DITO_SIZES:
    _register_decoder(_size)


def dito_config(
    size: str,
    *,
    noise_sync: bool = False,
    lpips_weight: float = 0.0,
    lpips_kwargs: dict[str, Any] | None = None,
) -> AutoencoderConfig:
    """The paper's DiTo tokenizer of ``size`` as a builder config.

    Args:
        size: ``tiny``, ``b``, ``l`` or ``xl``.
        noise_sync: DiTo noise synchronization (p = 0.1, tau ~ U[0, 1], pixel t ~ U[tau, 1]).
        lpips_weight: weight of the ``lpips`` loss term on the one-step estimate ``x_t + t·u``;
            the paper's "DiTo (+LPIPS)" uses :data:`DITO_LPIPS_WEIGHT` (0.5). 0 leaves it out.
        lpips_kwargs: keyword arguments of the ``lpips`` term (``vgg_weights``,
            ``allow_random_weights``); listed explicitly so they can be overridden from the CLI.
    """
    row = dito_size(size)
    loss_terms: dict[str, LossTermConfig] = {}
    if lpips_weight:
        kwargs = {"vgg_weights": None, "allow_random_weights": False, **(lpips_kwargs or {})}
        loss_terms["lpips"] = LossTermConfig(weight=float(lpips_weight), kwargs=kwargs)
    return AutoencoderConfig(
        modality="image",
        spatial_dims=2,
        in_channels=3,
        latent_channels=4,
        encoder=ComponentConfig("ldm_f8c4"),
        decoder=ComponentConfig(f"dito_{row.name}", dito_row_kwargs(row.name)),  # overridable without "+"
        regularizer=ComponentConfig("layernorm"),  # LayerNorm over (C, H, W), no affine, eps 1e-5
        sigma_min=1e-5,
        time_sampler=ComponentConfig("uniform"),
        noise_sync=NoiseSyncConfig(p=DITO_NOISE_SYNC_P if noise_sync else 0.0, tau_max=1.0),
        loss_terms=loss_terms,
        sampling=SamplingConfig(num_steps=50, grid="uniform", solver="euler"),
    )
