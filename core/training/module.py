"""Thin LightningModule: wires a :class:`DiffusionAutoencoder` to Lightning. No math here."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from torch import Tensor

from core.autoencoder import DiffusionAutoencoder
from core.distill import DistillationConfig, distillation_losses
from core.nets.frozen import freeze_as_buffers
from core.pretrained import CheckpointMismatchError
from core.training.base_module import EMATrainingModule, NonFiniteLossError
from core.training.config import EMAConfig, OptimConfig

__all__ = ["TokenizerModule", "NonFiniteLossError"]


def batch_data(batch: Any) -> Tensor:
    """The data tensor of a batch (a tensor, or a dict with key ``"x"``)."""
    if isinstance(batch, dict):
        return batch["x"]
    if isinstance(batch, (list, tuple)):
        return batch[0]
    return batch


class TokenizerModule(EMATrainingModule):
    """Trains ``autoencoder.training_losses`` (or, with a ``teacher``, single-step distillation)
    with an optional EMA and a per-t loss monitor.

    Args:
        autoencoder: the model (built by :func:`core.builder.build_autoencoder`); the student when distilling.
        optim: optimiser settings.
        ema: EMA settings.
        loss_buckets: number of time buckets for the ``loss_t*`` monitor.
        teacher: multi-step model to distill; frozen here (eval mode, no parameters, not in checkpoints).
        distill: teacher sampling settings.
        distill_train_encoder: let distillation update the student's encoder.
    """

    model_attribute = "autoencoder"

    def __init__(
        self,
        autoencoder: DiffusionAutoencoder,
        optim: OptimConfig,
        ema: EMAConfig | None = None,
        loss_buckets: int = 10,
        *,
        teacher: DiffusionAutoencoder | None = None,
        distill: DistillationConfig | None = None,
        distill_train_encoder: bool = False,
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.teacher = freeze_as_buffers(teacher) if teacher is not None else None  # reloaded from distill.teacher
        self.distill_config = distill or DistillationConfig()
        self.distill_train_encoder = distill_train_encoder
        self.setup_training(autoencoder, optim, ema, loss_buckets)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch_data(batch)
        if self.teacher is not None:
            losses = distillation_losses(
                self.autoencoder, self.teacher, x, config=self.distill_config, train_encoder=self.distill_train_encoder
            )
        else:
            losses = self.autoencoder.training_losses(x)
        return self.log_training_losses(losses)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        config = self.autoencoder.config
        checkpoint["difftok"] = {"autoencoder": asdict(config) if config is not None else None}

    def check_resume(self, checkpoint: dict[str, Any], source: str = "the checkpoint") -> None:
        """Refuse a checkpoint of another architecture (naming the fields), then of other weight shapes."""
        self._check_same_model(checkpoint)
        super().check_resume(checkpoint, source)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_same_model(checkpoint)
        self.reconcile_ema(checkpoint.get("state_dict", {}))

    def _check_same_model(self, checkpoint: dict[str, Any]) -> None:
        saved = (checkpoint.get("difftok") or {}).get("autoencoder")
        config = self.autoencoder.config
        if saved is None or config is None:
            return
        current = asdict(config)
        arch_keys = ("modality", "spatial_dims", "in_channels", "latent_channels", "encoder", "decoder", "regularizer")
        diff = [k for k in arch_keys if _normalise(saved.get(k)) != _normalise(current.get(k))]
        if diff:
            details = "; ".join(f"{k}: checkpoint={saved.get(k)!r} vs config={current.get(k)!r}" for k in diff)
            raise CheckpointMismatchError(
                f"cannot resume: the checkpoint was trained with a different model ({details}). Resume with the "
                f"recipe/overrides it was trained with, or start a fresh run (trainer.resume=null, new output_dir)."
            )


def _normalise(value: Any) -> Any:
    """Tuples and lists compare equal (JSON/OmegaConf round trips turn tuples into lists)."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value
