"""The latent-DiT recipe (DiTo §6 / App. A.3; official configs/trainers/zdm.yaml).

Every ``latent_dit_<size>`` recipe is :func:`latent_dit_recipe`:

- model: DiT-<size>/2 with adaLN-Zero (XL: depth 28, width 1152, 16 heads, ≈675.1M parameters),
  4 output channels, 1000 classes + the null class; flow matching with t ~ U[0, 1], sigma_min 1e-5,
  the network sees 1000·t; labels dropped to the null class with p = 0.1.
- latents: the frozen tokenizer's (``tokenizer=<export dir>``, required), normalised with its stored
  statistics (DiTo LayerNorm latents: none). Either encoded on the fly from ImageNet (``data.root``
  or ``data.shards``; shorter side 256, center crop, random flip; no caching, as in DiTo) or read
  from a latent cache (``latents=<dir>`` from ``python -m recipes.image.cache_latents``).
- batch 256 (global), AdamW lr 1e-4, betas (0.9, 0.999), no weight decay, EMA 0.9999, 400K steps,
  bf16 autocast on GPU; sampling 200 Euler steps with CFG 2.0, decoded with 50 tokenizer steps.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from core.builder import ComponentConfig
from core.generation.config import GeneratorConfig
from core.training.cli import Recipe
from core.training.config import DataConfig, EMAConfig, OptimConfig, TrainerConfig
from core.training.generator_config import GeneratorExperimentConfig, GeneratorSampleConfig
from core.training.generator_run import train_generator

__all__ = ["LatentDiTSetupError", "latent_dit_experiment", "check_latent_dit_inputs", "latent_dit_recipe", "DIT_RECIPE_SIZES"]

RESOLUTION = 256
GLOBAL_BATCH = 256
TRAIN_STEPS = 400_000
CADENCE = 50_000
DIT_RECIPE_SIZES = ("s", "b", "l", "xl")


class LatentDiTSetupError(ValueError):
    """A latent-DiT recipe was started without a tokenizer or without data."""


def latent_dit_experiment(size: str, *, name: str) -> GeneratorExperimentConfig:
    """DiTo's latent-DiT run with DiT-``size``/2."""
    return GeneratorExperimentConfig(
        name=name,
        seed=0,
        output_dir=f"outputs/{name}",
        tokenizer=None,
        latents=None,
        generator=GeneratorConfig(
            net=ComponentConfig(f"dit_{size}_2"), spatial_dims=2, latent_channels=4, latent_size=[32, 32],
            num_classes=1000, sigma_min=1e-5, time_sampler=ComponentConfig("uniform"), label_drop_prob=0.1,
            sample_steps=200, cfg_scale=2.0,
        ),
        data=DataConfig(
            root=None, shards=None, demo=False, size=RESOLUTION, batch_size=GLOBAL_BATCH, num_workers=8,
            options={"resize": RESOLUTION, "train_crop": "center", "labels": "folder"},
        ),
        optim=OptimConfig(name="adamw", lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, grad_clip=0.0),
        ema=EMAConfig(enabled=True, decay=0.9999, start_step=0, warmup=False),
        trainer=TrainerConfig(max_steps=TRAIN_STEPS, precision="auto", log_every_n_steps=100,
                              checkpoint_every_n_steps=CADENCE, preview_every_n_steps=0),
        sample=GeneratorSampleConfig(count=16, steps=None, cfg_scale=None, decode_steps=None, seed=0),
    )


def check_latent_dit_inputs(cfg: Any) -> None:
    """Refuse to start without a tokenizer folder or without latents/data, naming the override."""
    if not cfg.tokenizer:
        raise LatentDiTSetupError(
            f"{cfg.name}: tokenizer=<save_pretrained folder> is required (e.g. tokenizer=outputs/dito_xl/export): "
            f"the DiT is trained on that tokenizer's latents"
        )
    if not (Path(cfg.tokenizer) / "config.json").is_file():
        raise LatentDiTSetupError(f"{cfg.name}: tokenizer={cfg.tokenizer} has no config.json; pass a tokenizer run's export/ folder")
    data = cfg.data
    if not (cfg.latents or data.root or data.shards or data.demo):
        raise LatentDiTSetupError(
            f"{cfg.name}: no training data. Set latents=<dir> (cached with python -m recipes.image.cache_latents), or "
            f"data.root=/path/to/imagenet/train (class folders give the labels) or data.shards=... to encode on the fly."
        )


def latent_dit_recipe(size: str, name: str) -> Recipe:
    """A registered-by-name recipe for DiT-``size``/2 on tokenizer latents."""
    return Recipe(name=name, build_config=partial(latent_dit_experiment, size, name=name), check=check_latent_dit_inputs,
                  train_fn=train_generator)
