"""The run skeleton every difftok training stack shares (tokenizers, latent generators).

:func:`run_experiment` owns the order of a run: take the output folder's lock, pick and validate
the resume checkpoint, seed, build the stack's parts, check the checkpoint fits them, and only then
write into the folder (config, training, export on rank 0, summary). A stack
(``core.training.run.train``, ``core.training.generator_run.train_generator``) supplies only what
differs: how its module, datamodule, extra callbacks and export are built.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from core.data.resumable import ResumableDataModule
from core.training.checkpoint_io import AtomicCheckpointIO
from core.training.callbacks import ScheduleFreeModeCallback
from core.training.config import TrainerConfig
from core.training.output_folder import check_fresh_start, clear_previous_outputs, launch_rank_is_zero, own_output_folder
from core.training.resume import ResumeChoice, remove_stale_temp_files, resolve_resume
from core.training.run_state import RunStateCallback

__all__ = [
    "TrainResult", "RunParts", "run_experiment", "to_structured_config", "resolve_precision", "per_device_batch_size",
    "build_trainer", "standard_callbacks", "resolve_resume", "RunCheckpoint",
]

ConfigT = TypeVar("ConfigT")


@dataclass
class TrainResult:
    """Where a run left its outputs."""

    output_dir: Path
    export_dir: Path
    checkpoint_dir: Path
    metrics_csv: Path | None
    global_step: int
    wall_time_s: float  # training wall time of every segment of a resumed run together
    previews: list[Path] = field(default_factory=list)
    module: Any = None  # the trained LightningModule (for in-process callers)
    datamodule: Any = None
    is_global_zero: bool = True  # False in the other DDP processes: they wrote nothing, report nothing


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
    ``overwrite``, ``data.batch_size``, ``optim.grad_clip`` and ``trainer``).

    ``build(cfg, per_device_batch)`` makes the stack's parts after seeding; it may fill in fields of
    ``cfg`` (e.g. the generator's latent grid), which is why ``config.yaml`` is written after it.
    Extra Lightning ``callbacks`` come last. Nothing is written into ``output_dir`` (but its lock)
    before the folder, the resume checkpoint and the config have been accepted.

    Raises:
        OutputFolderBusyError: another live run owns ``output_dir``.
        OutputFolderUsedError: a fresh run in a used folder without ``overwrite=true``.
        CheckpointMismatchError: the resume checkpoint holds another model.
    """
    start = time.perf_counter()
    out = Path(cfg.output_dir)
    tcfg: TrainerConfig = cfg.trainer
    ckpt_dir = out / "checkpoints"
    with own_output_folder(out):
        owner = launch_rank_is_zero()  # DDP processes started later by the launcher only read
        if owner:
            check_fresh_start(out, tcfg.resume, bool(getattr(cfg, "overwrite", False)))
        resume = resolve_resume(tcfg.resume, ckpt_dir)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        parts = build(cfg, per_device_batch_size(cfg.data.batch_size, tcfg.devices, tcfg.num_nodes, tcfg.accelerator))
        if resume is not None:
            _check_resumable(parts.module, resume)
        if owner:
            if getattr(cfg, "overwrite", False):
                clear_previous_outputs(out)
            remove_stale_temp_files(ckpt_dir)
            (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        return _fit_and_export(cfg, parts, resume.path if resume else None, callbacks or [], start)


def _check_resumable(module: L.LightningModule, resume: ResumeChoice) -> None:
    """The module's own check of the checkpoint (architecture, weight shapes), before any write."""
    check = getattr(module, "check_resume", None)
    if check is not None:
        check(resume.checkpoint, source=str(resume.path))


def _fit_and_export(cfg: Any, parts: RunParts, resume: Path | None, extra: list[L.Callback], start: float) -> TrainResult:
    """Train, then on global rank 0 only export and write the summary; every rank waits for that."""
    out, tcfg = Path(cfg.output_dir), cfg.trainer
    ckpt_dir = out / "checkpoints"
    run_state = RunStateCallback(segment_start=start)
    all_callbacks = standard_callbacks(tcfg, ckpt_dir) + [run_state] + parts.callbacks + extra
    trainer, csv_logger = build_trainer(tcfg, all_callbacks, out, grad_clip=cfg.optim.grad_clip)
    with warnings.catch_warnings():
        if isinstance(parts.datamodule, ResumableDataModule):  # it restores its data position itself
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
        trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=str(resume) if resume else None, weights_only=True)

    previews: list[Path] = []
    wall_time = run_state.total_wall_time_s()
    if trainer.is_global_zero:
        previews = parts.export(trainer, parts.module, out / "export")
        (out / "train_summary.json").write_text(json.dumps({
            "global_step": trainer.global_step, "wall_time_s": round(wall_time, 2), "segments": run_state.segments,
            "segment_wall_time_s": round(time.perf_counter() - start, 2), "name": cfg.name,
        }, indent=2))
    trainer.strategy.barrier("difftok-export")  # no rank returns (and e.g. reads the export) before rank 0 wrote it
    metrics_csv = Path(csv_logger.log_dir) / "metrics.csv"
    return TrainResult(
        output_dir=out, export_dir=out / "export", checkpoint_dir=ckpt_dir,
        metrics_csv=metrics_csv if metrics_csv.exists() else None, global_step=trainer.global_step,
        wall_time_s=wall_time, previews=previews, module=parts.module, datamodule=parts.datamodule,
        is_global_zero=trainer.is_global_zero,
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


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` every ``every_n_train_steps`` (0: never) that also checkpoints the final step,
    so a finished run always ends with a checkpoint of its final state."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = self._every_n_train_steps
        final = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        if final and (every < 1 or trainer.global_step % every):
            self._every_n_train_steps = trainer.global_step  # make this step a save point of Lightning's own logic
            try:
                super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            finally:
                self._every_n_train_steps = every
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def standard_callbacks(tcfg: TrainerConfig, ckpt_dir: Path) -> list[L.Callback]:
    """Checkpointing every ``checkpoint_every_n_steps`` (0: only the final step) + ``last.ckpt``,
    schedule-free mode, LR logging."""
    if tcfg.checkpoint_every_n_steps < 0:
        raise ValueError(f"trainer.checkpoint_every_n_steps={tcfg.checkpoint_every_n_steps}; use a step count, or 0 for none but the final one")
    checkpoint = RunCheckpoint(
        dirpath=ckpt_dir, filename="step_{step:07d}", auto_insert_metric_name=False,
        every_n_train_steps=tcfg.checkpoint_every_n_steps, every_n_epochs=0, save_top_k=-1, save_last=True,
        enable_version_counter=False,  # a resumed run rewrites a step file it reaches again (e.g. after a torn one)
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
        use_distributed_sampler=False,  # datamodules split data over ranks themselves, from the checkpointed position
    )
    return trainer, csv_logger
