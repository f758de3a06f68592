"""Streaming training data from webdataset tar shards.

Every DataLoader worker on every DDP rank draws shards at random with replacement
(``webdataset.ResampledShards``, seeded by (seed, rank, worker, epoch)), so ranks and workers read
different shard sequences without any split bookkeeping and the stream never runs dry. A shuffle
buffer mixes samples across shards; then the image is decoded and the SAME train transform as the
folder dataset is applied (shorter side Lanczos resize, random crop, flip, [-1, 1]).
Samples are ``{"x": (3, size, size) float, "key": str, "cls": int}`` (``cls`` is -1 without labels).
Corrupt images are skipped, counted and logged.
"""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from PIL import Image

from core.streaming import EpochPlan, WorkerSeed, plan_epoch, shuffled, worker_id
from modalities.image.data import ImageTransform
from modalities.image.sources import SHARD_IMAGE_EXTENSIONS

__all__ = ["DecodeAndAugment", "EpochPlan", "WorkerSeed", "plan_epoch", "make_shard_stream"]

log = logging.getLogger("difftok.image")


class DecodeAndAugment:
    """webdataset pipeline stage: shuffle buffer, decode, train transform; corrupt samples skipped.

    Args:
        transform: the folder path's :class:`~modalities.image.data.ImageTransform` (``train=True``).
        seed: base seed; each (rank, worker, epoch) gets its own crop/flip/shuffle stream.
        shuffle_buffer: samples held for shuffling (raw bytes, so cheap).
        rank: global rank of this process (DDP).
    """

    def __init__(self, transform: ImageTransform, seed: int = 0, shuffle_buffer: int = 1000, rank: int = 0) -> None:
        self.transform, self.seed, self.shuffle_buffer, self.rank = transform, seed, shuffle_buffer, rank
        self.epoch = -1  # lives in each worker's copy; advances per epoch with persistent workers
        self.skipped = 0

    def __call__(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        self.epoch += 1
        rng = random.Random(f"{self.seed}:{self.rank}:{worker_id()}:{self.epoch}")  # str seeds hash deterministically
        for sample in shuffled(samples, self.shuffle_buffer, rng):
            item = self._decode(sample, rng)
            if item is not None:
                yield item

    def _decode(self, sample: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
        key = sample.get("__key__", "?")
        try:
            extension = next((e for e in SHARD_IMAGE_EXTENSIONS if e in sample), None)
            if extension is None:
                raise ValueError(f"no image member (one of {SHARD_IMAGE_EXTENSIONS}); members: {sorted(sample)}")
            with Image.open(io.BytesIO(sample[extension])) as handle:
                image = handle.convert("RGB")
            label = int(sample["cls"].decode() if isinstance(sample.get("cls"), bytes) else sample.get("cls", -1))
            return {"x": self.transform(image, rng), "key": str(key), "cls": label}
        except (OSError, ValueError, SyntaxError) as err:
            self.skipped += 1
            if self.skipped <= 10 or self.skipped % 1000 == 0:
                log.warning("skipping unreadable shard sample %s from %s (%s); %d skipped in this worker",
                            key, sample.get("__url__", "?"), err, self.skipped)
            return None


def make_shard_stream(
    urls: Sequence[str], transform: ImageTransform, plan: EpochPlan, *, seed: int = 0, shuffle_buffer: int = 1000, rank: int = 0
) -> Any:
    """An IterableDataset of transformed samples that resamples ``urls`` forever, ``plan`` epochs long.

    ``rank`` is this process's global DDP rank; DataLoader workers are told apart inside the stream.
    """
    import webdataset as wds

    pipeline = wds.DataPipeline(
        # deterministic: the shard sequence is a function of (seed, rank, worker, epoch) only
        wds.ResampledShards(list(urls), seed=seed, worker_seed=WorkerSeed(rank), deterministic=True),
        wds.tarfile_to_samples(handler=wds.warn_and_continue),
        DecodeAndAugment(transform, seed, shuffle_buffer, rank),
    )
    return pipeline.with_epoch(plan.samples_per_worker).with_length(plan.samples_per_rank, silent=True)
