"""The SSDD training recipes (ssdd.md §6): one function per stage, every size.

Stages (ImageNet-1k; epochs of 1,281,167 images at batch 256 ≈ 5,005 steps):

0. ``ssdd_encoder_f8c4`` / ``ssdd_encoder_f16c4``: KL encoder trained jointly with an M decoder
   at 128² (lr 1e-4, 300 epochs ≈ 1.5M steps, KL weight 1e-6).
1. ``ssdd_<size>`` (s, b, m, l, xl, h): decoder pre-training at 128² on the shared frozen encoder
   (``init.encoder_weights=<stage-0 run>/export``), lr 8e-4 (3e-4 for H), 300 epochs.
2. ``ssdd_m_finetune_256``: fine-tune at 256² from a stage-1 export (``init.weights=``), lr 1e-4,
   100 epochs ≈ 0.5M steps.
3. ``ssdd_m_distill``: single-step distillation from a stage-1/2 export (``distill.teacher=``),
   lr 1e-4, 10 epochs ≈ 50K steps, 12 teacher steps; the export decodes in 1 step.

Shared settings: schedule-free RAdam, betas (0.9, 0.999), weight decay 1e-2 on weights (norm
weights included) and 0 on parameters whose name contains "bias" (biases and the relative-bias
tables), global-norm clip 0.1, global batch 256, bf16 on GPU, EMA 0.999 from step 50K with the
(1+n)/(10+n) warm-up (exports hold the EMA weights), train crops from a shorter side drawn in
[s, 2s] (Lanczos) + random crop + flip, loss = FM (σmin 0, logit-normal t) + 0.5·LPIPS + 0.25·REPA
(+1e-6·KL while the encoder trains). LPIPS/REPA need VGG16 / DINOv2-base weights by path
(``model.loss_terms.lpips.kwargs.vgg_weights=...``, ``model.loss_terms.repa.kwargs.dino_weights=...``
or the ``DIFFTOK_VGG16_WEIGHTS`` / ``DIFFTOK_DINOV2_WEIGHTS`` environment variables).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from core.distill import DistillationConfig
from core.training.cli import Recipe
from core.training.config import (
    DataConfig,
    DistillConfig,
    EMAConfig,
    ExperimentConfig,
    InitConfig,
    OptimConfig,
    TrainerConfig,
)
from modalities.image.ssdd.config import ssdd_config

__all__ = ["SSDD_STAGES", "SSDDStageError", "ssdd_experiment", "check_ssdd_stage", "ssdd_recipe", "STEPS_PER_EPOCH"]

GLOBAL_BATCH = 256
STEPS_PER_EPOCH = 5_005  # ceil(1,281,167 / 256)
EMA_START = 50_000
NO_DECAY = ["*bias*"]  # biases and relative-bias tables (official: names containing "bias")


SSDD_STAGES = ("encoder", "pretrain", "finetune", "distill")


class SSDDStageError(ValueError):
    """A stage was started without the data or the earlier stage's weights it needs."""


def ssdd_experiment(stage: str, size: str = "m", *, encoder: str = "f8c4", name: str) -> ExperimentConfig:
    """The paper's run for ``stage`` in ``encoder``/``pretrain``/``finetune``/``distill``.

    The stage is recorded in ``ExperimentConfig.stage``; :func:`check_ssdd_stage` reads it (not the
    recipe name), so a renamed run keeps its stage's checks.
    """
    if stage not in SSDD_STAGES:
        raise ValueError(f"unknown SSDD stage '{stage}'; choose one of {', '.join(SSDD_STAGES)}")
    resolution = 256 if stage == "finetune" else 128
    lr = {"encoder": 1e-4, "pretrain": 3e-4 if size == "h" else 8e-4, "finetune": 1e-4, "distill": 1e-4}[stage]
    epochs = {"encoder": 300, "pretrain": 300, "finetune": 100, "distill": 10}[stage]
    distilled = stage == "distill"
    eval_steps = [1] if distilled else [8]
    return ExperimentConfig(
        name=name,
        seed=0,
        output_dir=f"outputs/{name}",
        stage=stage,
        model=ssdd_config(size, encoder=encoder, sample_steps=1 if distilled else 8),
        data=DataConfig(
            size=resolution, batch_size=GLOBAL_BATCH, num_workers=8,
            options={"resize": resolution, "resize_max": 2 * resolution, "eval_size": resolution, "eval_resize": resolution},
        ),
        optim=OptimConfig(
            name="radam_schedulefree", lr=lr, betas=(0.9, 0.999), weight_decay=1e-2, no_decay_patterns=list(NO_DECAY), grad_clip=0.1
        ),
        ema=EMAConfig(enabled=True, decay=0.999, start_step=0 if distilled else EMA_START, warmup=True),
        init=InitConfig(freeze_encoder=stage == "pretrain"),
        distill=DistillConfig(enabled=distilled, sampling=DistillationConfig(teacher_steps=12, grid="power", power=2.0)),
        trainer=TrainerConfig(
            max_steps=epochs * STEPS_PER_EPOCH, precision="auto", log_every_n_steps=100,
            checkpoint_every_n_steps=STEPS_PER_EPOCH, preview_every_n_steps=4 * STEPS_PER_EPOCH, preview_count=8,
            eval_every_n_steps=4 * STEPS_PER_EPOCH, eval_steps=eval_steps,
        ),
    )


def check_ssdd_stage(cfg: Any) -> None:
    """Refuse a stage whose inputs are missing, naming the override that provides them."""
    data = cfg.data
    if not (data.root or data.shards or data.demo):
        raise SSDDStageError(
            f"{cfg.name}: no training data; set data.root=/path/to/imagenet (train/ + a small val/) or "
            f"data.shards='/path/train-{{000000..001281}}.tar' (data.demo=true: bundled photographs, smoke test)"
        )
    if cfg.init.freeze_encoder and not (cfg.init.encoder_weights or cfg.init.weights):
        raise SSDDStageError(
            f"{cfg.name}: decoder pre-training uses the shared frozen encoder; set init.encoder_weights=<ssdd_encoder run>/export "
            f"(or init.freeze_encoder=false to train the encoder jointly)"
        )
    if cfg.distill.enabled and not cfg.distill.teacher:
        raise SSDDStageError(f"{cfg.name}: set distill.teacher=<ssdd_m run>/export (the EMA export of the multi-step model)")
    if cfg.stage not in SSDD_STAGES:
        raise SSDDStageError(f"{cfg.name}: stage={cfg.stage!r} is not an SSDD stage; set stage= one of {', '.join(SSDD_STAGES)}")
    if cfg.stage == "finetune" and not cfg.init.weights:
        raise SSDDStageError(f"{cfg.name}: set init.weights=<ssdd_m run>/export (fine-tuning starts from the 128² model)")


def ssdd_recipe(stage: str, size: str, name: str, *, encoder: str = "f8c4") -> Recipe:
    """A registered-by-name SSDD recipe."""
    build = partial(ssdd_experiment, stage, size, encoder=encoder, name=name)
    return Recipe(name=name, build_config=build, check=check_ssdd_stage)
