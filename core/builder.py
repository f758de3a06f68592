"""Build a :class:`DiffusionAutoencoder` from a plain, serialisable config.

The config names components by registry name plus keyword arguments (never import paths), so it
is stored verbatim in ``config.json`` and in Lightning checkpoints.

Builder contract: encoders are created with ``spatial_dims``, ``in_channels`` and ``out_channels``
(= ``latent_channels`` x the regularizer's ``raw_channels_per_latent``) and expose a
:class:`~core.shapes.ShapeRule` (``shape_rule``, or one ``downsample_factor`` meaning an isotropic
rule). Decoders are created with ``spatial_dims``, ``in_channels``, ``latent_channels`` and the
encoder's rule: as ``shape_rule`` when their factory declares that parameter, else as one
``upsample_factor`` (only possible for isotropic rules). Both also receive their ``kwargs``.
Loss-term factories get their ``kwargs`` plus the built ``decoder`` when they declare a ``decoder``
parameter (e.g. REPA sizes its projector from it).
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch import nn

from core.autoencoder import DiffusionAutoencoder, SamplingConfig, encoder_shape_rule
from core.flow.path import FlowPath
from core.latent.noise_sync import NoiseSyncConfig
from core.latent.stats import LatentStats
from core.registry import DECODERS, ENCODERS, LOSS_TERMS, REGULARIZERS, TIME_SAMPLERS
from core.shapes import ShapeRule

__all__ = [
    "ComponentConfig", "LossTermConfig", "AutoencoderConfig", "build_autoencoder", "config_from_dict", "create_loss_term",
]


@dataclass
class ComponentConfig:
    """A registered component: registry ``name`` and constructor ``kwargs``."""

    name: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossTermConfig:
    """An auxiliary loss term (registry name is the key in ``AutoencoderConfig.loss_terms``)."""

    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class AutoencoderConfig:
    """Everything needed to rebuild a tokenizer's architecture and objective."""

    modality: str = "image"
    spatial_dims: int = 2
    in_channels: int = 3
    latent_channels: int = 4
    encoder: ComponentConfig = field(default_factory=lambda: ComponentConfig("conv_encoder"))
    decoder: ComponentConfig = field(default_factory=lambda: ComponentConfig("unet_decoder"))
    regularizer: ComponentConfig = field(default_factory=lambda: ComponentConfig("layernorm"))
    regularizer_weight: float = 1.0  # KL weight for the "kl" regularizer (SSDD: 1e-6)
    sigma_min: float = 1e-5  # DiTo 1e-5, SSDD 0
    time_sampler: ComponentConfig = field(default_factory=lambda: ComponentConfig("uniform"))
    noise_sync: NoiseSyncConfig = field(default_factory=lambda: NoiseSyncConfig(p=0.0))  # DiTo: p = 0.1; p = 0 is off
    loss_terms: dict[str, LossTermConfig] = field(default_factory=dict)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # default decode settings
    latent_stats: LatentStats = field(default_factory=LatentStats)  # generator normalisation (shift, scale)


# config.json files written before the nested fields existed: flat key -> (nested field, its key)
LEGACY_FLAT_KEYS: dict[str, tuple[str, str]] = {
    "noise_sync_p": ("noise_sync", "p"),
    "noise_sync_tau_max": ("noise_sync", "tau_max"),
    "sample_steps": ("sampling", "num_steps"),
    "sample_grid": ("sampling", "grid"),
    "sample_grid_power": ("sampling", "power"),
    "sample_solver": ("sampling", "solver"),
    "latent_shift": ("latent_stats", "shift"),
    "latent_scale": ("latent_stats", "scale"),
}
_NESTED: dict[str, type] = {
    "encoder": ComponentConfig, "decoder": ComponentConfig, "regularizer": ComponentConfig,
    "time_sampler": ComponentConfig, "noise_sync": NoiseSyncConfig, "sampling": SamplingConfig,
    "latent_stats": LatentStats,
}


def _plain(obj: Any) -> Any:
    """OmegaConf containers / dataclasses -> plain python (for kwargs and JSON)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return obj


def _nest_legacy_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Move the flat keys of older ``config.json`` files (``sample_steps``, ...) into their nested fields."""
    for flat, (node, key) in LEGACY_FLAT_KEYS.items():
        if flat not in data:
            continue
        nested = data.get(node)
        if nested is not None and not isinstance(nested, dict):
            nested = asdict(nested)
        nested = dict(nested or {})
        if key in nested:
            raise ValueError(f"autoencoder config sets both '{flat}' and '{node}.{key}'; keep only '{node}.{key}'")
        nested[key] = data.pop(flat)
        data[node] = nested
    return data


