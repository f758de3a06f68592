"""``GeneratorConfig`` and ``build_generator``: a latent generator from registry names + kwargs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.builder import ComponentConfig, _plain
from core.flow.path import FlowPath
from core.generation.objective import LatentGenerator
from core.latent.stats import LatentStats
from core.registry import GENERATORS, TIME_SAMPLERS

__all__ = ["GeneratorConfig", "build_generator", "generator_config_from_dict"]


@dataclass
class GeneratorConfig:
    """Everything needed to rebuild a latent generator (DiTo §6 defaults: DiT-XL/2 on f8c4 latents).

    ``latent_shift`` / ``latent_scale`` are the tokenizer statistics the generator was trained with:
    generator latents are ``(z - shift) / scale`` (DiTo's LayerNorm latents: 0 / 1, no rescaling).
    """

    net: ComponentConfig = field(default_factory=lambda: ComponentConfig("dit_xl_2"))
    spatial_dims: int = 2
    latent_channels: int = 4
    latent_size: list[int] = field(default_factory=lambda: [32, 32])  # training latent grid (256² / 8)
    num_classes: int = 1000  # real classes; the null class is index num_classes
    sigma_min: float = 1e-5
    time_sampler: ComponentConfig = field(default_factory=lambda: ComponentConfig("uniform"))
    label_drop_prob: float = 0.1
    sample_steps: int = 200
    cfg_scale: float = 2.0
    latent_shift: float = 0.0
    latent_scale: float = 1.0
    tokenizer: str | None = None  # save_pretrained folder of the tokenizer whose latents it models

    @property
    def latent_stats(self) -> LatentStats:
        return LatentStats(shift=self.latent_shift, scale=self.latent_scale)

    def latent_shape(self) -> tuple[int, ...]:
        """``(C_z, *S)`` of one training latent."""
        return (self.latent_channels, *self.latent_size)


def generator_config_from_dict(data: dict[str, Any]) -> GeneratorConfig:
    """Inverse of ``asdict``; unknown keys raise so typos and newer files are caught."""
    data = dict(_plain(data))
    unknown = set(data) - set(GeneratorConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown generator config keys {sorted(unknown)}; known: {sorted(GeneratorConfig.__dataclass_fields__)}")
    for key in ("net", "time_sampler"):
        if isinstance(data.get(key), dict):
            data[key] = ComponentConfig(**data[key])
    if "latent_size" in data:
        data["latent_size"] = [int(s) for s in data["latent_size"]]
    return GeneratorConfig(**data)


def build_generator(config: GeneratorConfig | dict[str, Any]) -> LatentGenerator:
    """Instantiate the network and objective described by ``config``."""
    if not isinstance(config, GeneratorConfig):
        config = generator_config_from_dict(config)
    if len(config.latent_size) != config.spatial_dims:
        raise ValueError(f"latent_size {config.latent_size} must have spatial_dims={config.spatial_dims} entries")
    net = GENERATORS.create(
        config.net.name, **{
            "spatial_dims": config.spatial_dims, "in_channels": config.latent_channels,
            "input_size": list(config.latent_size), "num_classes": config.num_classes, **_plain(config.net.kwargs),
        }
    )
    time_sampler = TIME_SAMPLERS.create(config.time_sampler.name, **_plain(config.time_sampler.kwargs))
    return LatentGenerator(
        net, path=FlowPath(sigma_min=config.sigma_min), time_sampler=time_sampler,
        label_drop_prob=config.label_drop_prob, config=config,
    )
