"""Flow-matching regression loss and a per-time-bucket loss monitor."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["per_sample_mse", "flow_matching_loss", "TimeBucketLoss"]


def per_sample_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per sample, computed in fp32: ``(B, C, *spatial) -> (B,)``."""
    diff = prediction.float() - target.float()
    return diff.square().flatten(1).mean(dim=1)


def flow_matching_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Plain fp32 MSE: mean over non-batch dims, then over the batch (no time weighting)."""
    return per_sample_mse(prediction, target).mean()


class TimeBucketLoss(Metric):
    """Mean loss per bucket of ``t`` (DiTo logs 10 buckets as ``loss_t*``).

    Updates are pure tensor ops (``index_add_``), so there is no host-device sync per sample;
    the only sync happens in :meth:`compute` when the values are logged. Reduces across DDP ranks
    by summing.

    Args:
        num_buckets: equal-width buckets over [0, 1].
    """

    full_state_update = False

    def __init__(self, num_buckets: int = 10) -> None:
        super().__init__()
        if num_buckets < 1:
            raise ValueError("num_buckets must be >= 1")
        self.num_buckets = num_buckets
        self.add_state("loss_sum", default=torch.zeros(num_buckets, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(num_buckets, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, t: Tensor, per_sample_loss: Tensor) -> None:  # type: ignore[override]
        """Accumulate ``(B,)`` losses at ``(B,)`` times."""
        bucket = (t.detach().float() * self.num_buckets).long().clamp_(0, self.num_buckets - 1)
        self.loss_sum.index_add_(0, bucket, per_sample_loss.detach().to(self.loss_sum.dtype))
        self.count.index_add_(0, bucket, torch.ones_like(bucket, dtype=self.count.dtype))

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        """``{"loss_t0": mean, ...}`` for buckets that received samples (NaN otherwise)."""
        mean = self.loss_sum / self.count.clamp(min=1)
        mean = torch.where(self.count > 0, mean, torch.full_like(mean, float("nan")))
        return {f"loss_t{i}": mean[i].float() for i in range(self.num_buckets)}
