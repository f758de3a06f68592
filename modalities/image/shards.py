"""Convert an image folder into webdataset tar shards (``shard-000000.tar`` ...) plus ``index.json``.

Each sample stores the ORIGINAL encoded bytes (``<key>.jpg`` / ``.png`` / ``.webp`` ..., never
re-encoded) and ``<key>.cls`` (class index as text). Classes are the top-level sub-folders of the root
(ImageNet style); a flat folder is one class ``""``. Files are shuffled with a fixed seed before
sharding, so every shard mixes classes (needed when training resamples shards).

Unreadable files are skipped and counted. Each shard is written to a temporary file and renamed when
complete, and ``index.json`` is rewritten after every shard: an interrupted conversion resumes from the
last complete shard when run again with the same settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import random
import re
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from core.fileio import atomic_write_text
from modalities.image.data import list_images
from modalities.image.sources import folder_class_names

__all__ = ["ShardSettings", "ShardConversion", "convert_folder_to_shards", "read_shard_index", "INDEX_NAME"]

log = logging.getLogger("difftok.image")
INDEX_NAME = "index.json"
INDEX_FORMAT = "difftok-image-shards"
VERIFY_MODES = ("decode", "header", "none")


@dataclass(frozen=True)
class ShardSettings:
    """How to shard.

    Attributes:
        shard_size: images per shard.
        max_size_mb: also close a shard before it would exceed this many MB (None: no limit).
        seed: seed of the file shuffle.
        shuffle: shuffle files before sharding (False keeps the sorted folder order).
        verify: ``decode`` (fully decode every image; catches truncation), ``header`` (PIL verify) or ``none``.
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


def _read_checked(job: tuple[str, str]) -> tuple[bytes | None, str | None]:
    """Read a file and check it decodes; ``(bytes, None)`` or ``(None, reason)``. Top level: picklable."""
    path, verify = job
    try:
        data = Path(path).read_bytes()
        if verify != "none":
            with Image.open(io.BytesIO(data)) as image:
                image.load() if verify == "decode" else image.verify()
        return data, None
    except Exception as err:  # PIL raises many exception types for corrupt data
        return None, f"{type(err).__name__}: {err}"


