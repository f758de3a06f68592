"""The DiTo tokenizer training recipe (paper §4.1, App. A.2; official configs/trainers/dito.yaml).

Every DiTo recipe (``dito_b``, ``dito_l``, ``dito_xl``, ``dito_xl_noise_sync``, ``dito_b_lpips``,
``dito_xl_lpips``) is :func:`dito_recipe` with a size and a variant:

- data: ImageNet at 256²; train: shorter side 256 (Lanczos), random 256 crop, horizontal flip;
  eval/previews: shorter side 256, center crop. ``data.root`` (``train/`` + a small ``val/``) or
  ``data.shards`` is required (``data.demo=true`` runs on the bundled photographs).
- global batch 64 over ``trainer.devices × trainer.num_nodes``; AdamW lr 1e-4, betas
  (0.9, 0.999), weight decay 0.01 on every parameter, constant LR, no gradient clipping, no EMA;
  300K steps; bf16 autocast on GPU (``precision=auto``), fp32 losses.
- checkpoints, previews and held-out PSNR/SSIM (50 Euler steps) every 50K steps.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from core.training.cli import Recipe
from core.training.config import DataConfig, EMAConfig, ExperimentConfig, OptimConfig, TrainerConfig
from modalities.image.data import list_images
from modalities.image.dito import DITO_LPIPS_WEIGHT, dito_config

__all__ = ["DiToDataMissingError", "dito_experiment", "check_dito_data", "dito_recipe"]

RESOLUTION = 256
GLOBAL_BATCH = 64
TRAIN_STEPS = 300_000
CADENCE = 50_000  # checkpoint / preview / evaluation every 50K steps (official eval_iter/save_iter/vis_iter)
MAX_EVAL_IMAGES = 128  # held-out images decoded in training (see check_dito_data)


class DiToDataMissingError(ValueError):
    """A DiTo recipe was started without training data."""


def dito_experiment(size: str, *, name: str, noise_sync: bool = False, lpips: bool = False) -> ExperimentConfig:
    """The paper's training run for DiTo-``size`` (optionally with noise sync or LPIPS)."""
    return ExperimentConfig(
        name=name,
        seed=0,
        output_dir=f"outputs/{name}",
        model=dito_config(size, noise_sync=noise_sync, lpips_weight=DITO_LPIPS_WEIGHT if lpips else 0.0),
        data=DataConfig(
            root=None, shards=None, demo=False, size=RESOLUTION, batch_size=GLOBAL_BATCH, num_workers=8, holdout=0,
            options={"resize": RESOLUTION, "eval_size": RESOLUTION, "eval_resize": RESOLUTION},
        ),
        optim=OptimConfig(name="adamw", lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, grad_clip=0.0),
        ema=EMAConfig(enabled=False),
        trainer=TrainerConfig(
            max_steps=TRAIN_STEPS, precision="auto", log_every_n_steps=100,
            checkpoint_every_n_steps=CADENCE, preview_every_n_steps=CADENCE, preview_count=8, preview_steps=None,
            eval_every_n_steps=CADENCE, eval_steps=[50],
        ),
    )


def check_dito_data(cfg: Any) -> None:
    """Refuse to start without data, or with an in-training evaluation set too large to decode.

    In-training evaluation decodes every held-out image with 50 Euler steps on one process while
    the other ranks wait (DiTo-XL: about 420 TFLOP per image), so it must stay small: a DDP
    collective times out after 30 minutes. rFID/PSNR on the 5K subset are computed offline.

    Raises:
        DiToDataMissingError: none of ``data.root``, ``data.shards``, ``data.demo`` is set, or the
            held-out set under ``data.root`` exceeds :data:`MAX_EVAL_IMAGES`.
    """
    data = cfg.data
    if not (data.root or data.shards or data.demo):
        raise DiToDataMissingError(
            f"{cfg.name}: no training data. DiTo trains on ImageNet-1k: set data.root=/path/to/imagenet "
            f"(a folder with train/ and a small val/ folder, at most {MAX_EVAL_IMAGES} images, for the periodic "
            f"evaluation) or data.shards="'/path/train-{{000000..001281}}.tar'" (webdataset; quoted for the shell); data.demo=true runs "
            f"on the bundled photographs for a smoke test."
        )
    if data.demo or not data.root or cfg.trainer.eval_every_n_steps <= 0:
        return
    root = Path(data.root)
    if not root.is_dir():
        return  # the datamodule reports a missing folder
    if (root / "train").is_dir() and (root / "val").is_dir():
        count, what = len(list_images(root / "val")), f"{root / 'val'} holds"
    else:
        count = int(data.holdout) if data.holdout else len(list_images(root))
        what = f"data.holdout={data.holdout} keeps" if data.holdout else f"without val/ and data.holdout, all of {root} is"
    if count > MAX_EVAL_IMAGES:
        raise DiToDataMissingError(
            f"{cfg.name}: {what} {count} images for the evaluation every {cfg.trainer.eval_every_n_steps} steps, which "
            f"decodes each with 50 steps on one process; use a val/ folder (or data.holdout) of at most "
            f"{MAX_EVAL_IMAGES} images, or trainer.eval_every_n_steps=0 and evaluate the exported checkpoints offline."
        )


def dito_recipe(size: str, name: str, *, noise_sync: bool = False, lpips: bool = False) -> Recipe:
    """A registered-by-name recipe for DiTo-``size``."""
    build = partial(dito_experiment, size, name=name, noise_sync=noise_sync, lpips=lpips)
    return Recipe(name=name, build_config=build, check=check_dito_data)
