"""A learning-rate decay for short demo runs: constant, then linear to zero over the last part of training.

The paper recipes train at a constant rate (DiTo) or schedule-free (SSDD) for hundreds of thousands
of steps; a few-minute CPU run ends while the weights still move by a large step each update. The
decoder then carries that optimiser noise into its small-t denoising, which multi-step decodes
expose as speckle. Annealing the rate to zero at the end (a warmup-stable-decay schedule without the
warm-up) removes that noise at no extra cost.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from core.training.run import train
from core.training.skeleton import TrainResult

__all__ = ["LinearDecayToZero", "decay_factor", "train_with_decay"]


def decay_factor(step: int, max_steps: int, decay_fraction: float) -> float:
    """LR multiplier at ``step``: 1 until ``(1 - decay_fraction)·max_steps``, then linear to 0 at ``max_steps``."""
    decay_steps = decay_fraction * max_steps
    if decay_steps <= 0:
        return 1.0
    return min(1.0, max(0.0, (max_steps - step) / decay_steps))


class LinearDecayToZero(L.Callback):
    """Scales every parameter group's rate by :func:`decay_factor` before each optimiser step.

    The undecayed rate is kept in the group as ``initial_lr`` (saved with the optimiser state), so a
    resumed run continues the same schedule.

    Args:
        decay_fraction: share of ``trainer.max_steps`` over which the rate falls to zero, in (0, 1].
    """

    def __init__(self, decay_fraction: float = 0.5) -> None:
        if not 0.0 < decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in (0, 1], got {decay_fraction}")
        self.decay_fraction = decay_fraction

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        factor = decay_factor(trainer.global_step, trainer.max_steps, self.decay_fraction)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def train_with_decay(cfg: Any, decay_fraction: float) -> TrainResult:
    """:func:`core.training.run.train` with the rate annealed to zero over the last ``decay_fraction`` of
    ``trainer.max_steps``; a recipe's ``train_fn`` as ``functools.partial(train_with_decay, decay_fraction=f)``."""
    return train(cfg, callbacks=[LinearDecayToZero(decay_fraction)])
