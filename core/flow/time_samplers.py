"""Training-time samplers for the flow time ``t`` in [0, 1] (t = 1 is noise).

- ``uniform``: t ~ U[0, 1] (DiTo).
- ``logit_normal``: t = sigmoid(N(m, s)) (SSDD uses m = 0, s = 1).
- :func:`truncated_uniform`: t ~ U[low, 1] with a per-sample lower bound (noise synchronization).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.registry import TIME_SAMPLERS

__all__ = ["TimeSampler", "UniformTimeSampler", "LogitNormalTimeSampler", "truncated_uniform"]


class TimeSampler:
    """Draws ``(B,)`` times in [0, 1]."""

    def __call__(self, batch_size: int, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class UniformTimeSampler(TimeSampler):
    """t ~ U[0, 1]."""

    def __call__(self, batch_size: int, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
        return torch.rand(batch_size, device=device, generator=generator)


@dataclass(frozen=True)
class LogitNormalTimeSampler(TimeSampler):
    """t = sigmoid(m + s·n), n ~ N(0, 1)."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if self.std <= 0:
            raise ValueError(f"logit-normal std must be > 0, got {self.std}")

    def __call__(self, batch_size: int, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
        n = torch.randn(batch_size, device=device, generator=generator)
        return torch.sigmoid(self.mean + self.std * n)


def truncated_uniform(low: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample t ~ U[low_i, 1] for a ``(B,)`` tensor of lower bounds in [0, 1]."""
    if torch.any((low < 0) | (low > 1)):
        raise ValueError("truncated_uniform lower bounds must lie in [0, 1]")
    r = torch.rand(low.shape, device=low.device, generator=generator, dtype=low.dtype)
    return low + (1.0 - low) * r


@TIME_SAMPLERS.register("uniform")
def uniform() -> UniformTimeSampler:
    """t ~ U[0, 1] (DiTo)."""
    return UniformTimeSampler()


@TIME_SAMPLERS.register("logit_normal")
def logit_normal(mean: float = 0.0, std: float = 1.0) -> LogitNormalTimeSampler:
    """t = sigmoid(N(mean, std)) (SSDD: mean 0, std 1)."""
    return LogitNormalTimeSampler(mean=mean, std=std)
