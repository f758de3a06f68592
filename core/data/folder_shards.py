"""Convert a folder of sample files into webdataset tar shards (``shard-000000.tar`` ...) plus ``index.json``.

Each sample stores the ORIGINAL encoded bytes (``<key>.<ext>``, never re-encoded) and ``<key>.cls``
(class index as text). Classes are the top-level sub-folders of the root (ImageNet style); a flat
folder is one class ``""``. Files are shuffled with a fixed seed before sharding, so every shard mixes
classes (needed when training resamples shards). What counts as a sample file and how one is checked
are the modality's (:class:`FolderShardFormat`).

Unreadable files are skipped and counted. Shards are written atomically and the run resumes after
the last complete shard when run again with the same settings (:mod:`core.data.shard_writer`).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.data.shard_writer import INDEX_NAME, ShardDirectory, TarShard, fingerprint_of, read_index
from core.data.skips import SkipLog
from core.data.sources import folder_class_names, list_files, sample_key

__all__ = ["VERIFY_MODES", "FolderShardFormat", "ShardSettings", "ShardConversion", "convert_folder_to_shards", "read_shard_index",
           "INDEX_NAME"]

log = logging.getLogger("difftok.data")
VERIFY_MODES = ("decode", "header", "none")
read_shard_index = read_index  # the name readers of make_shards output know


@dataclass(frozen=True)
class FolderShardFormat:
    """What a modality contributes to folder sharding.

    Attributes:
        noun: what one sample is, in messages (``"image"``).
        index_format: ``format`` value of the written ``index.json``.
        extensions: file suffixes (with dot, case-insensitive) that are samples.
        check: ``(bytes, mode)`` raises when the bytes are not a readable sample; ``mode`` is
            ``decode`` (full decode) or ``header`` (cheap check). Must be a top-level function
            (reader processes pickle it).
        logger: where skipped files are reported.
        metadata: optional ``bytes -> dict`` stored as the sample's ``<key>.json`` member (video: fps,
            frames, width, height); raising counts the file as unreadable. Top-level function, like ``check``.
    """

    noun: str
    index_format: str
    extensions: tuple[str, ...]
    check: Callable[[bytes, str], None]
    logger: logging.Logger = log
    metadata: Callable[[bytes], dict[str, Any]] | None = None


@dataclass(frozen=True)
class ShardSettings:
    """How to shard.

    Attributes:
        shard_size: samples per shard.
        max_size_mb: also close a shard before it would exceed this many MB (None: no limit).
        seed: seed of the file shuffle.
        shuffle: shuffle files before sharding (False keeps the sorted folder order).
        verify: ``decode`` (fully decode every sample; catches truncation), ``header`` (cheap check) or ``none``.
        workers: processes that read and verify files (0: this process).
    """

    shard_size: int = 1000
    max_size_mb: float | None = None
    seed: int = 0
    shuffle: bool = True
    verify: str = "decode"
    workers: int = 0

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if self.max_size_mb is not None and self.max_size_mb <= 0:
            raise ValueError(f"max_size_mb must be positive (or None), got {self.max_size_mb}")
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"verify={self.verify!r}; choose one of {VERIFY_MODES}")

    def output_affecting(self) -> dict[str, Any]:
        """Settings that change the shard contents (``workers`` does not)."""
        return {k: v for k, v in asdict(self).items() if k != "workers"}


@dataclass
class ShardConversion:
    """Outcome of :func:`convert_folder_to_shards`."""

    out_dir: Path
    shards: list[Path]
    num_samples: int
    num_skipped: int
    classes: list[str]
    resumed_shards: int = 0  # complete shards found from an earlier, interrupted run
    elapsed_s: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)  # file -> reason (first 100)


ReadResult = tuple[bytes | None, str | None, dict[str, Any] | None]  # (bytes, reason when unreadable, metadata)


def _read_checked(job: tuple[str, str, FolderShardFormat]) -> ReadResult:
    """Read a file, check it and describe it; ``(bytes, None, metadata)`` or ``(None, reason, None)``. Top level: picklable."""
    path, verify, sample_format = job
    try:
        data = Path(path).read_bytes()
        if verify != "none":
            sample_format.check(data, verify)
        metadata = sample_format.metadata(data) if sample_format.metadata is not None else None
        return data, None, metadata
    except Exception as err:  # decoders raise many exception types for corrupt data
        return None, f"{type(err).__name__}: {err}", None


def _read_stream(paths: list[str], verify: str, sample_format: FolderShardFormat, workers: int) -> Iterator[ReadResult]:
    jobs = ((p, verify, sample_format) for p in paths)
    if workers <= 0:
        yield from map(_read_checked, jobs)
        return
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with context.Pool(workers) as pool:
        yield from pool.imap(_read_checked, jobs, chunksize=8)



def convert_folder_to_shards(
    root: str | Path, out: str | Path, sample_format: FolderShardFormat, settings: ShardSettings = ShardSettings(), *,
    progress: bool = True, overwrite: bool = False,
) -> ShardConversion:
    """Write ``out/shard-%06d.tar`` and ``out/index.json`` from the sample files under ``root``.

    Re-running with the same folder and settings resumes after the last complete shard (or returns at
    once when the index says the conversion is complete). ``overwrite`` deletes earlier shards first.
    """
    start_time = time.perf_counter()
    root, out = Path(root), Path(out)
    unlisted = SkipLog(sample_format.logger, f"{sample_format.noun} path")  # dangling links, loops, unreadable folders
    files = list_files(root, sample_format.extensions, sample_format.noun, skips=unlisted)
    relative = [p.relative_to(root).as_posix() for p in files]
    names = folder_class_names(files, root)
    classes = sorted(set(names))
    class_index = {name: i for i, name in enumerate(classes)}
    labels = [class_index[n] for n in names]
    order = list(range(len(files)))
    if settings.shuffle:
        random.Random(settings.seed).shuffle(order)
    fingerprint = fingerprint_of("\n".join(relative), json.dumps(settings.output_affecting(), sort_keys=True))

    directory = ShardDirectory(out, "shard", sample_format.index_format)
    old, records = directory.resume(fingerprint, overwrite, lambda _: (
        f"{out} holds shards of a different folder or different settings ({INDEX_NAME} fingerprint differs); "
        f"use a fresh out= directory or overwrite=true"))
    position = records[-1]["end"] if records else 0
    resumed = len(records)
    skipped: dict[str, str] = dict((old or {}).get("skipped_examples", {})) if records else {}
    skipped.update(unlisted.reasons)
    skips = SkipLog(sample_format.logger, sample_format.noun)
    index: dict[str, Any] = {
        "format": sample_format.index_format, "version": 1, "complete": False, "root": str(root.resolve()), "fingerprint": fingerprint,
        "settings": settings.output_affecting(), "num_files": len(files), "classes": classes, "shards": records,
    }
    max_bytes = None if settings.max_size_mb is None else int(settings.max_size_mb * 2**20)
    shard: TarShard | None = None
    shard_start, shard_bytes, shard_skipped = 0, 0, []

    def flush(end: int) -> None:
        records.append({"name": shard.commit(), "count": shard.count, "bytes": shard_bytes, "start": shard_start, "end": end,
                        "skipped": shard_skipped})
        index["skipped_examples"] = dict(list(skipped.items())[:100])  # kept across resumes
        directory.save_index(index)

    bar = tqdm(total=len(files), initial=position, unit="file", desc="writing shards", disable=not progress, dynamic_ncols=True)
    remaining = order[position:]
    try:
        reads = _read_stream([str(files[i]) for i in remaining], settings.verify, sample_format, settings.workers)
        for offset, (data, error, metadata) in enumerate(reads):
            pos, file_index = position + offset, remaining[offset]
            if shard is not None and (shard.count >= settings.shard_size or (
                    max_bytes is not None and data is not None and shard_bytes + len(data) > max_bytes)):
                flush(pos)
                shard = None
            if shard is None:
                shard, shard_start, shard_bytes, shard_skipped = TarShard(directory.shard_path(len(records))), pos, 0, []
            if data is None:
                shard_skipped.append(pos)
                skipped[str(files[file_index])] = error or "unreadable"
                skips.record(files[file_index], error or "unreadable")
            else:
                extension = files[file_index].suffix.lower().lstrip(".")
                members = [(extension, data), ("cls", str(labels[file_index]).encode())]
                if metadata is not None:
                    members.append(("json", json.dumps(metadata, sort_keys=True).encode()))
                shard.add(sample_key(pos, relative[file_index].rsplit(".", 1)[0]), members)
                shard_bytes += len(data)
            bar.update(1)
            if offset % 100 == 0:
                bar.set_postfix(shards=len(records) + 1, skipped=len(skipped), refresh=False)
        if shard is not None and shard.count == 0 and records:  # only unreadable files left: no empty shard
            records[-1]["skipped"].extend(shard_skipped)
            records[-1]["end"] = len(order)
            shard.discard()
            shard = None
        elif shard is not None:
            flush(len(order))
            shard = None
    finally:
        bar.close()
        if shard is not None:  # interrupted: drop the partial shard, keep the complete ones
            shard.discard()

    if not any(r["count"] for r in records):
        raise RuntimeError(f"no readable {sample_format.noun} under {root} ({len(skipped)} unreadable); first: {next(iter(skipped.items()), None)}")
    skipped_positions = {p for r in records for p in r["skipped"]}
    counts = Counter(labels[order[p]] for p in range(len(order)) if p not in skipped_positions)
    index.update(
        complete=True,
        num_samples=sum(r["count"] for r in records),
        num_skipped=len(skipped_positions) + len(unlisted),
        skipped_examples=dict(list(skipped.items())[:100]),
        class_counts={classes[c]: counts.get(c, 0) for c in range(len(classes))},
        pattern=directory.pattern(len(records)),
    )
    directory.save_index(index)
    return ShardConversion(
        out_dir=out, shards=[out / r["name"] for r in records], num_samples=index["num_samples"], num_skipped=index["num_skipped"],
        classes=classes, resumed_shards=resumed, elapsed_s=time.perf_counter() - start_time, skipped=dict(list(skipped.items())[:100]),
    )
