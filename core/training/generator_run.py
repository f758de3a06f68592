"""``train_generator(cfg)``: train a latent generator (DiTo §6 latent DiT) on a frozen tokenizer.

Writes, under ``cfg.output_dir``: ``checkpoints/`` (exact resume), ``export/`` (EMA weights,
``core.generation.load_generator``), ``logs/``, ``samples/`` (decoded preview samples) and
``config.yaml``. Kept separate from the CLI like :func:`core.training.run.train`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from core.autoencoder import DiffusionAutoencoder
from core.data.resumable import ResumableDataModule
from core.generation.config import GeneratorConfig, build_generator
from core.generation.objective import LatentGenerator
from core.generation.pretrained import save_generator
from core.generation.sampling import sample_and_decode
from core.latent.cache import make_latent_dataloader, read_latent_index
from core.modality import get_modality, with_data_options
from core.pretrained import from_pretrained
from core.training.generator_config import GeneratorExperimentConfig, GeneratorSampleConfig
from core.training.generator_module import GeneratorModule
from core.training.skeleton import RunParts, TrainResult, run_experiment, to_structured_config

__all__ = ["train_generator", "to_generator_config", "resolve_generator_config", "decode_samples"]

log = logging.getLogger("difftok")


def to_generator_config(cfg: GeneratorExperimentConfig | DictConfig | dict) -> GeneratorExperimentConfig:
    """Accept a dataclass, an OmegaConf node or a dict; return a validated, resolved dataclass."""
    return to_structured_config(GeneratorExperimentConfig, cfg)


class CachedLatentData(ResumableDataModule):
    """Cached latent shards as a datamodule (the loader is built once the rank and the checkpointed
    data position are known)."""

    def __init__(self, path: str, batch_size: int, seed: int, num_workers: int) -> None:
        super().__init__()
        self.path, self.batch_size, self.seed, self.num_workers = path, batch_size, seed, num_workers

    def train_dataloader(self) -> Any:
        rank, world = self.rank_and_world()
        return make_latent_dataloader(
            self.path, self.batch_size, seed=self.seed, num_workers=self.num_workers, rank=rank, world_size=world,
            start_batch=self.start_batch,
        )


def resolve_generator_config(cfg: GeneratorExperimentConfig, tokenizer: DiffusionAutoencoder) -> GeneratorConfig:
    """The generator config with latent channels/grid/statistics taken from the tokenizer (and cache)."""
    gcfg = cfg.generator
    if cfg.latents:
        index = read_latent_index(cfg.latents)
        channels, *grid = (int(s) for s in index.latent_shape)
        if index.num_classes and index.num_classes > gcfg.num_classes:
            raise ValueError(
                f"the latent cache has {index.num_classes} classes but generator.num_classes={gcfg.num_classes}; "
                f"set generator.num_classes={index.num_classes}"
            )
    else:
        channels = tokenizer.latent_channels
        extent = get_modality(tokenizer.config.modality).data_extent(cfg.data)  # video: (num_frames, size, size)
        grid = list(tokenizer.latent_shape((tokenizer.in_channels, *extent))[1:])
    if channels != tokenizer.latent_channels or len(grid) != tokenizer.spatial_dims:
        raise ValueError(
            f"cached latents have shape {(channels, *grid)} but the tokenizer makes {tokenizer.latent_channels}-channel "
            f"{tokenizer.spatial_dims}-D latents; point latents= and tokenizer= at matching folders"
        )
    stats = tokenizer.latent_stats
    return replace(
        gcfg, spatial_dims=tokenizer.spatial_dims, latent_channels=channels, latent_size=list(grid),
        latent_shift=stats.shift, latent_scale=stats.scale, tokenizer=str(Path(cfg.tokenizer).resolve()),
    )


@torch.no_grad()
def decode_samples(
    generator: LatentGenerator, tokenizer: DiffusionAutoencoder, labels: torch.Tensor, settings: GeneratorSampleConfig,
) -> torch.Tensor:
    """Sample latents for ``labels`` (CFG Euler) and decode them with the tokenizer: data ``(B, C, *S)``
    clamped to difftok's data range [-1, 1]."""
    latent_shape = generator.config.latent_shape()
    latent_noise = torch.randn((labels.shape[0], *latent_shape), generator=torch.Generator().manual_seed(settings.seed))
    data_noise = torch.randn(tokenizer.data_shape((labels.shape[0], *latent_shape)),
                             generator=torch.Generator().manual_seed(settings.seed + 1))
    return sample_and_decode(
        generator, tokenizer, labels, latent_noise=latent_noise.to(labels.device), data_noise=data_noise.to(labels.device),
        num_steps=settings.steps, cfg_scale=settings.cfg_scale, decode_steps=settings.decode_steps,
    )


def train_generator(cfg: GeneratorExperimentConfig | DictConfig | dict, *, callbacks: list[L.Callback] | None = None) -> TrainResult:
    """Train the latent generator described by ``cfg``; returns output locations (``module`` = the GeneratorModule)."""
    cfg = to_generator_config(cfg)
    if not cfg.tokenizer:
        raise ValueError("tokenizer=<save_pretrained folder> is required: the generator models that tokenizer's latents")
    return run_experiment(cfg, _generator_parts, callbacks=callbacks)


def _generator_parts(cfg: GeneratorExperimentConfig, local_batch: int) -> RunParts:
    """Datamodule (cached latents or data), GeneratorModule, and the export with decoded preview samples.

    Fills ``cfg.generator`` with the tokenizer's latent channels, grid and statistics.
    """
    tokenizer = from_pretrained(cfg.tokenizer)
    modality = get_modality(tokenizer.config.modality)
    cfg.generator = resolve_generator_config(cfg, tokenizer)
    if cfg.latents:
        datamodule: Any = CachedLatentData(cfg.latents, local_batch, cfg.seed, cfg.data.num_workers)
        module_tokenizer = None  # cached latents: the tokenizer is only needed for previews
    else:
        datamodule = modality.make_datamodule(cfg.data, cfg.seed, local_batch)
        module_tokenizer = tokenizer
    generator = build_generator(cfg.generator)
    log.info("generator %s: %.2fM parameters", cfg.generator.net.name, sum(p.numel() for p in generator.parameters()) / 1e6)
    module = GeneratorModule(generator, cfg.optim, cfg.ema, tokenizer=module_tokenizer)

    def export(trainer: L.Trainer, trained: GeneratorModule, export_dir: Path) -> list[Path]:
        exported = build_generator(cfg.generator)
        exported.load_state_dict(trained.export_state_dict())
        save_generator(exported.eval(), export_dir, extra={"global_step": trainer.global_step, "experiment": cfg.name})
        if cfg.sample.count <= 0 or modality.write_samples is None:
            return []
        labels = torch.arange(cfg.sample.count) % max(1, cfg.generator.num_classes)
        samples = decode_samples(exported.eval(), tokenizer, labels, cfg.sample)
        samples_dir = Path(cfg.output_dir) / "samples"
        samples_dir.mkdir(parents=True, exist_ok=True)
        write_samples = with_data_options(modality.write_samples, cfg.data.options)
        return [write_samples(samples, samples_dir / f"step_{trainer.global_step:07d}{modality.preview_suffix}")]

    return RunParts(module=module, datamodule=datamodule, export=export)
