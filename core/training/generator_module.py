"""Thin LightningModule for latent generators: latents in, flow-matching loss out. No math here.

Batches are either cached latents ``{"z", "label"}`` (tokenizer space) or data ``{"x", "cls"}``
encoded on the fly by the frozen tokenizer (DiTo: no_grad, latent mode, no caching). Either way the
latents are mapped to generator space with the tokenizer's statistics before the objective.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from core.autoencoder import DiffusionAutoencoder
from core.generation.objective import UNLABELLED, LatentGenerator
from core.nets.frozen import freeze_as_buffers
from core.training.base_module import EMATrainingModule
from core.training.config import EMAConfig, OptimConfig

__all__ = ["GeneratorModule", "batch_latents"]


@torch.no_grad()
def batch_latents(batch: dict[str, Any], tokenizer: DiffusionAutoencoder | None, sample_posterior: bool = True) -> tuple[Tensor, Tensor]:
    """Tokenizer-space latents ``(B, C_z, *S)`` and labels ``(B,)`` of a cached or raw batch.

    Raw data is encoded by the frozen ``tokenizer``: KL latents are sampled (as LDM/SSDD train their
    DiTs), deterministic latents (DiTo LayerNorm) are their mode.
    """
    if "z" in batch:
        z = batch["z"]
        labels = batch.get("label", batch.get("cls"))
    elif "x" in batch:
        if tokenizer is None:
            raise ValueError("raw data batches need a tokenizer to encode them (set tokenizer=<export dir>)")
        dist = tokenizer.encode(batch["x"]).latent_dist
        z = dist.sample() if sample_posterior else dist.mode()
        labels = batch.get("cls", batch.get("label"))
    else:
        raise KeyError(f"a generator batch needs 'z' (cached latents) or 'x' (data); got keys {sorted(batch)}")
    if labels is None:
        labels = torch.full((z.shape[0],), UNLABELLED, dtype=torch.long)
    labels = torch.as_tensor(labels, device=z.device).long().reshape(-1)
    return z.float(), labels


class GeneratorModule(EMATrainingModule):
    """Trains ``generator.training_losses`` on tokenizer latents with an EMA (DiTo: 0.9999).

    Args:
        generator: the latent generator (:func:`core.generation.build_generator`).
        optim: optimiser settings (DiTo: AdamW 1e-4, no weight decay).
        ema: EMA settings.
        tokenizer: tokenizer for on-the-fly encoding, frozen here (eval mode, not in checkpoints); None with
            cached latents.
        loss_buckets: number of time buckets for the ``loss_t*`` monitor.
    """

    model_attribute = "generator"

    def __init__(
        self,
        generator: LatentGenerator,
        optim: OptimConfig,
        ema: EMAConfig | None = None,
        *,
        tokenizer: DiffusionAutoencoder | None = None,
        loss_buckets: int = 10,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.tokenizer = freeze_as_buffers(tokenizer) if tokenizer is not None else None  # reloaded from its folder
        self.setup_training(generator, optim, ema, loss_buckets)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        z, labels = batch_latents(batch, self.tokenizer)
        return self.log_training_losses(self.generator.training_losses(self.generator.config.latent_stats.normalize(z), labels))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["difftok_generator"] = {"net": self.generator.config.net.name}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.reconcile_ema(checkpoint.setdefault("state_dict", {}))
