"""Lightning callbacks: periodic reconstruction previews and schedule-free mode switching."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from core.training.optim import is_schedule_free

__all__ = ["PreviewCallback", "ScheduleFreeModeCallback"]


class PreviewCallback(L.Callback):
    """Every ``every_n_steps`` optimiser steps, reconstruct a fixed batch and write a preview.

    Args:
        batch: fixed data ``(N, C, *spatial)``.
        write_preview: ``(originals, reconstructions, path) -> path`` from the modality.
        directory: where previews go (``step_0001000<suffix>``).
        every_n_steps: cadence (0 disables).
        num_steps: decode steps (None: the model's default).
        suffix: file extension.
    """

    def __init__(
        self,
        batch: Tensor,
        write_preview: Callable[[Tensor, Tensor, Path], Path],
        directory: str | Path,
        every_n_steps: int,
        num_steps: int | None = None,
        suffix: str = ".png",
    ) -> None:
        self.batch, self.write_preview = batch, write_preview
        self.directory, self.every_n_steps = Path(directory), every_n_steps
        self.num_steps, self.suffix = num_steps, suffix
        self.written: list[Path] = []

    @rank_zero_only
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps <= 0 or step % self.every_n_steps:
            return
        self.write(pl_module, step)

    def write(self, pl_module: L.LightningModule, step: int) -> Path:
        """Reconstruct the preview batch with the (EMA) weights and write it."""
        ae = pl_module.autoencoder
        ema = getattr(pl_module, "ema", None)
        was_training = ae.training
        ae.eval()
        swap = ema.swapped_into(ae) if ema is not None else contextlib.nullcontext()
        generator = torch.Generator(device=pl_module.device).manual_seed(0)
        with swap, torch.no_grad():
            x = self.batch.to(pl_module.device)
            rec = ae.reconstruct(x, self.num_steps, generator=generator).sample
        ae.train(was_training)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.write_preview(x.cpu().float(), rec.cpu().float(), self.directory / f"step_{step:07d}{self.suffix}")
        self.written.append(Path(path))
        return Path(path)


class ScheduleFreeModeCallback(L.Callback):
    """Put schedule-free optimisers in train mode for steps and in eval mode once training ends.

    Checkpoints are written in train mode, so parameters and optimiser state stay consistent for
    an exact resume; the export after training uses the eval-mode (averaged) weights.
    """

    def _set(self, trainer: L.Trainer, mode: str) -> None:
        for opt in trainer.optimizers:
            if is_schedule_free(opt):
                getattr(opt, mode)()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._set(trainer, "train")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._set(trainer, "train")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._set(trainer, "eval")
