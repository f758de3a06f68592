"""Flow-matching objective of a class-conditional latent generator (DiTo §6).

The generator is trained exactly like the tokenizer's decoder, on latents instead of pixels:
``z_t = (1 - t) z + (sigma_min + (1 - sigma_min) t) eps`` with ``t ~ U[0, 1]``, the network sees
``1000 t`` and regresses ``u = z - (1 - sigma_min) eps``. Labels are replaced by the null class with
probability ``label_drop_prob`` (0.1) so the same network also learns the unconditional velocity
that classifier-free guidance needs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from core.flow.loss import per_sample_mse
from core.flow.path import FlowPath
from core.flow.time_samplers import TimeSampler, UniformTimeSampler

__all__ = ["LatentGenerator", "UNLABELLED"]

UNLABELLED = -1  # label of samples without a class: always trained as the null class


class LatentGenerator(nn.Module):
    """A velocity network over latents plus its flow-matching objective.

    Args:
        net: ``net(z_t, network_time, labels) -> u`` with attributes ``in_channels``,
            ``spatial_dims``, ``num_classes`` and ``null_class`` (e.g. :class:`core.nets.dit.DiT`).
        path: flow path (DiTo: ``sigma_min = 1e-5``, time scale 1000).
        time_sampler: training time distribution (DiTo: uniform).
        label_drop_prob: probability of training a sample as unconditional (DiTo: 0.1).
        config: the :class:`core.generation.config.GeneratorConfig` it was built from.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        path: FlowPath | None = None,
        time_sampler: TimeSampler | None = None,
        label_drop_prob: float = 0.1,
        config: Any = None,
    ) -> None:
        super().__init__()
        for attr in ("in_channels", "spatial_dims", "num_classes", "null_class"):
            if not hasattr(net, attr):
                raise TypeError(f"generator network {type(net).__name__} must define '{attr}'")
        if not 0.0 <= label_drop_prob < 1.0:
            raise ValueError(f"label_drop_prob must be in [0, 1), got {label_drop_prob}")
        self.net = net
        self.path = path or FlowPath()
        self.time_sampler = time_sampler or UniformTimeSampler()
        self.label_drop_prob = float(label_drop_prob)
        self.config = config

    @property
    def null_class(self) -> int:
        return int(self.net.null_class)

    @property
    def num_classes(self) -> int:
        return int(self.net.num_classes)

    def velocity(self, z_t: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        """Network output ``u`` at data-space time ``t`` in [0, 1], ``(B, C_z, *S)``."""
        return self.net(z_t, self.path.network_time(t), labels)

    def conditioning_labels(
        self, labels: Tensor, *, drop: bool, generator: torch.Generator | None = None, allow_null: bool = False
    ) -> Tensor:
        """Labels the network sees: unlabelled (-1) -> null class; with ``drop``, each label -> null
        with probability ``label_drop_prob``. ``allow_null`` accepts the null index itself (sampling
        unconditionally); data labels must be real classes."""
        labels = labels.long()
        bad = (labels < UNLABELLED) | (labels >= self.num_classes + int(allow_null))
        if bad.any():
            raise ValueError(
                f"labels must be in [0, {self.num_classes}) or {UNLABELLED} (unlabelled); got {labels[bad][:5].tolist()}. "
                f"Set num_classes to the dataset's class count."
            )
        null = torch.full_like(labels, self.null_class)
        labels = torch.where(labels == UNLABELLED, null, labels)
        if drop and self.label_drop_prob > 0:
            keep = torch.rand(labels.shape, generator=generator, device=labels.device) >= self.label_drop_prob
            labels = torch.where(keep, labels, null)
        return labels

    def training_losses(self, z: Tensor, labels: Tensor, *, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One training forward on generator-space latents ``z`` ``(B, C_z, *S)`` and labels ``(B,)``.

        Returns:
            ``loss`` (= ``fm``, scalars), plus ``t`` and ``fm_per_sample`` ``(B,)`` for per-time monitoring.
        """
        if z.ndim != 2 + int(self.net.spatial_dims) or z.shape[1] != int(self.net.in_channels):
            raise ValueError(
                f"expected latents (B, {self.net.in_channels}, {self.net.spatial_dims} spatial dims), got {tuple(z.shape)}; "
                f"check that the generator was configured for this tokenizer's latents"
            )
        cond = self.conditioning_labels(labels.to(z.device), drop=self.training, generator=generator)
        t = self.time_sampler(z.shape[0], device=z.device, generator=generator)  # (B,)
        noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        sample = self.path.sample(x=z, noise=noise, t=t)
        u = self.velocity(sample.x_t, t, cond)  # (B, C_z, *S)
        fm_per_sample = per_sample_mse(u, sample.target)
        fm = fm_per_sample.mean()
        return {"loss": fm, "fm": fm, "t": t.detach(), "fm_per_sample": fm_per_sample.detach()}
