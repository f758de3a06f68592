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
from torch.utils.data import DataLoader

from core.eval.reconstruction import evaluate_reconstructions, step_key
from core.modality import Modality
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
    """Every ``every_n_steps`` steps, score held-out reconstructions with the modality's metrics and log them.

    Runs :func:`core.eval.reconstruction.evaluate_reconstructions`, the loop of the offline command: per-sample
    seeded noise (numbers do not depend on ``batch_size``), all step counts from the same noise, the
    modality's quantisation. Metrics are logged as ``eval/<metric>_steps<n>`` through every logger (CSV,
    TensorBoard) and kept in ``history``.

    Args:
        modality: supplies ``held_out_dataset`` (from ``datamodule``), ``reconstruction_metrics`` and ``quantization``.
        datamodule: the training datamodule.
        every_n_steps: cadence (0 disables).
        steps: decode step counts to evaluate.
        batch_size: evaluation batch size.
        seed: decode-noise seed.
    """

    def __init__(self, modality: Modality, datamodule: Any, every_n_steps: int, steps: list[int], batch_size: int = 4, seed: int = 0) -> None:
        modality.require_hooks("in-training evaluation", "held_out_dataset", "reconstruction_metrics")
        self.modality, self.datamodule = modality, datamodule
        self.every_n_steps, self.steps = every_n_steps, list(steps)
        self.batch_size, self.seed = batch_size, seed
        self.history: list[dict[str, float]] = []

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_steps > 0 and (not self.history or self.history[-1]["step"] != trainer.global_step):
            self.fire(trainer, pl_module)  # always end with the final weights' numbers

    def evaluate(self, autoencoder: Any, device: torch.device) -> dict[str, float]:
        """``{"<metric>_steps<n>": value}`` of ``autoencoder`` on the held-out samples."""
        dataset = self.modality.held_out_dataset(self.datamodule)  # type: ignore[misc]
        suite = self.modality.reconstruction_metrics(None, device)  # type: ignore[misc]
        result = evaluate_reconstructions(
            autoencoder, DataLoader(dataset, batch_size=self.batch_size, shuffle=False), steps=self.steps, metrics=suite.make,
            seed=self.seed, quantization=self.modality.quantization, device=device,
        )
        return {f"{name}_steps{n}": float(value) for n in self.steps for name, value in result.metrics[step_key(n)].items()}

    def fire(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Evaluate now and log under the current global step."""
        with inference_weights(pl_module) as ae:
            metrics = {f"eval/{name}": value for name, value in self.evaluate(ae, pl_module.device).items()}
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
