"""Audio tokenizer sizes (spec ``audio.md`` §3.2/§3.3): encoder/decoder pairs and the builder config.

Each :class:`AudioSize` is registered under ``audio_<name>`` in BOTH ``ENCODERS`` and ``DECODERS``:

==========  ===================  =====  ====  =====================================  ==============
name        rate, hop            C_z    ch    encoder                                params enc/dec
==========  ===================  =====  ====  =====================================  ==============
tiny        16 kHz, 256 → 62.5   16     1     ``conv_encoder`` 1-D, base 16           0.63M / 2.60M
s           16 kHz, 256 → 62.5   16     1     ``conv_encoder`` 1-D, base 32           4.39M / 23.23M
b44k        44.1 kHz, 2048 → 21.5 64    2     ``conv_encoder`` 1-D, base 32           21.6M / 128.0M
s50hz       16 kHz, 320 → 50     16     1     causal ``strided_conv1d_encoder``       4.62M / 14.80M
tiny_hop16  16 kHz, 16 → 1000     4      1     ``conv_encoder`` 1-D, base 16           0.11M / 0.48M
==========  ===================  =====  ====  =====================================  ==============

``tiny_hop16`` is the CPU evidence size: ``tiny``'s first five stages with C_z 4, i.e. 4 latent values per
16 samples (4x fewer values than samples, ``tiny`` has 16x). At ``tiny``'s 16x the CPU runs learn the
spectrum but not the waveform (SI-SDR stays below -28 dB); at 4x they learn both in minutes.

(counts for mono input; ``b44k`` counts its mid attention, as the spec's 21.6M does.) The layers are
the core's :class:`~core.nets.ConvEncoder` / :class:`~core.nets.UNetDecoder` (1-D) and the plugin's
:class:`~modalities.audio.models.strided_encoder.StridedConv1dEncoder`; this file only fixes their
hyper-parameters, like :mod:`modalities.image.dito` does for images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from core.autoencoder import SamplingConfig
from core.builder import AutoencoderConfig, ComponentConfig, LossTermConfig
from core.latent.noise_sync import NoiseSyncConfig
from core.nets import ConvEncoder, UNetDecoder
from core.registry import DECODERS, ENCODERS
from core.shapes import ShapeRule
from modalities.audio.models.strided_encoder import StridedConv1dEncoder

__all__ = ["AudioSize", "AUDIO_SIZES", "audio_size", "audio_config", "AUDIO_NOISE_SYNC_P", "AUDIO_KL_WEIGHT"]

AUDIO_NOISE_SYNC_P = 0.1  # DiTo's noise-sync probability, unchanged (spec §3.4)
AUDIO_KL_WEIGHT = 1e-6  # SSDD's KL weight, for the optional KL latent


@dataclass(frozen=True)
class AudioSize:
    """One audio tokenizer size.

    Attributes:
        name: registered as ``audio_<name>``.
        sample_rate: the model rate in Hz (inputs at other rates are resampled by the data path).
        channels: audio channels the size is meant for (1 mono, 2 stereo).
        latent_channels: ``C_z``.
        crop_samples: training crop length (a multiple of the hop).
        encoder: ``"conv"`` (core ConvEncoder, hop ``2**(levels-1)``) or ``"strided"`` (causal DAC-style).
        encoder_kwargs: the encoder's fixed hyper-parameters.
        decoder_kwargs: the UNetDecoder's fixed hyper-parameters.
        params_m: (encoder, decoder) parameters in millions for mono input (asserted in tests).
    """

    name: str
    sample_rate: int
    channels: int
    latent_channels: int
    crop_samples: int
    encoder: str
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    decoder_kwargs: dict[str, Any] = field(default_factory=dict)
    params_m: tuple[float, float] = (0.0, 0.0)

    @property
    def hop(self) -> int:
        """Samples per latent frame."""
        if self.encoder == "strided":
            out = 1
            for s in self.encoder_kwargs["strides"]:
                out *= s
            return out
        return 2 ** (len(self.encoder_kwargs["channels_mult"]) - 1)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop


AUDIO_SIZES: dict[str, AudioSize] = {
    s.name: s
    for s in (
        AudioSize(
            "tiny", 16000, 1, 16, 16384, "conv",
            dict(base_channels=16, channels_mult=(1, 1, 2, 2, 4, 4, 4, 8, 8), num_res_blocks=1, num_groups=8, mid_attention=True),
            dict(stage_channels=(16, 16, 32, 32, 64, 64, 64, 128, 128), down_blocks=1, mid_blocks=1, up_blocks=2,
                 pe_dim=32, t_dim=128, num_groups=8),
            params_m=(0.63, 2.60),
        ),
        AudioSize(
            "s", 16000, 1, 16, 16384, "conv",
            dict(base_channels=32, channels_mult=(1, 1, 2, 2, 4, 4, 8, 8, 8), num_res_blocks=2, num_groups=32, mid_attention=True),
            dict(stage_channels=(32, 32, 64, 64, 128, 128, 256, 256, 256), down_blocks=2, mid_blocks=2, up_blocks=3,
                 pe_dim=128, t_dim=512, num_groups=32),
            params_m=(4.39, 23.23),
        ),
        AudioSize(
            "b44k", 44100, 2, 64, 65536, "conv",
            dict(base_channels=32, channels_mult=(1, 1, 2, 2, 4, 4, 8, 8, 16, 16, 16, 16), num_res_blocks=2,
                 num_groups=32, mid_attention=True),
            dict(stage_channels=(32, 32, 64, 64, 128, 128, 256, 256, 512, 512, 512, 512), down_blocks=2, mid_blocks=2,
                 up_blocks=3, pe_dim=320, t_dim=1280, num_groups=32),
            params_m=(21.55, 127.95),
        ),
        AudioSize(
            # v2 (spec §3.3): 50 Hz latents, causal encoder (chunked == full), 5 decoder stages at factors 2·4·5·8
            "s50hz", 16000, 1, 16, 16000, "strided",
            dict(base_channels=32, strides=(2, 4, 5, 8), causal=True, activation="snake"),
            dict(stage_channels=(32, 64, 128, 256, 256), resample_factors=(2, 4, 5, 8), down_blocks=2, mid_blocks=2,
                 up_blocks=3, pe_dim=128, t_dim=512, num_groups=32),
            params_m=(4.62, 14.80),
        ),
        AudioSize(
            # CPU evidence (recipes.audio.cpu_evidence): tiny's first 5 stages, 4x compression (C_z 4 per 16 samples)
            "tiny_hop16", 16000, 1, 4, 16384, "conv",
            dict(base_channels=16, channels_mult=(1, 1, 2, 2, 4), num_res_blocks=1, num_groups=8, mid_attention=True),
            dict(stage_channels=(16, 16, 32, 32, 64), down_blocks=1, mid_blocks=1, up_blocks=2, pe_dim=32, t_dim=128,
                 num_groups=8),
            params_m=(0.11, 0.48),
        ),
    )
}


def audio_size(size: str) -> AudioSize:
    """The row for ``size`` (``"s"`` and ``"audio_s"`` both work)."""
    key = size.lower().removeprefix("audio_")
    if key not in AUDIO_SIZES:
        raise KeyError(f"unknown audio size '{size}'; choose one of {', '.join('audio_' + n for n in AUDIO_SIZES)}")
    return AUDIO_SIZES[key]


def _check_1d(name: str, spatial_dims: int) -> None:
    if spatial_dims != 1:
        raise ValueError(f"audio_{name} is a waveform model (B, C, L): spatial_dims must be 1, got {spatial_dims}")


def _register(row: AudioSize) -> None:
    def encoder(spatial_dims: int = 1, in_channels: int = row.channels, out_channels: int = row.latent_channels) -> nn.Module:
        _check_1d(row.name, spatial_dims)
        if row.encoder == "strided":
            return StridedConv1dEncoder(1, in_channels, out_channels, **row.encoder_kwargs)
        return ConvEncoder(spatial_dims=1, in_channels=in_channels, out_channels=out_channels, **row.encoder_kwargs)

    def decoder(spatial_dims: int = 1, in_channels: int = row.channels, latent_channels: int = row.latent_channels,
                shape_rule: ShapeRule | None = None, upsample_factor: int | None = None) -> UNetDecoder:
        _check_1d(row.name, spatial_dims)
        rule = shape_rule or ShapeRule.isotropic(upsample_factor or row.hop, 1)
        return UNetDecoder(spatial_dims=1, in_channels=in_channels, latent_channels=latent_channels, shape_rule=rule,
                           **row.decoder_kwargs)

    name = f"audio_{row.name}"
    for factory, registry, what in ((encoder, ENCODERS, "encoder"), (decoder, DECODERS, "decoder")):
        factory.__name__ = factory.__qualname__ = name
        factory.__doc__ = (f"audio_{row.name} {what}: {row.sample_rate} Hz, hop {row.hop} ({row.frame_rate:g} Hz "
                           f"latents), C_z {row.latent_channels}; {row.params_m[0 if what == 'encoder' else 1]}M params (mono).")
        registry.add(name, factory)


for _row in AUDIO_SIZES.values():
    _register(_row)


def audio_config(
    size: str,
    *,
    channels: int | None = None,
    noise_sync: bool = False,
    latent: str = "layernorm_frames",
    mrstft_weight: float = 0.0,
    mel_weight: float = 0.0,
) -> AutoencoderConfig:
    """The audio tokenizer of ``size`` as a builder config.

    Args:
        size: ``tiny``, ``s``, ``b44k``, ``s50hz`` or ``tiny_hop16``.
        channels: audio channels (default: the size's, 1 or 2).
        noise_sync: DiTo noise synchronization (p = 0.1), the core's, unchanged.
        latent: ``"layernorm_frames"`` (pure DiTo, per latent frame) or ``"kl"`` (SSDD parity, weight 1e-6).
        mrstft_weight, mel_weight: weights of the ``mrstft`` / ``mel_l1`` terms on the one-step
            estimate (the SSDD-analogue variant); 0 leaves a term out of the built model.
    """
    row = audio_size(size)
    if latent not in ("layernorm_frames", "kl"):
        raise ValueError(f"latent must be 'layernorm_frames' or 'kl', got '{latent}'")
    # both terms are always listed (weight 0 = off, the builder skips them) so a recipe can switch
    # them on from the command line: model.loss_terms.mrstft.weight=1
    loss_terms = {
        "mrstft": LossTermConfig(weight=float(mrstft_weight)),
        "mel_l1": LossTermConfig(weight=float(mel_weight), kwargs={"sample_rate": row.sample_rate}),
    }
    return AutoencoderConfig(
        modality="audio",
        spatial_dims=1,
        in_channels=row.channels if channels is None else int(channels),
        latent_channels=row.latent_channels,
        encoder=ComponentConfig(f"audio_{row.name}"),
        decoder=ComponentConfig(f"audio_{row.name}"),
        regularizer=ComponentConfig(latent),
        regularizer_weight=AUDIO_KL_WEIGHT if latent == "kl" else 1.0,
        sigma_min=1e-5,
        time_sampler=ComponentConfig("uniform"),
        noise_sync=NoiseSyncConfig(p=AUDIO_NOISE_SYNC_P if noise_sync else 0.0, tau_max=1.0),
        loss_terms=loss_terms,
        sampling=SamplingConfig(num_steps=50, grid="uniform", solver="euler"),
    )
