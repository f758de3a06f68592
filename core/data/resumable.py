"""Where a run is in its training data, saved in the checkpoint so a resumed run reads exactly what
the uninterrupted run would have read next.

The position is one number, the optimiser steps done (each step draws one batch per rank). Every
random choice the data makes is a function of (seed, rank, epoch, position), never of a process's
global random state or of which worker process happens to serve a batch, so the position is enough:

- map-style data: :class:`ResumableSampler` (seeded per-epoch permutations split over ranks; the
  resumed epoch starts at the saved batch) hands ``(index, draw)`` pairs to the dataset, which seeds
  each sample's augmentation by the pair;
- streams: :func:`core.data.stream.make_shard_stream` takes the same position (``start_batch``).

:class:`ResumableDataModule` is the Lightning side: its ``state_dict`` (written into every
checkpoint) holds the position, ``load_state_dict`` restores it before the loaders are built.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch.utils.data import Sampler

__all__ = ["mixed_seed", "ResumableSampler", "ResumableDataModule", "loader_generator"]

log = logging.getLogger("difftok.data")


def mixed_seed(*parts: object) -> int:
    """A 63-bit seed that depends on every part (stable across processes and Python runs)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def loader_generator(seed: int, rank: int, start_batch: int) -> torch.Generator:
    """The DataLoader's own generator: worker base seeds come from (seed, rank, start position), and
    creating loader iterators never draws from the global torch RNG (which the model's noise uses)."""
    return torch.Generator().manual_seed(mixed_seed("loader", seed, rank, start_batch))


class ResumableSampler(Sampler[tuple[int, int]]):
    """Per-epoch seeded permutations of ``num_samples`` indices, split over ranks, in whole batches.

    Epoch ``e`` permutes all indices with seed (seed, e); rank ``r`` takes every ``world_size``-th
    entry from ``r``, cut to whole batches (like ``DistributedSampler(drop_last=True)``). Each yielded
    item is ``(index, draw)``: ``draw`` numbers every draw of the run uniquely, so the dataset seeds a
    sample's augmentation by it. The first epoch starts ``start_batch`` batches into the run.

    Args:
        num_samples: dataset length (``len(dataset)``).
        batch_size: per-rank batch size.
        seed: run seed.
        rank, world_size: this process's place among the data-parallel ranks.
        start_batch: batches this rank already drew (the resumed position).
    """

    def __init__(self, num_samples: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 start_batch: int = 0) -> None:
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, {world_size}")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = num_samples // world_size // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"{num_samples} samples cannot fill one batch of {batch_size} on each of {world_size} rank(s); "
                f"raise data.options.samples_per_epoch or lower data.batch_size"
            )
        self.epoch, self.batch_in_epoch = divmod(start_batch, self.batches_per_epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, first = self.epoch, self.batch_in_epoch * self.batch_size
        self.epoch, self.batch_in_epoch = epoch + 1, 0  # the DataLoader asks for one iterator per epoch
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(mixed_seed("epoch", self.seed, epoch)))
        mine = order[self.rank :: self.world_size][: len(self)].tolist()
        base = (epoch * self.world_size + self.rank) * len(self)
        for position in range(first, len(self)):
            yield mine[position], base + position


class ResumableDataModule(L.LightningDataModule):
    """A datamodule whose checkpointed state is its data position (optimiser steps done).

    Subclasses build their training loader from :attr:`start_batch` (0 for a fresh run; the saved
    step after ``load_state_dict``) and :meth:`rank_and_world`.
    """

    start_batch: int = 0

    def rank_and_world(self) -> tuple[int, int]:
        """(global rank, world size) of this process; (0, 1) outside a trainer."""
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def position_fingerprint(self) -> dict[str, Any]:
        """Settings that must not change for the saved position to mean the same data (per-rank batch, ranks)."""
        _, world = self.rank_and_world()
        return {"batch_size": int(getattr(self, "batch_size", 0)), "world_size": world}

    def state_dict(self) -> dict[str, Any]:
        trainer = getattr(self, "trainer", None)
        steps = trainer.global_step if trainer is not None else self.start_batch
        return {"batches_done": int(steps), **self.position_fingerprint()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.start_batch = int(state_dict.get("batches_done", 0))
        saved = {k: state_dict[k] for k in ("batch_size", "world_size") if k in state_dict}
        current = self.position_fingerprint()
        changed = {k: (v, current[k]) for k, v in saved.items() if current.get(k) != v}
        if changed:
            details = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            log.warning("resuming with other data settings (%s): the data continues from step %d but the run is not "
                        "an exact continuation of the checkpointed one", details, self.start_batch)
