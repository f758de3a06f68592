"""SSDD tokenizer configs with the paper's defaults (:func:`ssdd_config`)."""

from __future__ import annotations

from typing import Any

from core.autoencoder import SamplingConfig
from core.builder import AutoencoderConfig, ComponentConfig, LossTermConfig
from modalities.image.ssdd.sizes import size_row_kwargs

__all__ = ["ssdd_config", "ENCODER_LATENTS"]

# encoder string -> (registered encoder, latent channels)
ENCODER_LATENTS: dict[str, tuple[str, int]] = {"f8c4": ("kl_f8c4", 4), "f16c4": ("kl_f16c4", 4)}


def ssdd_config(
    size: str = "m",
    *,
    encoder: str = "f8c4",
    lpips_weight: float = 0.5,
    repa_weight: float = 0.25,
    kl_weight: float = 1e-6,
    lpips_kwargs: dict[str, Any] | None = None,
    repa_kwargs: dict[str, Any] | None = None,
    decoder_kwargs: dict[str, Any] | None = None,
    sample_steps: int = 8,
) -> AutoencoderConfig:
    """An SSDD tokenizer: KL ``encoder`` + ``ssdd_<size>`` decoder with the paper's objective.

    Defaults: KL weight 1e-6, ``sigma_min = 0``, logit-normal(0, 1) training times, Euler decoding
    on the power-2 grid with 8 steps, auxiliary ``lpips`` (0.5, on the one-step estimate) and
    ``repa`` (0.25) terms. A weight of 0 leaves that term out of the built model.

    Args:
        size: decoder size (``tiny``, ``xs``, ``s``, ``b``, ``m``, ``l``, ``xl``, ``h``).
        encoder: ``f8c4`` or ``f16c4``.
        lpips_kwargs, repa_kwargs: constructor kwargs of the ``lpips`` / ``repa`` loss terms
            (e.g. ``vgg_weights``, ``dino_weights``, ``allow_random_weights``).
        decoder_kwargs: overrides for the decoder (e.g. ``attention_backend``). The size's own
            row (channels, heads, window, ...) is written into the decoder kwargs too, so every
            one of them can be overridden from the CLI without ``+``.
        sample_steps: default decode steps (1 for a distilled decoder).
    """
    if encoder not in ENCODER_LATENTS:
        raise ValueError(f"unknown SSDD encoder '{encoder}'; choose one of {', '.join(ENCODER_LATENTS)}")
    encoder_name, latent_channels = ENCODER_LATENTS[encoder]
    # every kwarg listed explicitly so Hydra overrides such as
    # model.loss_terms.lpips.kwargs.vgg_weights=/path work on the structured config
    terms = {
        "lpips": LossTermConfig(weight=lpips_weight, kwargs={"vgg_weights": None, "allow_random_weights": False, **(lpips_kwargs or {})}),
        "repa": LossTermConfig(weight=repa_weight, kwargs={"dino_weights": None, "allow_random_weights": False, **(repa_kwargs or {})}),
    }
    return AutoencoderConfig(
        modality="image",
        spatial_dims=2,
        in_channels=3,
        latent_channels=latent_channels,
        encoder=ComponentConfig(encoder_name),
        decoder=ComponentConfig(f"ssdd_{size.lower()}", {**size_row_kwargs(size.lower()), **(decoder_kwargs or {})}),
        regularizer=ComponentConfig("kl"),
        regularizer_weight=kl_weight,
        sigma_min=0.0,
        time_sampler=ComponentConfig("logit_normal", {"mean": 0.0, "std": 1.0}),
        loss_terms={name: term for name, term in terms.items() if term.weight != 0},
        sampling=SamplingConfig(num_steps=sample_steps, grid="power", power=2.0, solver="euler"),
    )
