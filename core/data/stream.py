"""One webdataset stream builder for every streamed dataset (training shards of any modality, latent caches).

Every DataLoader worker on every DDP rank draws shards at random with replacement
(``webdataset.ResampledShards``, seeded by (seed, rank, worker, epoch)), so ranks and workers read
different shard sequences without split bookkeeping and the stream never runs dry. Streams are
infinite, so epochs are planned explicitly (:func:`plan_epoch`). A shuffle buffer mixes samples
across shards; then a modality-supplied decoder turns each raw sample (``{extension: bytes}``) into
an item. Samples the decoder cannot read are skipped, counted and logged (:class:`~core.data.skips.SkipLog`).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import webdataset as wds
from torch.utils.data import get_worker_info

from core.data.skips import UNREADABLE_ERRORS, SkipLog, skip_reason

__all__ = ["worker_id", "WorkerSeed", "shuffled", "EpochPlan", "plan_epoch", "EpochDecoder", "DecodeStage", "make_shard_stream"]

# (epoch rng) -> (raw sample -> item); called once per epoch before shuffling, so a decoder can draw
# its own per-epoch state (e.g. a noise generator) from the same stream of random numbers
EpochDecoder = Callable[[random.Random], Callable[[dict[str, Any]], Any]]


def worker_id() -> int:
    """DataLoader worker index of the calling process (0 in the main process)."""
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


class DecodeStage:
    """webdataset pipeline stage: shuffle buffer, then ``decoder``; unreadable samples skipped and counted.

    Args:
        decoder: ``rng -> (sample -> item)``, see :data:`EpochDecoder`; its decode function raises one
            of :data:`~core.data.skips.UNREADABLE_ERRORS` for a corrupt sample.
        seed: base seed; each (rank, worker, epoch) gets its own shuffle and decode random stream.
        shuffle_buffer: samples held for shuffling (raw bytes, so cheap).
        rank: global rank of this process (DDP).
        logger: where skips are reported.
    """

    def __init__(self, decoder: EpochDecoder, seed: int = 0, shuffle_buffer: int = 1000, rank: int = 0,
                 logger: logging.Logger | None = None) -> None:
        self.decoder, self.seed, self.shuffle_buffer, self.rank = decoder, seed, shuffle_buffer, rank
        self.epoch = -1  # lives in each worker's copy; advances per epoch with persistent workers
        self.skips = SkipLog(logger or logging.getLogger("difftok.data"), "shard sample")

    def __call__(self, samples: Iterable[dict[str, Any]]) -> Iterator[Any]:
        self.epoch += 1
        rng = random.Random(f"{self.seed}:{self.rank}:{worker_id()}:{self.epoch}")  # str seeds hash deterministically
        decode = self.decoder(rng)
        for sample in shuffled(samples, self.shuffle_buffer, rng):
            try:
                yield decode(sample)
            except UNREADABLE_ERRORS as err:
                where = f"{sample.get('__key__', '?')} from {sample.get('__url__', '?')}"
                self.skips.record(where, f"{type(err).__name__}: {err}", skip_reason(err))


def make_shard_stream(urls: Sequence[str], decoder: EpochDecoder, plan: EpochPlan, *, seed: int = 0, shuffle_buffer: int = 1000,
                      rank: int = 0, logger: logging.Logger | None = None) -> Any:
    """An IterableDataset of decoded items that resamples ``urls`` forever, ``plan`` epochs long.

    ``rank`` is this process's global DDP rank; DataLoader workers are told apart inside the stream.
    Tar files that cannot be read are reported by webdataset and skipped.
    """
    pipeline = wds.DataPipeline(
        # deterministic: the shard sequence is a function of (seed, rank, worker, epoch) only
        wds.ResampledShards(list(urls), seed=seed, worker_seed=WorkerSeed(rank), deterministic=True),
        wds.tarfile_to_samples(handler=wds.warn_and_continue),
        DecodeStage(decoder, seed, shuffle_buffer, rank, logger),
    )
    return pipeline.with_epoch(plan.samples_per_worker).with_length(plan.samples_per_rank, silent=True)