def _sample_key(position: int, relative: str) -> str:
    """Unique, dot-free webdataset key that still names the source file."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", relative.rsplit(".", 1)[0])[-80:]
    return f"{position:08d}_{stem}"


def read_shard_index(out_dir: str | Path) -> dict[str, Any] | None:
    """The parsed ``index.json`` of a shard directory, or None when there is none."""
    path = Path(out_dir) / INDEX_NAME
    return json.loads(path.read_text()) if path.is_file() else None


class _ShardWriter:
    """Streams samples into ``.shard-N.tar.tmp`` and renames it to ``shard-N.tar`` on close."""

    def __init__(self, out_dir: Path, number: int, start: int) -> None:
        self.path = out_dir / f"shard-{number:06d}.tar"
        self.tmp = out_dir / f".{self.path.name}.tmp"
        self.handle = open(self.tmp, "wb")
        self.tar = tarfile.open(fileobj=self.handle, mode="w", format=tarfile.PAX_FORMAT)
        self.start, self.count, self.bytes = start, 0, 0
        self.skipped: list[int] = []

    def add(self, key: str, extension: str, data: bytes, label: int) -> None:
        for name, payload in ((f"{key}.{extension}", data), (f"{key}.cls", str(label).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(payload), 0, 0o444  # mtime 0: reproducible shards
            self.tar.addfile(info, io.BytesIO(payload))
        self.count += 1
        self.bytes += len(data)

    def close(self, end: int) -> dict[str, Any]:
        self.tar.close()
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp, self.path)
        return {"name": self.path.name, "count": self.count, "bytes": self.bytes, "start": self.start, "end": end,
                "skipped": self.skipped}


def _read_stream(paths: list[str], verify: str, workers: int) -> Iterator[tuple[bytes | None, str | None]]:
    jobs = ((p, verify) for p in paths)
    if workers <= 0:
        yield from map(_read_checked, jobs)
        return
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with context.Pool(workers) as pool:
        yield from pool.imap(_read_checked, jobs, chunksize=8)


def _resume_state(out: Path, fingerprint: str, overwrite: bool) -> list[dict[str, Any]]:
    """Complete shards of an earlier run with the same inputs and settings (empty for a fresh start)."""
    index = read_shard_index(out)
    existing = sorted(out.glob("shard-*.tar"))
    if overwrite:
        for path in existing + [out / INDEX_NAME]:
            path.unlink(missing_ok=True)
        return []
    if index is None:
        if existing:
            raise FileExistsError(f"{out} already holds {len(existing)} shard(s) without {INDEX_NAME}; use a fresh out= or overwrite=true")
        return []
    if index.get("fingerprint") != fingerprint:
        raise FileExistsError(
            f"{out} holds shards of a different folder or different settings ({INDEX_NAME} fingerprint differs); "
            f"use a fresh out= directory or overwrite=true"
        )
    done = []
    for record in index.get("shards", []):
        if not (out / record["name"]).is_file():
            break
        done.append(record)
    return done


def convert_folder_to_shards(
    root: str | Path, out: str | Path, settings: ShardSettings = ShardSettings(), *, progress: bool = True, overwrite: bool = False
) -> ShardConversion:
    """Write ``out/shard-%06d.tar`` and ``out/index.json`` from the images under ``root``.

    Re-running with the same folder and settings resumes after the last complete shard (or returns at
    once when the index says the conversion is complete). ``overwrite`` deletes earlier shards first.
    """
    start_time = time.perf_counter()
    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = list_images(root)
    relative = [p.relative_to(root).as_posix() for p in files]
    names = folder_class_names(files, root)
    classes = sorted(set(names))
    class_index = {name: i for i, name in enumerate(classes)}
    labels = [class_index[n] for n in names]
    order = list(range(len(files)))
    if settings.shuffle:
        random.Random(settings.seed).shuffle(order)
    digest = hashlib.sha1("\n".join(relative).encode())
    digest.update(json.dumps(settings.output_affecting(), sort_keys=True).encode())
    fingerprint = digest.hexdigest()

    for stale in out.glob(".shard-*.tar.tmp"):
        stale.unlink()
    records = _resume_state(out, fingerprint, overwrite)
    position = records[-1]["end"] if records else 0
    resumed = len(records)
    skipped: dict[str, str] = dict((read_shard_index(out) or {}).get("skipped_examples", {})) if records else {}
    index: dict[str, Any] = {
        "format": INDEX_FORMAT, "version": 1, "complete": False, "root": str(root.resolve()), "fingerprint": fingerprint,
        "settings": settings.output_affecting(), "num_files": len(files), "classes": classes, "shards": records,
    }
    max_bytes = None if settings.max_size_mb is None else int(settings.max_size_mb * 2**20)

    def flush(writer: _ShardWriter, end: int) -> None:
        records.append(writer.close(end))
        index["skipped_examples"] = dict(list(skipped.items())[:100])  # kept across resumes
        atomic_write_text(out / INDEX_NAME, json.dumps(index, indent=1))

    from tqdm import tqdm

    bar = tqdm(total=len(files), initial=position, unit="img", desc="writing shards", disable=not progress, dynamic_ncols=True)
    writer: _ShardWriter | None = None
    remaining = order[position:]
    try:
        for offset, (data, error) in enumerate(_read_stream([str(files[i]) for i in remaining], settings.verify, settings.workers)):
            pos, file_index = position + offset, remaining[offset]
            if writer is not None and (writer.count >= settings.shard_size or (
                    max_bytes is not None and data is not None and writer.bytes + len(data) > max_bytes)):
                flush(writer, pos)
                writer = None
            if writer is None:
                writer = _ShardWriter(out, len(records), pos)
            if data is None:
                writer.skipped.append(pos)
                skipped[str(files[file_index])] = error or "unreadable"
                log.warning("skipping unreadable image %s (%s)", files[file_index], error)
            else:
                extension = files[file_index].suffix.lower().lstrip(".")
                writer.add(_sample_key(pos, relative[file_index]), extension, data, labels[file_index])
            bar.update(1)
            if offset % 100 == 0:
                bar.set_postfix(shards=len(records) + 1, skipped=len(skipped), refresh=False)
        if writer is not None and writer.count == 0 and records:  # only unreadable files left: no empty shard
            records[-1]["skipped"].extend(writer.skipped)
            records[-1]["end"] = len(order)
            writer.tar.close()
            writer.handle.close()
            writer.tmp.unlink()
            writer = None
        elif writer is not None:
            flush(writer, len(order))
            writer = None
    finally:
        bar.close()
        if writer is not None:  # interrupted: drop the partial shard, keep the complete ones
            writer.tar.close()
            writer.handle.close()
            writer.tmp.unlink(missing_ok=True)

    if not any(r["count"] for r in records):
        raise RuntimeError(f"no readable image under {root} ({len(skipped)} unreadable); first: {next(iter(skipped.items()), None)}")
    skipped_positions = {p for r in records for p in r["skipped"]}
    counts = Counter(labels[order[p]] for p in range(len(order)) if p not in skipped_positions)
    index.update(
        complete=True,
        num_samples=sum(r["count"] for r in records),
        num_skipped=len(skipped_positions),
        skipped_examples=dict(list(skipped.items())[:100]),
        class_counts={classes[c]: counts.get(c, 0) for c in range(len(classes))},
        pattern=f"shard-{{000000..{len(records) - 1:06d}}}.tar" if records else None,
    )
    atomic_write_text(out / INDEX_NAME, json.dumps(index, indent=1))
    return ShardConversion(
        out_dir=out, shards=[out / r["name"] for r in records], num_samples=index["num_samples"], num_skipped=index["num_skipped"],
        classes=classes, resumed_shards=resumed, elapsed_s=time.perf_counter() - start_time, skipped=dict(list(skipped.items())[:100]),
    )
