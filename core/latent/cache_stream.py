"""Reading a latent cache: an infinite, resampled training stream and a small in-memory loader.

The stream is :func:`core.data.stream.make_shard_stream` (shards resampled per rank and worker, a
shuffle buffer, unreadable samples skipped and counted) with :class:`DecodeLatents` as its decoder.
Each sample becomes ``{"z": (C, *S) float32, "label": int}``: the flipped-input latent with p = 0.5
when the cache stores flips (``random_flip``), and ``mean + std·ε`` when it stores a posterior std
(``sample_posterior``; KL latents). ``z`` stays in tokenizer space: normalise it with the index's
``latent_shift``/``latent_scale``.
"""

from __future__ import annotations

import functools
import logging
import random
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from core.latent.cache_format import LatentCacheIndex, decode_array, read_latent_index
from core.data.resumable import loader_generator
from core.data.stream import make_shard_stream, plan_epoch

__all__ = ["CachedLatents", "DecodeLatents", "make_latent_dataloader", "load_all_latents"]


class DecodeLatents:
    """Stream decoder (:data:`core.data.stream.EpochDecoder`): ``.npy`` bytes -> ``{"z", "label"}`` with flip/posterior draws.

    Args:
        index: the cache's index (which members exist).
        sample_posterior: draw ``mean + std·ε`` when the cache stores a std.
        random_flip: use the flipped-input latent with p = 0.5 when stored.
    """

    def __init__(self, index: LatentCacheIndex, sample_posterior: bool = True, random_flip: bool = True) -> None:
        self.has_std, self.has_flip = index.has_std, index.has_flip
        self.sample_posterior, self.random_flip = sample_posterior, random_flip

    def __call__(self, rng: random.Random) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """This epoch's decode function: flips from ``rng``, posterior noise from a generator seeded by it."""
        noise = torch.Generator().manual_seed(rng.getrandbits(63))
        return functools.partial(self.decode, rng=rng, noise=noise)

    def decode(self, sample: dict[str, Any], rng: random.Random, noise: torch.Generator) -> dict[str, Any]:
        """One stored sample -> ``{"z": (C, *S) float32, "label": int}``."""
        suffix = "_flip" if self.has_flip and self.random_flip and rng.random() < 0.5 else ""
        z = torch.from_numpy(decode_array(sample[f"mean{suffix}.npy"])).float()
        if self.has_std and self.sample_posterior:
            std = torch.from_numpy(decode_array(sample[f"std{suffix}.npy"])).float()
            z = z + std * torch.randn(z.shape, generator=noise)
        label = sample["cls"]
        return {"z": z, "label": int(label.decode() if isinstance(label, bytes) else label)}


def make_latent_dataloader(
    path: str | Path, batch_size: int, *, seed: int = 0, num_workers: int = 0, rank: int = 0, world_size: int = 1,
    shuffle_buffer: int = 1000, sample_posterior: bool = True, random_flip: bool = True, start_batch: int = 0,
) -> DataLoader:
    """Infinite resampled stream of ``{"z": (B, C, *S) float32, "label": (B,) long}`` batches.

    One epoch is ``index.count`` samples over all ranks (rounded up to whole batches per worker), so
    ``len(loader)`` is this rank's batches per epoch. ``batch_size`` is per rank. ``start_batch`` (this
    rank's batches already drawn, a checkpoint's data position) continues the stream exactly there.
    """
    index = read_latent_index(path)
    if not index.shards or index.count == 0:
        raise ValueError(f"latent cache {path} has no complete shard with samples; finish the caching run first")
    if batch_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, {world_size}")
    plan = plan_epoch(index.count, batch_size, num_workers, world_size)
    dataset = make_shard_stream(index.shard_paths(), DecodeLatents(index, sample_posterior, random_flip), plan, seed=seed,
                                shuffle_buffer=shuffle_buffer, rank=rank, logger=logging.getLogger("difftok.latent"),
                                start_batch=start_batch)
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0,
                      pin_memory=torch.cuda.is_available(), generator=loader_generator(seed, rank, start_batch))


@dataclass
class CachedLatents:
    """A whole (small) cache in memory, in storage order. Tensors are float32, ``(N, C, *S)``."""

    keys: list[str]
    labels: Tensor  # (N,) long
    mean: Tensor
    std: Tensor | None
    mean_flip: Tensor | None
    std_flip: Tensor | None
    index: LatentCacheIndex


def load_all_latents(path: str | Path) -> CachedLatents:
    """Read every sample of every complete shard (for small caches and tests)."""
    index = read_latent_index(path)
    keys: list[str] = []
    labels: list[int] = []
    arrays: dict[str, list[Tensor]] = {name: [] for name in index.members}
    for shard in index.shard_paths():
        samples: dict[str, dict[str, bytes]] = {}
        with tarfile.open(shard, mode="r:") as tar:
            for info in tar:
                key, _, extension = info.name.partition(".")
                handle = tar.extractfile(info)
                samples.setdefault(key, {})[extension] = handle.read() if handle is not None else b""
        for key, members in samples.items():  # dicts keep the tar order
            keys.append(key)
            labels.append(int(members["cls"].decode()))
            for name in index.members:
                arrays[name].append(torch.from_numpy(decode_array(members[name])).float())

    def stacked(name: str) -> Tensor | None:
        if name not in arrays:
            return None
        return torch.stack(arrays[name]) if arrays[name] else torch.empty(0, *index.latent_shape)

    return CachedLatents(keys, torch.tensor(labels, dtype=torch.long), stacked("mean.npy"), stacked("std.npy"),
                         stacked("mean_flip.npy"), stacked("std_flip.npy"), index)
