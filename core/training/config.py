"""Structured experiment configs (dataclasses; Hydra ConfigStore nodes in recipes).

``ExperimentConfig`` composes the model (:class:`core.builder.AutoencoderConfig`), data, optimiser,
EMA and trainer settings. Recipes build one and change only their deltas (:func:`with_overrides`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

from core.builder import AutoencoderConfig
from core.distill import DistillationConfig

__all__ = [
    "DataConfig", "OptimConfig", "EMAConfig", "InitConfig", "DistillConfig", "TrainerConfig", "ExperimentConfig", "with_overrides",
]

ConfigT = TypeVar("ConfigT")


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
    multi-step samples (``sampling``, the core's :class:`DistillationConfig`) in one step."""

    enabled: bool = False
    teacher: Optional[str] = None  # save_pretrained folder of the multi-step model (its EMA export)
    train_encoder: bool = False
    sampling: DistillationConfig = field(default_factory=DistillationConfig)


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
    checkpoint_every_n_steps: int = 50_000  # 0: no periodic checkpoints (the final step is still checkpointed)
    preview_every_n_steps: int = 50_000
    preview_count: int = 8
    preview_steps: Optional[int] = None  # decode steps for previews (default: model's)
    eval_every_n_steps: int = 0  # held-out metrics from the modality's evaluate hook; 0 disables
    eval_steps: list[int] = field(default_factory=lambda: [1])  # decode step counts to evaluate
    resume: Optional[str] = None  # "auto" (newest checkpoint or fresh), "last" (newest, must exist) or a .ckpt path
    progress_bar: bool = True
    deterministic: bool = False


@dataclass
class ExperimentConfig:
    """A whole training run."""

    name: str = "experiment"
    seed: int = 0
    output_dir: str = "outputs/${name}"
    stage: str = ""  # recipe-defined training stage (e.g. SSDD "pretrain", "finetune"); read by the recipe's checks
    overwrite: bool = False  # a fresh run may replace an earlier run's outputs in output_dir
    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    init: InitConfig = field(default_factory=InitConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def with_overrides(config: ConfigT, overrides: Mapping[str, Any]) -> ConfigT:
    """A copy of the dataclass ``config`` with each dotted key set to its value, in order.

    ``{"optim.lr": 1e-3, "data.options": {...}}`` replaces those fields (a value replaces the whole
    field, dicts included); later keys may refine earlier ones. ``config`` itself is not changed.

    Raises:
        KeyError: a key names no field; the message lists the fields at that level.
    """
    for key, value in overrides.items():
        config = _replaced(config, key.split("."), value, key)
    return config


def _replaced(node: Any, path: list[str], value: Any, key: str) -> Any:
    head, rest = path[0], path[1:]
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        names = [f.name for f in dataclasses.fields(node)]
        if head not in names:
            raise KeyError(f"override '{key}': {type(node).__name__} has no field '{head}'; fields: {', '.join(names)}")
        return dataclasses.replace(node, **{head: _replaced(getattr(node, head), rest, value, key) if rest else value})
    if isinstance(node, Mapping):
        if rest and head not in node:
            raise KeyError(f"override '{key}': no key '{head}' to descend into; keys: {', '.join(map(str, node))}")
        return {**node, head: _replaced(node[head], rest, value, key) if rest else value}
    raise KeyError(f"override '{key}': '{head}' is inside a {type(node).__name__}, which has no fields to set")
