"""One webdataset stream builder for every streamed dataset (training shards of any modality, latent caches).

Every DataLoader worker on every DDP rank draws shards at random with replacement, seeded by
(seed, rank, worker role, epoch), so ranks and workers read different shard sequences without split
bookkeeping and the stream never runs dry. Streams are infinite, so epochs are planned explicitly
(:func:`plan_epoch`). A shuffle buffer mixes samples across shards; then a modality-supplied decoder
turns each raw sample (``{extension: bytes}``) into an item. Samples the decoder cannot read, and
shards that cannot be read (named), are skipped, counted and logged (:class:`~core.data.skips.SkipLog`).

Exact resume: a stream built with ``start_batch`` (the checkpointed position, in this rank's
batches) yields exactly what the uninterrupted stream would have yielded from there on. The
DataLoader takes batch ``i`` of an epoch from worker ``i % workers``; a worker's stream is a function
of its *role* (which batches of the epoch it serves), not of its process, so in the resumed epoch the
roles rotate to start at the saved batch, and each role replays (reads and decodes, without
yielding) the samples it had already served that epoch. That replay costs up to one epoch of one
worker's reading; later epochs start afresh.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from core.data.skips import UNREADABLE_ERRORS, SkipLog, skip_kind

__all__ = ["worker_id", "shuffled", "EpochPlan", "plan_epoch", "EpochDecoder", "DecodeStage", "ShardStream", "make_shard_stream"]

# (epoch rng) -> (raw sample -> item); called once per epoch before shuffling, so a decoder can draw
# its own per-epoch state (e.g. a noise generator) from the same stream of random numbers
EpochDecoder = Callable[[random.Random], Callable[[dict[str, Any]], Any]]


def worker_id() -> int:
    """DataLoader worker index of the calling process (0 in the main process)."""
    info = get_worker_info()
    return info.id if info is not None else 0


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
    batch_size: int = 1
    num_workers: int = 1  # worker processes per rank (1 for the main process)


def plan_epoch(samples_per_epoch: int, batch_size: int, num_workers: int, world_size: int) -> EpochPlan:
    """Split a GLOBAL epoch of ``samples_per_epoch`` into whole batches per worker (rounded up)."""
    workers = max(1, num_workers)
    batches_per_worker = max(1, math.ceil(samples_per_epoch / (world_size * workers * batch_size)))
    per_worker = batches_per_worker * batch_size
    return EpochPlan(per_worker, batches_per_worker * workers, per_worker * workers, batch_size, workers)


class DecodeStage:
    """Shuffle buffer, then ``decoder``; unreadable samples skipped and counted.

    Args:
        decoder: ``rng -> (sample -> item)``, see :data:`EpochDecoder`; its decode function raises one
            of :data:`~core.data.skips.UNREADABLE_ERRORS` for a corrupt sample.
        shuffle_buffer: samples held for shuffling (raw bytes, so cheap).
        logger: where skips are reported.
    """

    def __init__(self, decoder: EpochDecoder, shuffle_buffer: int = 1000, logger: logging.Logger | None = None) -> None:
        self.decoder, self.shuffle_buffer = decoder, shuffle_buffer
        self.skips = SkipLog(logger or logging.getLogger("difftok.data"), "shard sample")

    def __call__(self, samples: Iterable[dict[str, Any]], rng: random.Random | None = None) -> Iterator[Any]:
        """Decoded items of ``samples``; ``rng`` (one epoch's random stream) drives the shuffle and the decoder."""
        rng = rng or random.Random(0)
        decode = self.decoder(rng)
        for sample in shuffled(samples, self.shuffle_buffer, rng):
            try:
                yield decode(sample)
            except UNREADABLE_ERRORS as err:
                where = f"{sample.get('__key__', '?')} from {sample.get('__url__', '?')}"
                self.skips.record(where, f"{type(err).__name__}: {err}", skip_kind(err))


class ShardStream(IterableDataset):
    """Resampled shards -> :class:`DecodeStage`, ``plan.samples_per_worker`` items per worker and epoch.

    Args:
        urls: shard paths or URLs.
        decoder: the stream's :data:`EpochDecoder`.
        plan: the epoch plan (:func:`plan_epoch`) of this rank.
        seed: base seed; each (rank, role, epoch) gets its own shard, shuffle and decode random streams.
        shuffle_buffer: samples held for shuffling.
        rank: global rank of this process (DDP).
        start_batch: batches this rank already drew (the resumed position; 0 for a fresh run).
        logger: where skips are reported.
    """

    def __init__(self, urls: Sequence[str], decoder: EpochDecoder, plan: EpochPlan, *, seed: int = 0, shuffle_buffer: int = 1000,
                 rank: int = 0, start_batch: int = 0, logger: logging.Logger | None = None) -> None:
        if not urls:
            raise ValueError("a shard stream needs at least one shard")
        self.urls, self.plan, self.seed, self.rank = list(urls), plan, seed, rank
        self.first_epoch, self.first_batch = divmod(start_batch, plan.batches_per_rank)
        self.epochs_started = 0  # lives in each worker's copy; advances per epoch (persistent workers)
        self.stage = DecodeStage(decoder, shuffle_buffer, logger)
        self.shard_skips = SkipLog(logger or logging.getLogger("difftok.data"), "shard")

    @property
    def skips(self) -> SkipLog:
        """Unreadable samples skipped so far in this process."""
        return self.stage.skips

    def __len__(self) -> int:
        return self.plan.samples_per_rank

    def _next_role(self) -> tuple[int, int, int]:
        """(epoch, role, items to replay) of this worker's next epoch."""
        workers = self.plan.num_workers
        shift = self.first_batch if self.epochs_started == 0 else 0
        epoch = self.first_epoch + self.epochs_started
        self.epochs_started += 1
        role = (worker_id() + shift) % workers
        served = (shift - role + workers - 1) // workers if shift > role else 0  # batches b < shift with b % workers == role
        return epoch, role, served * self.plan.batch_size

    def _shard_failed(self, exn: Exception, failures_in_a_row: int) -> bool:
        """webdataset's error handler for a shard that cannot be read: record it by name and skip it."""
        url = next((a for a in reversed(exn.args) if isinstance(a, str) and a in self.urls), "?")
        self.shard_skips.record(url, f"{type(exn).__name__}: {exn.args[0] if exn.args else exn}")
        if failures_in_a_row >= max(20, 3 * len(self.urls)):
            raise RuntimeError(
                f"{failures_in_a_row} shard reads failed in a row, last {url}; every shard may be unreadable "
                f"(first: {next(iter(self.shard_skips.reasons.items()))}). Check data.shards"
            ) from exn
        return True

    def _shards(self, rng: random.Random) -> Iterator[dict[str, str]]:
        """Shard URLs drawn with replacement, forever."""
        while True:
            yield {"url": self.urls[rng.randrange(len(self.urls))]}

    def __iter__(self) -> Iterator[Any]:
        epoch, role, replay = self._next_role()
        name = f"{self.seed}:{self.rank}:{role}:{epoch}"  # str seeds hash deterministically
        failures_in_a_row = 0  # shard failures since the last sample arrived (all shards bad: stop, not spin)

        def on_shard_error(exn: Exception) -> bool:
            nonlocal failures_in_a_row
            failures_in_a_row += 1
            return self._shard_failed(exn, failures_in_a_row)

        raw = wds.tarfile_to_samples(handler=on_shard_error)(self._shards(random.Random(f"{name}:shards")))
        for produced, item in enumerate(self.stage(raw, random.Random(name)), start=1):
            failures_in_a_row = 0
            if produced > replay:  # the first `replay` items were served before the checkpoint
                yield item
            if produced >= self.plan.samples_per_worker:
                return


def make_shard_stream(urls: Sequence[str], decoder: EpochDecoder, plan: EpochPlan, *, seed: int = 0, shuffle_buffer: int = 1000,
                      rank: int = 0, logger: logging.Logger | None = None, start_batch: int = 0) -> ShardStream:
    """An IterableDataset of decoded items that resamples ``urls`` forever, ``plan`` epochs long.

    ``rank`` is this process's global DDP rank; DataLoader workers are told apart inside the stream.
    ``start_batch`` (this rank's batches already drawn) resumes the stream exactly where a checkpointed
    run was. Tar files that cannot be read are skipped and counted, naming the shard.
    """
    return ShardStream(urls, decoder, plan, seed=seed, shuffle_buffer=shuffle_buffer, rank=rank, start_batch=start_batch, logger=logger)
