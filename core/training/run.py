"""``train(cfg)``: build a tokenizer run from an :class:`ExperimentConfig` and hand it to the shared
run skeleton (:func:`core.training.skeleton.run_experiment`).

Kept separate from the CLI (lightning-hydra-template style) so tests and notebooks call it directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from core.builder import build_autoencoder
from core.modality import get_modality, with_data_options
from core.pretrained import from_pretrained, save_pretrained
from core.training.callbacks import PeriodicEvalCallback, PreviewCallback
from core.training.config import ExperimentConfig
from core.training.init_weights import apply_init, freeze_encoder, load_weights_into
from core.training.module import TokenizerModule
from core.training.skeleton import RunParts, TrainResult, run_experiment, to_structured_config

__all__ = ["train", "to_experiment_config"]


def to_experiment_config(cfg: ExperimentConfig | DictConfig | dict) -> ExperimentConfig:
    """Accept a dataclass, an OmegaConf node or a dict; return a validated, resolved dataclass."""
    return to_structured_config(ExperimentConfig, cfg)


def train(cfg: ExperimentConfig | DictConfig | dict, *, callbacks: list[L.Callback] | None = None) -> TrainResult:
    """Train a tokenizer as described by ``cfg``; returns output locations.

    Writes ``checkpoints/`` (Lightning, exact resume), ``export/`` (safetensors ``from_pretrained``
    folder with EMA weights when enabled), ``logs/`` (CSV + TensorBoard), ``previews/`` and
    ``config.yaml`` under ``cfg.output_dir``. Extra Lightning ``callbacks`` are appended.
    """
    return run_experiment(to_experiment_config(cfg), _tokenizer_parts, callbacks=callbacks)


def _tokenizer_parts(cfg: ExperimentConfig, local_batch: int) -> RunParts:
    """Datamodule, TokenizerModule (student + teacher when distilling), preview/eval callbacks and export."""
    modality = get_modality(cfg.model.modality)
    if cfg.model.spatial_dims != modality.spatial_dims:
        raise ValueError(
            f"model.spatial_dims={cfg.model.spatial_dims} but modality '{modality.name}' has {modality.spatial_dims} spatial dims"
        )
    tcfg = cfg.trainer
    datamodule = modality.make_datamodule(cfg.data, cfg.seed, local_batch)
    autoencoder = build_autoencoder(cfg.model)
    apply_init(autoencoder, cfg.init)
    module = TokenizerModule(autoencoder, cfg.optim, cfg.ema, **_distillation(cfg, autoencoder))

    callbacks: list[L.Callback] = []
    preview: PreviewCallback | None = None
    if modality.write_preview is not None and tcfg.preview_every_n_steps > 0 and hasattr(datamodule, "preview_batch"):
        preview = PreviewCallback(
            datamodule.preview_batch(tcfg.preview_count), with_data_options(modality.write_preview, cfg.data.options),
            Path(cfg.output_dir) / "previews",
            tcfg.preview_every_n_steps, tcfg.preview_steps, modality.preview_suffix,
        )
        callbacks.append(preview)
    if modality.held_out_dataset is not None and modality.reconstruction_metrics is not None and tcfg.eval_every_n_steps > 0:
        callbacks.append(PeriodicEvalCallback(modality, datamodule, tcfg.eval_every_n_steps, tcfg.eval_steps))

    def export(trainer: L.Trainer, trained: TokenizerModule, export_dir: Path) -> list[Path]:
        exported = build_autoencoder(cfg.model)
        exported.load_state_dict(trained.export_state_dict())
        save_pretrained(exported, export_dir, extra={"global_step": trainer.global_step, "experiment": cfg.name})
        if preview is None:
            return []
        if not preview.written:
            preview.write(trained, trainer.global_step)
        return list(preview.written)

    return RunParts(module=module, datamodule=datamodule, export=export, callbacks=callbacks)


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
