"""Structured config of a latent-generator run (``train_generator``).

The generator trains either from cached latent shards (``latents=``, see ``core.latent.cache``) or
on the fly from a frozen tokenizer over the modality's data (``data.*``, DiTo's way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from core.generation.config import GeneratorConfig
from core.training.config import DataConfig, EMAConfig, OptimConfig, TrainerConfig

__all__ = ["GeneratorSampleConfig", "GeneratorExperimentConfig"]


@dataclass
class GeneratorSampleConfig:
    """How the end-of-run preview samples are drawn and decoded (the offline gFID command has its own)."""

    count: int = 8  # preview samples (classes 0, 1, ... cycling)
    steps: Optional[int] = None  # Euler steps (default: generator.sample_steps, DiTo 200)
    cfg_scale: Optional[float] = None  # default: generator.cfg_scale (DiTo 2.0)
    decode_steps: Optional[int] = None  # tokenizer decode steps (default: the tokenizer's, DiTo 50)
    seed: int = 0


@dataclass
class GeneratorExperimentConfig:
    """A whole latent-generator training run (DiTo §6 defaults)."""

    name: str = "latent_dit"
    seed: int = 0
    output_dir: str = "outputs/${name}"
    overwrite: bool = False  # a fresh run may replace an earlier run's outputs in output_dir
    tokenizer: Optional[str] = None  # save_pretrained folder of the frozen tokenizer (required)
    latents: Optional[str] = None  # cached latent shards folder; None: encode data.* on the fly
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=256, options={"labels": "folder"}))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adamw", lr=1e-4, weight_decay=0.0))
    ema: EMAConfig = field(default_factory=lambda: EMAConfig(enabled=True, decay=0.9999, warmup=False))
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_steps=400_000, preview_every_n_steps=0))
    sample: GeneratorSampleConfig = field(default_factory=GeneratorSampleConfig)
