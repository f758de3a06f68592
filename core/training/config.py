"""Structured experiment configs (dataclasses; Hydra ConfigStore nodes in recipes).

``ExperimentConfig`` composes the model (:class:`core.builder.AutoencoderConfig`), data, optimiser,
EMA and trainer settings. Recipes build one and change only their deltas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from core.builder import AutoencoderConfig

__all__ = ["DataConfig", "OptimConfig", "EMAConfig", "InitConfig", "DistillConfig", "TrainerConfig", "ExperimentConfig"]


@dataclass
class DataConfig:
    """Data source and loader settings (modality plugins read ``options`` for their own keys)."""

    root: Optional[str] = None  # folder of files (ImageNet-style class folders allowed)
    shards: Optional[str] = None  # webdataset shards: brace pattern, directory or '::'-joined list (image: streamed)
    demo: bool = False  # use the real sample data bundled with the installed packages
    size: int = 256  # training crop size along every spatial dim
    batch_size: int = 64  # GLOBAL batch, split over devices x nodes (must divide evenly)
    num_workers: int = 4
    holdout: int = 0  # items kept out of training for evaluation/previews
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Optimiser (``adamw`` or ``radam_schedulefree``) and gradient clipping."""

    name: str = "adamw"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    no_decay_patterns: list[str] = field(default_factory=list)  # fnmatch on parameter names
    grad_clip: float = 0.0  # global-norm clip; 0 disables


@dataclass
class EMAConfig:
    """Weight EMA (exports and previews use it when enabled)."""

    enabled: bool = False
    decay: float = 0.999
    start_step: int = 0
    warmup: bool = True


@dataclass
class InitConfig:
    """Where a run's weights start (fine-tune stages, SSDD's shared frozen encoder)."""

    weights: Optional[str] = None  # save_pretrained folder: initialise the whole tokenizer from it
    encoder_weights: Optional[str] = None  # save_pretrained folder: take only the encoder from it
    freeze_encoder: bool = False  # encoder gets no gradients and no optimiser updates


@dataclass
class DistillConfig:
    """Single-step distillation (SSDD §4): the student starts from ``teacher`` and learns its
    ``teacher_steps``-step Euler samples in one step."""

    enabled: bool = False
    teacher: Optional[str] = None  # save_pretrained folder of the multi-step model (its EMA export)
    teacher_steps: int = 12
    grid: str = "power"
    power: float = 2.0
    train_encoder: bool = False


@dataclass
class TrainerConfig:
    """Lightning trainer settings."""

    max_steps: int = 300_000
    accelerator: str = "auto"
    devices: Any = 1  # int, list of ids or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp", "fsdp", ...
    precision: str = "auto"  # auto: bf16-mixed on CUDA, 32-true on CPU
    log_every_n_steps: int = 50
    checkpoint_every_n_steps: int = 50_000
    preview_every_n_steps: int = 50_000
    preview_count: int = 8
    preview_steps: Optional[int] = None  # decode steps for previews (default: model's)
    eval_every_n_steps: int = 0  # held-out metrics from the modality's evaluate hook; 0 disables
    eval_steps: list[int] = field(default_factory=lambda: [1])  # decode step counts to evaluate
    resume: Optional[str] = None  # "last" or a checkpoint path
    progress_bar: bool = True
    deterministic: bool = False


@dataclass
class ExperimentConfig:
    """A whole training run."""

    name: str = "experiment"
    seed: int = 0
    output_dir: str = "outputs/${name}"
    stage: str = ""  # recipe-defined training stage (e.g. SSDD "pretrain", "finetune"); read by the recipe's checks
    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    init: InitConfig = field(default_factory=InitConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
