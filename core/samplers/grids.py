"""Time grids for sampling, running from t = 1 (noise) to t = 0 (data).

- ``uniform``: ``t_i = 1 - i/N`` (DiTo, 50 steps).
- ``power``: ``t_i = (1 - i/N)^p`` (SSDD, p = 2: steps concentrate near t = 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["time_grid", "GRIDS"]

GRIDS = ("uniform", "power")


def time_grid(num_steps: int, kind: str = "uniform", *, power: float = 2.0, device: torch.device | str = "cpu") -> Tensor:
    """A decreasing grid of ``num_steps + 1`` times from 1 to 0 (float64 for exactness).

    Args:
        num_steps: number of solver steps N (>= 1).
        kind: ``"uniform"`` or ``"power"``.
        power: exponent p of the power grid.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    s = 1.0 - torch.arange(num_steps + 1, dtype=torch.float64, device=device) / num_steps  # 1 -> 0
    if kind == "uniform":
        return s
    if kind == "power":
        if power <= 0:
            raise ValueError(f"power-grid exponent must be > 0, got {power}")
        return s.pow(power)
    raise ValueError(f"unknown time grid '{kind}'; choose one of {GRIDS}")
