""":func:`video_dito_config`: a video DiTo tokenizer of one size as a core builder config.

The image DiTo objective unchanged (spec §3.8): flow matching with ``sigma_min = 1e-5``,
``t ~ U[0, 1]``, 50 uniform Euler steps, optional noise sync (p = 0.1) and optional per-frame LPIPS;
the latent is 16 channels with the per-frame LayerNorm (``layernorm_frames``) so noise sync's
premise (unit-variance latents) holds per frame and chunked encoding stays exact, or ``kl``.
"""

from __future__ import annotations

from typing import Any

from core.autoencoder import SamplingConfig
from core.builder import AutoencoderConfig, ComponentConfig, LossTermConfig
from core.latent.noise_sync import NoiseSyncConfig

__all__ = ["video_dito_config", "VIDEO_LATENT_CHANNELS", "VIDEO_NOISE_SYNC_P", "ENCODER_NAMES"]

VIDEO_LATENT_CHANNELS = 16  # the 4×8×8×16 peers' latent (Wan, Hunyuan, CogVideoX)
VIDEO_NOISE_SYNC_P = 0.1  # DiTo's p
ENCODER_NAMES = {4: "causal_video_f4s8", 8: "causal_video_f8s8"}  # temporal factor -> encoder


def video_dito_config(
    size: str,
    *,
    temporal_factor: int = 4,
    noise_sync: bool = False,
    lpips_weight: float = 0.0,
    lpips_kwargs: dict[str, Any] | None = None,
    regularizer: str = "layernorm_frames",
    regularizer_weight: float = 1.0,
) -> AutoencoderConfig:
    """The video DiTo tokenizer of ``size`` (``tiny``, ``s``, ``b``, ``l``, ``xl``).

    Args:
        size: decoder (and encoder) size, spec §3.6.
        temporal_factor: 4 (``causal_video_f4s8``, ``T = 1 + 4k``) or 8 (compact ``causal_video_f8s8``).
        noise_sync: DiTo noise synchronization (p = 0.1, tau_max = 1).
        lpips_weight: weight of the per-frame ``lpips_frames`` term (0 leaves it out).
        lpips_kwargs: its kwargs (``vgg_weights``, ``lin_weights``, ``allow_random_weights``).
        regularizer: ``layernorm_frames`` (DiTo-style, default) or ``kl``.
        regularizer_weight: the KL weight when ``regularizer="kl"``.
    """
    if temporal_factor not in ENCODER_NAMES:
        raise ValueError(f"temporal_factor must be one of {sorted(ENCODER_NAMES)}, got {temporal_factor}")
    key = size.lower().removeprefix("video_dito_")
    loss_terms: dict[str, LossTermConfig] = {}
    if lpips_weight:
        kwargs = {"vgg_weights": None, "lin_weights": None, "allow_random_weights": False, **(lpips_kwargs or {})}
        loss_terms["lpips_frames"] = LossTermConfig(weight=float(lpips_weight), kwargs=kwargs)
    return AutoencoderConfig(
        modality="video",
        spatial_dims=3,
        in_channels=3,
        latent_channels=VIDEO_LATENT_CHANNELS,
        encoder=ComponentConfig(ENCODER_NAMES[temporal_factor], {"size": key}),
        decoder=ComponentConfig(f"video_dito_{key}"),
        regularizer=ComponentConfig(regularizer),
        regularizer_weight=regularizer_weight,
        sigma_min=1e-5,
        time_sampler=ComponentConfig("uniform"),
        noise_sync=NoiseSyncConfig(p=VIDEO_NOISE_SYNC_P if noise_sync else 0.0, tau_max=1.0),
        loss_terms=loss_terms,
        sampling=SamplingConfig(num_steps=50, grid="uniform", solver="euler"),
    )
