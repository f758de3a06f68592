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

__all__ = ["PreviewCallback", "PeriodicEvalCallback", "ScheduleFreeModeCallback"]


@contextlib.contextmanager
def inference_weights(pl_module: L.LightningModule):
    """The autoencoder in eval mode with the EMA weights swapped in when EMA is on.

    The global RNG state is forked, so previews and evaluations (data loaders draw seeds from it)
    never change the training run's random stream.
    """
    ae = pl_module.autoencoder
    ema = getattr(pl_module, "ema", None)
    was_training = ae.training
    ae.eval()
    swap = ema.swapped_into(ae) if ema is not None else contextlib.nullcontext()
    device = pl_module.device
    rng_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices), swap, torch.no_grad():
            yield ae
    finally:
        ae.train(was_training)


class StepCadenceCallback(L.Callback):
    """Calls :meth:`fire` on rank zero every ``every_n_steps`` optimiser steps (0 disables)."""

    every_n_steps: int = 0

    def fire(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    @rank_zero_only
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.fire(trainer, pl_module)


class PreviewCallback(StepCadenceCallback):
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

    def fire(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path:
        return self.write(pl_module, trainer.global_step)

    def write(self, pl_module: L.LightningModule, step: int) -> Path:
        """Reconstruct the preview batch with the (EMA) weights and write it."""
        generator = torch.Generator(device=pl_module.device).manual_seed(0)
        with inference_weights(pl_module) as ae:
            x = self.batch.to(pl_module.device)
            rec = ae.reconstruct(x, self.num_steps, generator=generator).sample
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.write_preview(x.cpu().float(), rec.cpu().float(), self.directory / f"step_{step:07d}{self.suffix}")
        self.written.append(Path(path))
        return Path(path)


class PeriodicEvalCallback(StepCadenceCallback):
    """Every ``every_n_steps`` steps, run the modality's held-out evaluation and log it.

    Metrics are logged as ``eval/<metric>_steps<n>`` for each decode step count, through every
    logger (CSV, TensorBoard), and kept in ``history``.

    Args:
        evaluate: ``(autoencoder, datamodule, num_steps) -> {metric: value}``.
        datamodule: passed to ``evaluate``.
        every_n_steps: cadence (0 disables).
        steps: decode step counts to evaluate.
    """

    def __init__(self, evaluate: Callable[[Any, Any, int], dict[str, float]], datamodule: Any, every_n_steps: int, steps: list[int]) -> None:
        self.evaluate, self.datamodule = evaluate, datamodule
        self.every_n_steps, self.steps = every_n_steps, list(steps)
        self.history: list[dict[str, float]] = []

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_steps > 0 and (not self.history or self.history[-1]["step"] != trainer.global_step):
            self.fire(trainer, pl_module)  # always end with the final weights' numbers

    def fire(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Evaluate now and log under the current global step."""
        metrics: dict[str, float] = {}
        with inference_weights(pl_module) as ae:
            for n in self.steps:
                for name, value in self.evaluate(ae, self.datamodule, n).items():
                    metrics[f"eval/{name}_steps{n}"] = float(value)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        self.history.append({"step": trainer.global_step, **metrics})
        return metrics


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
