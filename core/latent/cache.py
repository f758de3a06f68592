"""Latent caching: encode a dataset once, train generators from the stored latents.

Writer: :class:`LatentCacheWriter` (or :func:`write_latent_cache`) turns a stream of
:class:`LatentBatch` into webdataset shards ``latents-%06d.tar`` plus ``index.json`` (format in
:mod:`core.latent.cache_format`). Shard ``i`` holds the samples of input positions
``[i·samples_per_shard, (i+1)·samples_per_shard)``, so a shard's contents never depend on where a run
was interrupted. Each shard is written to a temporary file and renamed when complete, and the index
is rewritten after every shard; re-running with the same settings skips complete shards and yields
byte-identical files (tar members carry no timestamps or owners). A different fingerprint in the same
folder is refused unless ``overwrite``.

Reader: :func:`read_latent_index`, :func:`make_latent_dataloader`, :func:`load_all_latents`
(:mod:`core.latent.cache_stream`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tqdm import tqdm

from core.data.shard_writer import ShardDirectory, TarShard, fingerprint_of
from core.latent.cache_format import (
    INDEX_FORMAT,
    STORAGE_DTYPES,
    LatentCacheIndex,
    LatentShard,
    encode_array,
    member_names,
    read_latent_index,
)
from core.latent.cache_stream import CachedLatents, load_all_latents, make_latent_dataloader

__all__ = [
    "LatentBatch", "LatentCacheSettings", "TokenizerInfo", "LatentCacheResult", "LatentCacheWriter", "write_latent_cache",
    "LatentCacheIndex", "LatentShard", "read_latent_index", "make_latent_dataloader", "load_all_latents", "CachedLatents",
]


@dataclass
class LatentBatch:
    """Encoded latents of a batch of inputs.

    Attributes:
        keys: sample keys (no dots: webdataset splits member names at the first dot).
        mean: ``(B, C, *S)`` posterior mean / mode (the latent of a deterministic tokenizer).
        labels: ``(B,)`` integer class labels.
        std: ``(B, C, *S)`` posterior std (KL tokenizers), or None.
        mean_flip: ``(B, C, *S)`` mean for the horizontally flipped input, or None.
        std_flip: std for the flipped input (required when both ``std`` and ``mean_flip`` are given).
        positions: absolute input position of each sample (increasing); None continues consecutively.
            Positions let a producer skip unreadable inputs without shifting later shards.
    """

    keys: Sequence[str]
    mean: Tensor
    labels: Tensor | Sequence[int]
    std: Tensor | None = None
    mean_flip: Tensor | None = None
    std_flip: Tensor | None = None
    positions: Sequence[int] | None = None


@dataclass(frozen=True)
class LatentCacheSettings:
    """Settings that change the shard bytes (all of them enter the fingerprint).

    Attributes:
        samples_per_shard: input positions per shard.
        dtype: storage dtype, ``float32`` (exact) or ``float16`` (half the disk).
        source: producer-defined description of everything else that changes the latents (data list,
            transform, resolution, flip, precision); must be JSON-serialisable.
    """

    samples_per_shard: int = 1000
    dtype: str = "float32"
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {self.samples_per_shard}")
        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(f"dtype={self.dtype!r}; choose one of {STORAGE_DTYPES}")


@dataclass(frozen=True)
class TokenizerInfo:
    """Which tokenizer made the latents (recorded in the index; the fingerprint guards resumes)."""

    path: str | None = None
    fingerprint: str | None = None
    latent_shift: float = 0.0
    latent_scale: float = 1.0


@dataclass
class LatentCacheResult:
    """Outcome of a :meth:`LatentCacheWriter.write` call."""

    out_dir: Path
    count: int  # samples in complete shards
    num_shards: int
    written_shards: int  # shards written by this call
    resumed_shards: int  # complete shards found from an earlier run
    complete: bool
    elapsed_s: float
    index: LatentCacheIndex | None = None


@dataclass
class _OpenShard:
    """Shard slot ``number`` being written: input positions ``[start, end)``."""

    tar: TarShard
    start: int
    end: int

    def commit(self) -> LatentShard:
        return LatentShard(self.tar.commit(), self.start, self.end, self.tar.count)


class LatentCacheWriter:
    """Writes (or resumes) a latent cache in ``out``.

    Args:
        out: cache directory (created).
        settings: shard size, storage dtype and the producer's source description.
        num_inputs: total input positions the producer will go through.
        tokenizer: recorded in the index; its fingerprint enters the cache fingerprint.
        num_classes: number of label classes, if known.
        label_names: class names by index, if known.
        overwrite: delete an existing cache in ``out`` first.

    After construction, :attr:`resume_position` is the first input position not yet in a complete
    shard: a producer should start there (or earlier, passing explicit ``positions``).
    """

    def __init__(
        self, out: str | Path, settings: LatentCacheSettings, *, num_inputs: int, tokenizer: TokenizerInfo = TokenizerInfo(),
        num_classes: int | None = None, label_names: Sequence[str] | None = None, overwrite: bool = False,
    ) -> None:
        if num_inputs < 1:
            raise ValueError(f"num_inputs must be >= 1, got {num_inputs}")
        self.out, self.settings, self.num_inputs, self.tokenizer = Path(out), settings, int(num_inputs), tokenizer
        self.directory = ShardDirectory(self.out, "latents", INDEX_FORMAT, "latent shard(s)")
        self.fingerprint = self._fingerprint()
        self.num_shard_slots = -(-self.num_inputs // settings.samples_per_shard)  # ceil
        self.index: dict[str, Any] = {
            "format": INDEX_FORMAT, "version": 1, "complete": False, "fingerprint": self.fingerprint,
            "settings": {"samples_per_shard": settings.samples_per_shard, "dtype": settings.dtype, "num_inputs": self.num_inputs,
                         "source": settings.source},
            "count": 0, "num_inputs": self.num_inputs, "shards": [], "latent_shape": None, "dtype": settings.dtype,
            "has_std": None, "has_flip": None, "members": None,
            "num_classes": num_classes, "label_names": None if label_names is None else [str(n) for n in label_names],
            "tokenizer": {"path": tokenizer.path, "fingerprint": tokenizer.fingerprint,
                          "latent_shift": float(tokenizer.latent_shift), "latent_scale": float(tokenizer.latent_scale)},
            "pattern": None,
        }
        self.shards: list[LatentShard] = self._resume(overwrite)
        self.resumed_shards = len(self.shards)

    # ------------------------------------------------------------------------------ state
    def _fingerprint(self) -> str:
        payload = {"samples_per_shard": self.settings.samples_per_shard, "dtype": self.settings.dtype,
                   "num_inputs": self.num_inputs, "tokenizer": self.tokenizer.fingerprint, "source": self.settings.source}
        return fingerprint_of(json.dumps(payload, sort_keys=True, default=str))

    def _resume(self, overwrite: bool) -> list[LatentShard]:
        def mismatch(old: dict[str, Any]) -> str:
            changed = _changed_settings(old, self.index)
            return (f"{self.out} holds a latent cache made with different settings ({changed or 'fingerprint differs'}); "
                    f"use a fresh out= directory or overwrite=true to replace it")

        old, records = self.directory.resume(self.fingerprint, overwrite, mismatch)
        done = [LatentShard(r["name"], int(r["start"]), int(r["end"]), int(r["count"])) for r in records]
        for key in ("latent_shape", "has_std", "has_flip", "members"):
            self.index[key] = old.get(key) if done and old else None
        return done

    @property
    def resume_position(self) -> int:
        """First input position not covered by a complete shard."""
        return self.shards[-1].end if self.shards else 0

    @property
    def complete(self) -> bool:
        """Every input position is in a complete shard."""
        return len(self.shards) == self.num_shard_slots

    def _save_index(self, complete: bool) -> None:
        self.index.update(
            complete=complete, count=sum(s.count for s in self.shards),
            shards=[{"name": s.name, "start": s.start, "end": s.end, "count": s.count} for s in self.shards],
            pattern=self.directory.pattern(len(self.shards)),
        )
        self.directory.save_index(self.index)

    # ------------------------------------------------------------------------------ writing
    def _check_layout(self, batch: LatentBatch) -> None:
        """First batch fixes shape/std/flip; later batches (and resumed runs) must agree."""
        has_std, has_flip = batch.std is not None, batch.mean_flip is not None
        if has_std and has_flip and batch.std_flip is None:
            raise ValueError("LatentBatch has std and mean_flip but no std_flip; pass the flipped input's std too")
        for name in ("std", "mean_flip", "std_flip"):
            value = getattr(batch, name)
            if value is not None and value.shape != batch.mean.shape:
                raise ValueError(f"LatentBatch.{name} has shape {tuple(value.shape)}, mean has {tuple(batch.mean.shape)}")
        layout = {"latent_shape": list(batch.mean.shape[1:]), "has_std": has_std, "has_flip": has_flip,
                  "members": member_names(has_std, has_flip)}
        if self.index["latent_shape"] is None:
            self.index.update(layout)
            return
        stored = {k: self.index[k] for k in layout}
        if stored != layout:
            raise ValueError(f"latent batch layout {layout} differs from the cache's {stored}; use a fresh out= or overwrite=true")

    def _sample_members(self, batch: LatentBatch) -> list[list[tuple[str, bytes]]]:
        """Per sample: (extension, bytes) pairs in :func:`member_names` order."""
        dtype = torch.float32 if self.settings.dtype == "float32" else torch.float16
        tensors = [t for t in (batch.mean, batch.std, batch.mean_flip, batch.std_flip) if t is not None]
        arrays: list[np.ndarray] = [t.detach().to("cpu", dtype).numpy() for t in tensors]
        names = self.index["members"]
        labels = [int(v) for v in (batch.labels.tolist() if isinstance(batch.labels, Tensor) else batch.labels)]
        samples = []
        for i, label in enumerate(labels):
            samples.append([(name, encode_array(a[i])) for name, a in zip(names, arrays)] + [("cls", str(label).encode())])
        return samples

    def write(
        self, batches: Iterable[LatentBatch], *, start: int | None = None, max_shards: int | None = None, progress: bool = False,
    ) -> LatentCacheResult:
        """Consume ``batches`` and write every shard they complete.

        Args:
            batches: latent batches in increasing input position, beginning at ``start``.
            start: input position of the first sample in ``batches`` (default :attr:`resume_position`);
                samples before :attr:`resume_position` are dropped (already stored).
            max_shards: stop after writing this many new shards (the rest stays for a later resume).
            progress: tqdm bar over input positions (rate in samples/s and ETA).
        """
        begin = time.perf_counter()
        written = 0
        if self.complete:
            self._save_index(True)
            return self._result(0, begin)
        first = self.resume_position
        bar = tqdm(total=self.num_inputs, initial=first, unit="sample", desc="caching latents", disable=not progress, dynamic_ncols=True)
        shard: _OpenShard | None = None
        cursor = first if start is None else int(start)  # position of the next sample without explicit positions
        last = first - 1
        stopped = False
        try:
            for batch in batches:
                if len(batch.keys) != len(batch.mean) or len(batch.labels) != len(batch.mean):
                    raise ValueError(f"LatentBatch has {len(batch.keys)} keys, {len(batch.labels)} labels and {len(batch.mean)} latents")
                positions = list(batch.positions) if batch.positions is not None else list(range(cursor, cursor + len(batch.mean)))
                cursor = positions[-1] + 1 if positions else cursor
                if not positions or positions[-1] < first:
                    continue
                self._check_layout(batch)
                for position, key, members in zip(positions, batch.keys, self._sample_members(batch)):
                    if position < first:
                        continue
                    if position <= last or position >= self.num_inputs:
                        raise ValueError(f"input position {position} is out of order or >= num_inputs={self.num_inputs}")
                    if not key or "." in key:
                        raise ValueError(f"sample key {key!r} must be non-empty and contain no '.' (webdataset splits names at the first dot)")
                    while shard is None or position >= shard.end:
                        if shard is not None:
                            self.shards.append(shard.commit())
                            self._save_index(False)
                            written += 1
                            shard = None
                            if max_shards is not None and written >= max_shards:
                                stopped = True
                                break
                        number = len(self.shards)
                        shard = self._open_shard(number)
                    if stopped:
                        break
                    shard.tar.add(key, members)
                    last = position
                    bar.update(position + 1 - bar.n)
                if stopped:
                    break
            if not stopped:
                # stream done: close the open shard and any trailing shards whose inputs were all skipped
                while len(self.shards) < self.num_shard_slots and (max_shards is None or written < max_shards):
                    if shard is None:
                        number = len(self.shards)
                        shard = self._open_shard(number)
                    self.shards.append(shard.commit())
                    shard = None
                    written += 1
                    self._save_index(self.complete)
                bar.update(self.num_inputs - bar.n if self.complete else 0)
        finally:
            bar.close()
            if shard is not None:  # interrupted: drop the partial shard, keep the complete ones
                shard.tar.discard()
        return self._result(written, begin)

    def _open_shard(self, number: int) -> _OpenShard:
        size = self.settings.samples_per_shard
        return _OpenShard(TarShard(self.directory.shard_path(number)), number * size, min((number + 1) * size, self.num_inputs))

    def _result(self, written: int, begin: float) -> LatentCacheResult:
        index = read_latent_index(self.out) if self.shards else None
        return LatentCacheResult(self.out, sum(s.count for s in self.shards), len(self.shards), written, self.resumed_shards,
                                 self.complete, time.perf_counter() - begin, index)


def _changed_settings(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Readable list of differing settings between two indexes (for the refusal message)."""
    before, after = dict(old.get("settings") or {}), dict(new.get("settings") or {})
    before.update((before.pop("source", None) or {}))
    after.update((after.pop("source", None) or {}))
    if (old.get("tokenizer") or {}).get("fingerprint") != (new.get("tokenizer") or {}).get("fingerprint"):
        before["tokenizer"], after["tokenizer"] = "old weights", "new weights"
    keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in keys[:6])


def write_latent_cache(
    out: str | Path, batches: Iterable[LatentBatch] | Callable[[int], Iterable[LatentBatch]], settings: LatentCacheSettings, *,
    num_inputs: int, tokenizer: TokenizerInfo = TokenizerInfo(), num_classes: int | None = None,
    label_names: Sequence[str] | None = None, overwrite: bool = False, max_shards: int | None = None, progress: bool = False,
) -> LatentCacheResult:
    """One-call writer: ``batches`` is an iterable starting at input position 0 (stored samples are
    skipped on resume), or a callable ``start -> iterable`` that starts at the resume position."""
    writer = LatentCacheWriter(out, settings, num_inputs=num_inputs, tokenizer=tokenizer, num_classes=num_classes,
                               label_names=label_names, overwrite=overwrite)
    if callable(batches):
        return writer.write(batches(writer.resume_position), max_shards=max_shards, progress=progress)
    return writer.write(batches, start=0, max_shards=max_shards, progress=progress)
