"""Per-sample seeded noise, device choice and phase timers shared by the offline tools."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["per_sample_noise", "resolve_device", "PhaseTimer"]


def per_sample_noise(shape: Sequence[int], seed: int, indices: Tensor) -> Tensor:
    """N(0, I) noise ``(B, *shape)`` on CPU where sample ``i`` always gets the draw seeded by (seed, i).

    Seeding per sample (not per batch) makes every result independent of the batch size and of the
    order batches run in.
    """
    generator = torch.Generator()
    noise = []
    for index in indices.tolist():
        generator.manual_seed(int(seed) * 1_000_003 + int(index))
        noise.append(torch.randn(tuple(shape), generator=generator))
    return torch.stack(noise) if noise else torch.empty(0, *shape)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; any other name as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class PhaseTimer:
    """Accumulated wall time per named phase; synchronises CUDA so queued GPU work is counted."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, float] = {}

    def add(self, name: str, start: float) -> float:
        """Add the time since ``start`` (a ``time.perf_counter()`` value) to ``name``; returns now."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.totals[name] = self.totals.get(name, 0.0) + now - start
        return now

    def rounded(self) -> dict[str, float]:
        """Totals in seconds, rounded to milliseconds."""
        return {name: round(value, 3) for name, value in self.totals.items()}
