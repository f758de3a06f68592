"""The run skeleton every difftok training stack shares (tokenizers, latent generators).

:func:`run_experiment` owns the order of a run: seed, build the stack's parts, save the resolved
config, train with the standard callbacks and trainer, export on rank 0, write the summary. A
stack (``core.training.run.train``, ``core.training.generator_run.train_generator``) supplies only
what differs: how its module, datamodule, extra callbacks and export are built.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from core.training.checkpoint_io import AtomicCheckpointIO
from core.training.callbacks import ScheduleFreeModeCallback
from core.training.config import TrainerConfig

__all__ = [
    "TrainResult", "RunParts", "run_experiment", "to_structured_config", "resolve_precision", "per_device_batch_size",
    "build_trainer", "standard_callbacks", "resolve_resume",
]

log = logging.getLogger("difftok")
ConfigT = TypeVar("ConfigT")


@dataclass
class TrainResult:
    """Where a run left its outputs."""

    output_dir: Path
    export_dir: Path
    checkpoint_dir: Path
    metrics_csv: Path | None
    global_step: int
    wall_time_s: float
    previews: list[Path] = field(default_factory=list)
    module: Any = None  # the trained LightningModule (for in-process callers)
    datamodule: Any = None


@dataclass
class RunParts:
    """What one stack contributes to :func:`run_experiment`.

    ``export(trainer, module, export_dir)`` runs on rank 0 after training, writes the exported
    model and returns the preview files it wrote.
    """

    module: L.LightningModule
    datamodule: Any
    export: Callable[[L.Trainer, L.LightningModule, Path], list[Path]]
    callbacks: list[L.Callback] = field(default_factory=list)


def to_structured_config(schema: type[ConfigT], cfg: ConfigT | DictConfig | dict) -> ConfigT:
    """Accept a ``schema`` dataclass, an OmegaConf node or a dict; return a validated, resolved ``schema``.

    Interpolations such as the default ``output_dir="outputs/${name}"`` are resolved here.
    """
    if isinstance(cfg, schema):
        cfg = OmegaConf.structured(cfg)
    node = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    return OmegaConf.to_object(node)  # type: ignore[return-value]


def run_experiment(
    cfg: Any, build: Callable[[Any, int], RunParts], *, callbacks: list[L.Callback] | None = None
) -> TrainResult:
    """Run the experiment ``cfg`` (a resolved structured config with ``name``, ``seed``, ``output_dir``,
    ``data.batch_size``, ``optim.grad_clip`` and ``trainer``).

    ``build(cfg, per_device_batch)`` makes the stack's parts after seeding; it may fill in fields of
    ``cfg`` (e.g. the generator's latent grid), which is why ``config.yaml`` is written after it.
    Extra Lightning ``callbacks`` come last.
    """
    start = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tcfg: TrainerConfig = cfg.trainer
    parts = build(cfg, per_device_batch_size(cfg.data.batch_size, tcfg.devices, tcfg.num_nodes, tcfg.accelerator))
    (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))

    ckpt_dir = out / "checkpoints"
    all_callbacks = standard_callbacks(tcfg, ckpt_dir) + parts.callbacks + list(callbacks or [])
    trainer, csv_logger = build_trainer(tcfg, all_callbacks, out, grad_clip=cfg.optim.grad_clip)
    trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=resolve_resume(tcfg.resume, ckpt_dir))

    previews: list[Path] = []
    if trainer.is_global_zero:
        previews = parts.export(trainer, parts.module, out / "export")
        (out / "train_summary.json").write_text(json.dumps(
            {"global_step": trainer.global_step, "wall_time_s": round(time.perf_counter() - start, 2), "name": cfg.name}, indent=2
        ))
    metrics_csv = Path(csv_logger.log_dir) / "metrics.csv"
    return TrainResult(
        output_dir=out, export_dir=out / "export", checkpoint_dir=ckpt_dir,
        metrics_csv=metrics_csv if metrics_csv.exists() else None, global_step=trainer.global_step,
        wall_time_s=time.perf_counter() - start, previews=previews, module=parts.module, datamodule=parts.datamodule,
    )


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``bf16-mixed`` on CUDA, ``32-true`` elsewhere."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def _device_count(devices: Any, accelerator: str) -> int:
    if isinstance(devices, int):
        return devices if devices > 0 else max(1, torch.cuda.device_count())
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return max(1, torch.cuda.device_count())
    return 1


def per_device_batch_size(global_batch: int, devices: Any, num_nodes: int, accelerator: str = "auto") -> int:
    """Split the global batch over devices x nodes; raise if it does not divide evenly."""
    world = _device_count(devices, accelerator) * num_nodes
    if global_batch % world:
        raise ValueError(
            f"data.batch_size={global_batch} (global) is not divisible by {world} processes "
            f"(trainer.devices x trainer.num_nodes); choose a multiple of {world}"
        )
    return global_batch // world


def standard_callbacks(tcfg: TrainerConfig, ckpt_dir: Path) -> list[L.Callback]:
    """Checkpointing every ``checkpoint_every_n_steps`` (+ ``last.ckpt``), schedule-free mode, LR logging."""
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir, filename="step_{step:07d}", auto_insert_metric_name=False,
        every_n_train_steps=max(1, tcfg.checkpoint_every_n_steps), save_top_k=-1, save_last=True,
    )
    return [checkpoint, ScheduleFreeModeCallback(), LearningRateMonitor("step")]


def build_trainer(tcfg: TrainerConfig, callbacks: list[L.Callback], out: Path, *, grad_clip: float = 0.0) -> tuple[L.Trainer, CSVLogger]:
    """The Lightning trainer every difftok run uses, and its CSV logger."""
    # a new version folder per (re)start: resuming never overwrites the earlier loss history
    csv_logger = CSVLogger(out / "logs", name="csv", flush_logs_every_n_steps=max(1, tcfg.log_every_n_steps))
    loggers = [csv_logger, TensorBoardLogger(out / "logs", name="tensorboard", version="")]
    trainer = L.Trainer(
        max_steps=tcfg.max_steps, accelerator=tcfg.accelerator, devices=tcfg.devices, num_nodes=tcfg.num_nodes,
        strategy=tcfg.strategy, precision=resolve_precision(tcfg.precision), callbacks=callbacks, logger=loggers,
        log_every_n_steps=tcfg.log_every_n_steps, gradient_clip_val=grad_clip or None,
        gradient_clip_algorithm="norm", enable_progress_bar=tcfg.progress_bar, plugins=[AtomicCheckpointIO()],
        deterministic=tcfg.deterministic, default_root_dir=out, limit_val_batches=0, num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    return trainer, csv_logger


def resolve_resume(resume: str | None, ckpt_dir: Path) -> str | None:
    """The checkpoint ``trainer.resume`` names (``last``: ``ckpt_dir/last.ckpt`` if it exists), or None."""
    if not resume:
        return None
    if resume == "last":
        last = ckpt_dir / "last.ckpt"
        if not last.exists():
            log.warning("trainer.resume=last but %s does not exist; starting from scratch", last)
            return None
        return str(last)
    if not Path(resume).exists():
        raise FileNotFoundError(f"trainer.resume={resume} does not exist; pass 'last' or a checkpoint path")
    return resume
