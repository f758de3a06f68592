"""Building blocks of resampled webdataset streams, shared by every streamed dataset.

Streams are infinite (shards resampled per rank and worker), so epochs are planned explicitly;
each (rank, worker, epoch) gets its own shuffle stream from a string seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["worker_id", "WorkerSeed", "shuffled", "EpochPlan", "plan_epoch"]


def worker_id() -> int:
    """DataLoader worker index of the calling process (0 in the main process)."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return info.id if info is not None else 0


@dataclass(frozen=True)
class WorkerSeed:
    """Picklable ``worker_seed`` for ``ResampledShards``: distinct per (rank, worker).

    The rank is passed in from the trainer rather than read inside the worker, so it is right whatever
    the worker start method or launcher."""

    rank: int = 0

    def __call__(self) -> int:
        return self.rank * 1000 + worker_id()


def shuffled(samples: Iterable[dict[str, Any]], buffer_size: int, rng: random.Random, initial: int = 100) -> Iterator[dict[str, Any]]:
    """Shuffle buffer: emit a random buffered sample per new one once ``initial`` are held, growing the
    buffer to ``buffer_size`` by emitting only every other step meanwhile (fast start, full mixing later)."""
    if buffer_size <= 1:
        yield from samples
        return
    initial = min(initial, buffer_size)
    buffer: list[dict[str, Any]] = []
    for step, sample in enumerate(samples):
        buffer.append(sample)
        if len(buffer) < initial or (len(buffer) < buffer_size and step % 2):
            continue
        index = rng.randrange(len(buffer))
        buffer[index], buffer[-1] = buffer[-1], buffer[index]
        yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


@dataclass(frozen=True)
class EpochPlan:
    """Per-rank epoch length of an infinite stream (Lightning needs finite epochs)."""

    samples_per_worker: int
    batches_per_rank: int
    samples_per_rank: int


def plan_epoch(samples_per_epoch: int, batch_size: int, num_workers: int, world_size: int) -> EpochPlan:
    """Split a GLOBAL epoch of ``samples_per_epoch`` into whole batches per worker (rounded up)."""
    workers = max(1, num_workers)
    batches_per_worker = max(1, math.ceil(samples_per_epoch / (world_size * workers * batch_size)))
    per_worker = batches_per_worker * batch_size
    return EpochPlan(per_worker, batches_per_worker * workers, per_worker * workers)
