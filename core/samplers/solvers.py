"""ODE solvers for the flow decoder (t = 1 -> 0).

Solvers only see a callable ``velocity(x_t, t, cond) -> u`` where ``t`` is a ``(B,)`` tensor in
[0, 1] and ``u = -dx_t/dt`` (difftok's network-output convention), so they work with any model.
One step from ``t_i`` to ``t_{i+1} < t_i`` is ``x <- x + u · (t_i - t_{i+1})``.
Randomness enters only through the initial noise, see :func:`initial_noise`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["VelocityFn", "SolverOutput", "euler_solve", "heun_solve", "SOLVERS", "solve", "initial_noise"]

VelocityFn = Callable[[Tensor, Tensor, Any], Tensor]


@dataclass
class SolverOutput:
    """Final sample and the number of network evaluations spent."""

    sample: Tensor
    num_function_evals: int


def initial_noise(shape: tuple[int, ...], *, generator: torch.Generator | None = None, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """x_1 ~ N(0, I), reproducible given ``generator``."""
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


def _batch_time(t: Tensor, x: Tensor) -> Tensor:
    return t.to(device=x.device, dtype=x.dtype).expand(x.shape[0])


def euler_solve(velocity: VelocityFn, x_init: Tensor, grid: Tensor, cond: Any = None) -> SolverOutput:
    """First-order Euler over ``grid`` (decreasing times)."""
    x = x_init
    for t_cur, t_next in zip(grid[:-1], grid[1:]):
        u = velocity(x, _batch_time(t_cur, x), cond)
        x = x + u * (t_cur - t_next).to(x.dtype)
    return SolverOutput(sample=x, num_function_evals=len(grid) - 1)


def heun_solve(velocity: VelocityFn, x_init: Tensor, grid: Tensor, cond: Any = None) -> SolverOutput:
    """Second-order Heun (trapezoidal predictor-corrector); 2 evaluations per step."""
    x = x_init
    for t_cur, t_next in zip(grid[:-1], grid[1:]):
        dt = (t_cur - t_next).to(x.dtype)
        u_cur = velocity(x, _batch_time(t_cur, x), cond)
        x_pred = x + u_cur * dt
        u_next = velocity(x_pred, _batch_time(t_next, x), cond)
        x = x + 0.5 * (u_cur + u_next) * dt
    return SolverOutput(sample=x, num_function_evals=2 * (len(grid) - 1))


SOLVERS: dict[str, Callable[..., SolverOutput]] = {"euler": euler_solve, "heun": heun_solve}


def solve(solver: str, velocity: VelocityFn, x_init: Tensor, grid: Tensor, cond: Any = None) -> SolverOutput:
    """Dispatch to a solver by name (``"euler"`` or ``"heun"``)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver '{solver}'; choose one of {sorted(SOLVERS)}")
    return SOLVERS[solver](velocity, x_init, grid, cond)