def config_from_dict(data: dict[str, Any]) -> AutoencoderConfig:
    """Inverse of ``asdict(config)``; unknown keys raise so typos and newer files are caught.

    Also reads the flat layout of older files (``noise_sync_p``, ``sample_steps``, ``latent_shift``,
    ... see :data:`LEGACY_FLAT_KEYS`), so every earlier export still loads.
    """
    data = _nest_legacy_keys(dict(_plain(data)))
    known = set(AutoencoderConfig.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown autoencoder config keys {sorted(unknown)}; known: {sorted(known)}")
    for key, node_type in _NESTED.items():
        if key in data and isinstance(data[key], dict):
            fields = set(node_type.__dataclass_fields__)
            if set(data[key]) - fields:
                raise ValueError(f"unknown keys {sorted(set(data[key]) - fields)} in autoencoder config '{key}'; known: {sorted(fields)}")
            data[key] = node_type(**data[key])
    if "loss_terms" in data:
        data["loss_terms"] = {k: LossTermConfig(**v) if isinstance(v, dict) else v for k, v in data["loss_terms"].items()}
    return AutoencoderConfig(**data)


def build_autoencoder(config: AutoencoderConfig | dict[str, Any], *, with_loss_terms: bool = True) -> DiffusionAutoencoder:
    """Instantiate encoder, regularizer, decoder and objective from ``config``.

    Args:
        config: the architecture and objective.
        with_loss_terms: build the auxiliary loss terms. Inference does not need them (nor the
            frozen networks or weight files some of them load); ``config.loss_terms`` is kept
            either way so a saved model still records its objective.
    """
    if not isinstance(config, AutoencoderConfig):
        config = config_from_dict(config)
    regularizer = REGULARIZERS.create(config.regularizer.name, **_plain(config.regularizer.kwargs))
    encoder = ENCODERS.create(
        config.encoder.name,
        spatial_dims=config.spatial_dims,
        in_channels=config.in_channels,
        out_channels=config.latent_channels * regularizer.raw_channels_per_latent,
        **_plain(config.encoder.kwargs),
    )
    decoder = DECODERS.create(
        config.decoder.name,
        spatial_dims=config.spatial_dims,
        in_channels=config.in_channels,
        latent_channels=config.latent_channels,
        **_decoder_shape_kwargs(config.decoder.name, encoder_shape_rule(encoder)),
        **_plain(config.decoder.kwargs),
    )
    loss_terms = {
        name: (term.weight, create_loss_term(name, _plain(term.kwargs), decoder))
        for name, term in _plain_terms(config.loss_terms).items()
        if term.weight != 0 and with_loss_terms
    }
    config = _as_dataclasses(config)
    return DiffusionAutoencoder(
        encoder,
        regularizer,
        decoder,
        path=FlowPath(sigma_min=config.sigma_min),
        time_sampler=TIME_SAMPLERS.create(config.time_sampler.name, **_plain(config.time_sampler.kwargs)),
        noise_sync=replace(config.noise_sync) if config.noise_sync.p > 0 else None,
        regularizer_weight=config.regularizer_weight,
        loss_terms=loss_terms,
        sampling=replace(config.sampling),
        latent_stats=replace(config.latent_stats),
        config=config,
    )


def _decoder_shape_kwargs(name: str, rule: ShapeRule) -> dict[str, Any]:
    """How decoder ``name`` receives the shape rule: ``shape_rule`` if its factory declares it, else one int."""
    if "shape_rule" in inspect.signature(DECODERS.get(name)).parameters:
        return {"shape_rule": rule}
    if not rule.is_isotropic:
        raise ValueError(
            f"decoder '{name}' takes one upsample_factor, but the encoder's rule is {rule.describe()}; "
            f"use a decoder whose factory accepts shape_rule (e.g. 'unet_decoder')"
        )
    return {"upsample_factor": rule.factors[0]}


def create_loss_term(name: str, kwargs: dict[str, Any], decoder: nn.Module) -> nn.Module:
    """Build loss term ``name``; its factory also gets ``decoder`` if it has such a parameter."""
    factory = LOSS_TERMS.get(name)
    if "decoder" in inspect.signature(factory).parameters:
        if "decoder" in kwargs:
            raise ValueError(f"loss term '{name}': 'decoder' is passed by the builder; remove it from the term's kwargs")
        kwargs = {**kwargs, "decoder": decoder}
    return LOSS_TERMS.create(name, **kwargs)


def _plain_terms(terms: Any) -> dict[str, LossTermConfig]:
    out = {}
    for name, term in dict(terms).items():
        if isinstance(term, LossTermConfig):
            out[name] = term
        else:
            out[name] = LossTermConfig(**_plain(term))
    return out


def _as_dataclasses(config: AutoencoderConfig) -> AutoencoderConfig:
    """``config`` with every nested setting as its dataclass (a caller may have assigned a plain dict)."""
    if all(isinstance(getattr(config, key), node_type) for key, node_type in _NESTED.items()):
        return config
    return config_from_dict(asdict(config))
