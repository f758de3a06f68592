"""Interleaved timing shared by the decode benchmarks: A, B, C, A, B, C, ... so machine noise
hits every model alike; entries with many solver steps run only in the first repetitions."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

__all__ = ["Timed", "timed", "interleaved_times"]

LONG_STEPS = 10  # entries with more solver steps than this are "long"


class Timed(Protocol):
    name: str
    steps: int
    run: Callable[[], torch.Tensor]


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> float:
    """Seconds of one call of ``fn`` (synchronising CUDA around it)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_times(entries: Sequence[Timed], device: torch.device, *, repeats: int, long_repeats: int, warmup: int) -> dict[str, list[float]]:
    """Per entry name, its seconds per repetition: ``warmup`` untimed calls each (at most one for long
    entries), then ``repeats`` interleaved rounds (long entries only in the first ``long_repeats``)."""
    times: dict[str, list[float]] = {e.name: [] for e in entries}
    for entry in entries:  # warm-up (and compilation)
        for _ in range(warmup if entry.steps <= LONG_STEPS else min(warmup, 1)):
            entry.run()
    for rep in range(repeats):
        for entry in entries:
            if entry.steps > LONG_STEPS and rep >= long_repeats:
                continue
            times[entry.name].append(timed(entry.run, device))
            print(f"  rep {rep + 1}/{repeats} {entry.name}: {times[entry.name][-1]:.3f} s", flush=True)
    return times
