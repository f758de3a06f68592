"""``train(cfg)``: build everything from an :class:`ExperimentConfig` and run Lightning.

Kept separate from the CLI (lightning-hydra-template style) so tests and notebooks call it directly.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from core.builder import build_autoencoder
from core.modality import get_modality
from core.pretrained import from_pretrained, save_pretrained
from core.training.callbacks import PeriodicEvalCallback, PreviewCallback, ScheduleFreeModeCallback
from core.training.checkpoint_io import AtomicCheckpointIO
from core.training.config import ExperimentConfig, TrainerConfig
from core.training.init_weights import apply_init, freeze_encoder, load_weights_into
from core.training.module import TokenizerModule

__all__ = [
    "TrainResult", "train", "to_experiment_config", "resolve_precision", "per_device_batch_size", "build_trainer",
    "standard_callbacks", "resolve_resume", "finish_run",
]

log = logging.getLogger("difftok")


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
    module: Any = None  # the trained TokenizerModule (for in-process callers)
    datamodule: Any = None


def to_experiment_config(cfg: ExperimentConfig | DictConfig | dict) -> ExperimentConfig:
    """Accept a dataclass, an OmegaConf node or a dict; return a validated, resolved dataclass.

    Interpolations such as the default ``output_dir="outputs/${name}"`` are resolved here.
    """
    if isinstance(cfg, ExperimentConfig):
        cfg = OmegaConf.structured(cfg)
    node = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), cfg)
    return OmegaConf.to_object(node)  # type: ignore[return-value]


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


def train(cfg: ExperimentConfig | DictConfig | dict, *, callbacks: list[L.Callback] | None = None) -> TrainResult:
    """Train a tokenizer as described by ``cfg``; returns output locations.

    Writes ``checkpoints/`` (Lightning, exact resume), ``export/`` (safetensors ``from_pretrained``
    folder with EMA weights when enabled), ``logs/`` (CSV + TensorBoard), ``previews/`` and
    ``config.yaml`` under ``cfg.output_dir``. Extra Lightning ``callbacks`` are appended.
    """
    cfg = to_experiment_config(cfg)
    start = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    modality = get_modality(cfg.model.modality)
    if cfg.model.spatial_dims != modality.spatial_dims:
        raise ValueError(
            f"model.spatial_dims={cfg.model.spatial_dims} but modality '{modality.name}' has {modality.spatial_dims} spatial dims"
        )
    tcfg = cfg.trainer
    local_batch = per_device_batch_size(cfg.data.batch_size, tcfg.devices, tcfg.num_nodes, tcfg.accelerator)
    datamodule = modality.make_datamodule(cfg.data, cfg.seed, local_batch)
    autoencoder = build_autoencoder(cfg.model)
    apply_init(autoencoder, cfg.init)
    module = TokenizerModule(autoencoder, cfg.optim, cfg.ema, **_distillation(cfg, autoencoder))

    ckpt_dir = out / "checkpoints"
    all_callbacks = standard_callbacks(tcfg, ckpt_dir)
    preview: PreviewCallback | None = None
    if modality.write_preview is not None and tcfg.preview_every_n_steps > 0 and hasattr(datamodule, "preview_batch"):
        preview = PreviewCallback(
            datamodule.preview_batch(tcfg.preview_count), modality.write_preview, out / "previews",
            tcfg.preview_every_n_steps, tcfg.preview_steps, modality.preview_suffix,
        )
        all_callbacks.append(preview)
    if modality.evaluate is not None and tcfg.eval_every_n_steps > 0:
        all_callbacks.append(PeriodicEvalCallback(modality.evaluate, datamodule, tcfg.eval_every_n_steps, tcfg.eval_steps))
    all_callbacks.extend(callbacks or [])
    trainer, csv_logger = build_trainer(tcfg, all_callbacks, out, grad_clip=cfg.optim.grad_clip)
    ckpt_path = resolve_resume(tcfg.resume, ckpt_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    export_dir = out / "export"
    if trainer.is_global_zero:
        exported = build_autoencoder(cfg.model)
        exported.load_state_dict(module.export_state_dict())
        save_pretrained(exported, export_dir, extra={"global_step": trainer.global_step, "experiment": cfg.name})
        if preview is not None and not preview.written:
            preview.write(module, trainer.global_step)
    return finish_run(trainer, csv_logger, out, start, cfg.name, previews=list(preview.written) if preview else [],
                      module=module, datamodule=datamodule)


def finish_run(trainer: L.Trainer, csv_logger: CSVLogger, out: Path, start: float, name: str, **result: Any) -> TrainResult:
    """Write ``train_summary.json`` (rank 0) and describe the run's outputs."""
    if trainer.is_global_zero:
        (out / "train_summary.json").write_text(json.dumps(
            {"global_step": trainer.global_step, "wall_time_s": round(time.perf_counter() - start, 2), "name": name}, indent=2
        ))
    metrics_csv = Path(csv_logger.log_dir) / "metrics.csv"
    return TrainResult(
        output_dir=out, export_dir=out / "export", checkpoint_dir=out / "checkpoints",
        metrics_csv=metrics_csv if metrics_csv.exists() else None, global_step=trainer.global_step,
        wall_time_s=time.perf_counter() - start, **result,
    )


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


def _distillation(cfg: ExperimentConfig, student: Any) -> dict[str, Any]:
    """Teacher and settings for ``TokenizerModule`` when ``cfg.distill.enabled``; the student starts
    from the teacher's weights unless ``init.weights`` says otherwise."""
    dcfg = cfg.distill
    if not dcfg.enabled:
        return {}
    if not dcfg.teacher:
        raise ValueError("distill.enabled=true needs distill.teacher=<save_pretrained folder of the multi-step model>")
    teacher = from_pretrained(dcfg.teacher, modality=cfg.model.modality)
    if not cfg.init.weights:
        load_weights_into(student, dcfg.teacher)
    if not dcfg.train_encoder:
        freeze_encoder(student)
    return {"teacher": teacher, "distill": dcfg.sampling, "distill_train_encoder": dcfg.train_encoder}


def resolve_resume(resume: str | None, ckpt_dir: Path) -> str | None:
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

