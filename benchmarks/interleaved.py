"""Interleaved timing shared by the decode benchmarks: A, B, C, A, B, C, ... so machine noise hits all entries alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

__all__ = ["TimedEntry", "timed", "interleaved_times"]

LONG_STEPS = 10  # entries with more solver steps than this run only in the first `long_repeats` repetitions


class TimedEntry(Protocol):
    name: str
    steps: int
    run: Callable[[], Any]


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of one call of ``fn`` (synchronising CUDA before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_times(entries: Sequence[TimedEntry], *, repeats: int, long_repeats: int, warmup: int,
                      device: torch.device) -> dict[str, list[float]]:
    """Warm every entry up, then time ``repeats`` interleaved rounds; ``{name: seconds per repetition}``."""
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
