"""Shared LightningModule plumbing: one trained model, frozen helper networks, an optional weight
EMA, the per-time loss monitor, finite-loss checks and the training-loss logging.

Subclasses (tokenizer, latent generator) name their trained submodule with ``model_attribute``,
assign their frozen networks with :func:`core.nets.frozen.freeze_as_buffers` and only add their own
``training_step``. No math here.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from core.ema import EMA
from core.pretrained import CheckpointMismatchError
from core.flow.loss import TimeBucketLoss
from core.nets.frozen import frozen_buffer_names, keep_frozen_in_eval
from core.training.config import EMAConfig, OptimConfig
from core.training.optim import build_optimizer

__all__ = ["EMATrainingModule", "NonFiniteLossError"]

log = logging.getLogger("difftok")


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss term becomes NaN/Inf; stops the run with the step number."""


class EMATrainingModule(L.LightningModule):
    """Optimiser + EMA wiring around the submodule named ``model_attribute``.

    Frozen networks (marked by :func:`core.nets.frozen.freeze_as_buffers` or wrapped in
    ``FrozenModule``) hold only non-persistent buffers, so they never reach checkpoints or the
    optimiser; this module keeps them in eval mode whenever it is switched to ``train()``.
    """

    model_attribute = "model"

    def setup_training(self, model: nn.Module, optim: OptimConfig, ema: EMAConfig | None, loss_buckets: int = 10) -> None:
        """Call at the end of ``__init__``, after assigning ``model`` to ``self.<model_attribute>`` and
        every frozen network (they are told apart from trained weights here)."""
        self.optim_config = optim
        self.ema = EMA(model, ema.decay, ema.start_step, ema.warmup) if ema is not None and ema.enabled else None
        self.loss_by_time = TimeBucketLoss(loss_buckets)
        frozen = frozen_buffer_names(self)
        if frozen:  # frozen networks are the same constants on every rank: DDP must not broadcast them each step
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, frozen)

    @property
    def trained_model(self) -> nn.Module:
        return getattr(self, self.model_attribute)

    def train(self, mode: bool = True) -> "EMATrainingModule":
        super().train(mode)
        keep_frozen_in_eval(self)  # a teacher or tokenizer samples/encodes deterministically, always
        return self

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.trained_model, self.optim_config)

    def check_finite(self, scalars: dict[str, Tensor]) -> None:
        """Stop the run, naming the term and step, when a logged scalar is NaN/Inf."""
        if not torch.isfinite(torch.stack([v.detach().float() for v in scalars.values()])).all():
            bad = {k: float(v.detach()) for k, v in scalars.items() if not torch.isfinite(v)}
            raise NonFiniteLossError(
                f"non-finite loss at step {self.global_step}: {bad}. Lower the learning rate, enable gradient "
                f"clipping (optim.grad_clip) or check the data for corrupt samples; resume from the last checkpoint."
            )

    def log_training_losses(self, losses: dict[str, Tensor]) -> Tensor:
        """Check and log one step's losses; return ``losses["loss"]`` to optimise.

        Scalars are logged as ``train/<name>`` (and ``loss`` on the progress bar); under DDP the logged
        value is the mean over all ranks (each rank's loss is its local batch mean, and local batches
        are equal, so this is the global batch mean). Objectives that return ``t`` and ``fm_per_sample``
        also feed the per-time monitor, logged (rank 0's batches) as ``train_t/*`` every
        ``trainer.log_every_n_steps`` steps.
        """
        scalars = {k: v for k, v in losses.items() if v.ndim == 0}
        self.check_finite(scalars)
        self.log_dict({f"train/{k}": v.detach() for k, v in scalars.items()}, on_step=True, on_epoch=False, sync_dist=True)
        self.log("loss", scalars["loss"].detach(), prog_bar=True, on_step=True, on_epoch=False, logger=False)
        if "fm_per_sample" in losses:
            self.loss_by_time.update(losses["t"], losses["fm_per_sample"])
            if (self.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0:
                by_t = self.loss_by_time.compute()
                self.log_dict({f"train_t/{k}": v for k, v in by_t.items() if torch.isfinite(v)}, on_step=True, on_epoch=False)
                self.loss_by_time.reset()
        return losses["loss"]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        steps_done = self.global_step + 1  # counting this one (read before Lightning increments it)
        super().optimizer_step(*args, **kwargs)
        # here rather than in on_train_batch_end: checkpoint callbacks run before the module's
        # batch-end hook, so a checkpoint would otherwise hold an EMA one update behind its weights
        if self.ema is not None:
            self.ema.update(self.trained_model, steps_done)

    def export_state_dict(self) -> dict[str, Tensor]:
        """Weights to export: the EMA average when enabled, else the live weights."""
        if self.ema is not None:
            return self.ema.averaged_state_dict(self.trained_model)
        return {k: v.detach().clone() for k, v in self.trained_model.state_dict().items()}

    def check_resume(self, checkpoint: dict[str, Any], source: str = "the checkpoint") -> None:
        """Refuse, before the run writes anything, a checkpoint whose trained weights do not fit this
        module (missing, extra or reshaped tensors; EMA entries may differ, see :meth:`reconcile_ema`)."""
        saved = {k: v for k, v in checkpoint.get("state_dict", {}).items() if not k.startswith("ema.")}
        own = {k: v for k, v in self.state_dict().items() if not k.startswith("ema.")}
        missing = sorted(set(own) - set(saved))
        extra = sorted(set(saved) - set(own))
        reshaped = sorted(k for k in set(own) & set(saved) if tuple(own[k].shape) != tuple(saved[k].shape))
        if missing or extra or reshaped:
            details = "; ".join(f"{what}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                                for what, keys in (("missing", missing), ("unexpected", extra), ("other shape", reshaped)) if keys)
            raise CheckpointMismatchError(
                f"cannot resume from {source}: its weights do not fit this model ({details}). Resume with the "
                f"settings it was trained with, or start a fresh run (trainer.resume=null, new output_dir)"
            )

    def reconcile_ema(self, state: dict[str, Tensor]) -> None:
        """Allow switching EMA on or off at resume (Lightning loads ``state`` strictly afterwards)."""
        has_ema = any(k.startswith("ema.") for k in state)
        if self.ema is not None and not has_ema:
            log.warning("resuming with EMA enabled from a checkpoint without EMA: the average starts from its weights")
            for key, value in self.ema.initial_state(state, prefix=f"{self.model_attribute}.").items():
                state[f"ema.{key}"] = value
        elif self.ema is None and has_ema:
            log.warning("resuming with EMA disabled: the checkpoint's EMA weights are dropped")
            for key in [k for k in state if k.startswith("ema.")]:
                del state[key]
