"""One resumable, atomic, verifiable tar-shard writer (sample shards of any modality and latent caches).

A shard directory holds ``<prefix>-%06d.tar`` files plus ``index.json``. The guarantees every writer
gets from here:

- **atomic shards**: a shard is written to ``.<name>.tmp``, fsynced, its members re-read and checked,
  then renamed; readers never see a half-written shard, and stale temp files of a killed run are removed;
- **atomic index**: ``index.json`` is rewritten (temp file + rename) after every shard;
- **reproducible bytes**: tar members carry no timestamps, owners or permissions of the writing
  machine (mtime 0, uid/gid 0, mode 0444), so the same samples give byte-identical shards;
- **resume**: :meth:`ShardDirectory.resume` returns the complete shards of an earlier run with the
  same fingerprint (inputs + settings) and refuses a different fingerprint unless ``overwrite``;
- **verify**: :func:`verify_shard_dir` checks a finished directory against its index.

Samples are generic: a key (no dots: webdataset splits member names at the first dot) and
``(extension, bytes)`` members. Which samples go into which shard is the caller's policy.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.data.skips import UNREADABLE_ERRORS
from core.fileio import atomic_write_text

__all__ = ["INDEX_NAME", "fingerprint_of", "TarShard", "ShardDirectory", "read_index", "verify_shard_dir"]

INDEX_NAME = "index.json"


def fingerprint_of(*chunks: str) -> str:
    """SHA-1 (hex) over the UTF-8 ``chunks`` in order: what identifies a directory's inputs and settings."""
    digest = hashlib.sha1()
    for chunk in chunks:
        digest.update(chunk.encode())
    return digest.hexdigest()


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    # fixed metadata: identical inputs give identical shard bytes on any machine
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o444, 0, 0, "", ""
    return info


class TarShard:
    """One shard being written to ``.<name>.tmp``; :meth:`commit` checks and renames it to ``path``.

    Attributes:
        path: final shard path.
        count: samples added so far.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.tmp = self.path.parent / f".{self.path.name}.tmp"
        self.count = 0
        self._written: list[tuple[str, int]] = []  # (member name, size) in order, for the check at commit
        self._handle = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._handle, mode="w", format=tarfile.PAX_FORMAT)

    def add(self, key: str, members: Sequence[tuple[str, bytes]]) -> None:
        """Append one sample: ``<key>.<extension>`` per member, in the given order."""
        if not key or "." in key:
            raise ValueError(f"sample key {key!r} must be non-empty and contain no '.' (webdataset splits names at the first dot)")
        for extension, payload in members:
            name = f"{key}.{extension}"
            self._tar.addfile(_tar_info(name, len(payload)), io.BytesIO(payload))
            self._written.append((name, len(payload)))
        self.count += 1

    def commit(self) -> str:
        """Finish the tar, fsync, re-read its member list, rename into place; returns the shard's file name."""
        self._tar.close()
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        with tarfile.open(self.tmp, mode="r:") as tar:
            found = [(info.name, info.size) for info in tar]
        if found != self._written:
            self.tmp.unlink(missing_ok=True)
            raise OSError(f"shard {self.path} re-read {len(found)} members, {len(self._written)} were written; check the disk")
        os.replace(self.tmp, self.path)
        return self.path.name

    def discard(self) -> None:
        """Drop the partial shard (interrupted or empty)."""
        self._tar.close()
        self._handle.close()
        self.tmp.unlink(missing_ok=True)


def read_index(directory: str | Path) -> dict[str, Any] | None:
    """The parsed ``index.json`` of a shard directory, or None when there is none."""
    path = Path(directory) / INDEX_NAME
    return json.loads(path.read_text()) if path.is_file() else None


class ShardDirectory:
    """A directory of shards ``<prefix>-%06d.tar`` plus ``index.json``, written by one fingerprinted run.

    Args:
        out: the directory (created; stale ``.<prefix>-*.tar.tmp`` files of a killed run are removed).
        prefix: shard file prefix (``shard``, ``latents``).
        index_format: the index's ``format`` value; an index of another format is never resumed.
        what: noun for the shards in errors (``"shard(s)"``, ``"latent shard(s)"``).
    """

    def __init__(self, out: str | Path, prefix: str, index_format: str, what: str = "shard(s)") -> None:
        self.out, self.prefix, self.index_format, self.what = Path(out), prefix, index_format, what
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.glob(f".{prefix}-*.tar.tmp"):
            stale.unlink()

    def shard_path(self, number: int) -> Path:
        """Path of shard ``number``."""
        return self.out / f"{self.prefix}-{number:06d}.tar"

    def pattern(self, num_shards: int) -> str | None:
        """Brace pattern naming shards ``0 .. num_shards - 1`` (None for none)."""
        return f"{self.prefix}-{{000000..{num_shards - 1:06d}}}.tar" if num_shards else None

    def resume(self, fingerprint: str, overwrite: bool, mismatch: Callable[[dict[str, Any]], str]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """``(earlier index, its complete shard records)`` for a run with ``fingerprint``; ``(None, [])`` on a fresh start.

        ``overwrite`` deletes earlier shards and index first. A directory with shards but no index, or
        an index of a different format or fingerprint, is refused with ``FileExistsError``; ``mismatch``
        turns the earlier index into that error's text (which settings changed and the fix).
        """
        existing = sorted(self.out.glob(f"{self.prefix}-*.tar"))
        index_path = self.out / INDEX_NAME
        if overwrite:
            for path in existing + [index_path]:
                path.unlink(missing_ok=True)
            return None, []
        old = read_index(self.out)
        if old is None:
            if existing:
                raise FileExistsError(f"{self.out} holds {len(existing)} {self.what} without {INDEX_NAME}; use a fresh out= or overwrite=true")
            return None, []
        if old.get("format") != self.index_format or old.get("fingerprint") != fingerprint:
            raise FileExistsError(mismatch(old))
        done = []
        for record in old.get("shards", []):
            if not (self.out / record["name"]).is_file():
                break
            done.append(record)
        return old, done

    def save_index(self, index: dict[str, Any]) -> None:
        """Rewrite ``index.json`` atomically."""
        atomic_write_text(self.out / INDEX_NAME, json.dumps(index, indent=1))


def verify_shard_dir(directory: str | Path) -> list[str]:
    """Problems of a finished shard directory (empty list: fine).

    Every shard record of ``index.json`` must name an existing tar whose members all read back in
    full and whose sample count (distinct keys) is the record's ``count``.
    """
    directory = Path(directory)
    index = read_index(directory)
    if index is None:
        return [f"{directory} has no {INDEX_NAME}"]
    problems = []
    if not index.get("complete"):
        problems.append(f"{directory}/{INDEX_NAME} says the writing run did not finish; run it again to resume")
    for record in index.get("shards", []):
        path = directory / record["name"]
        try:
            keys = set()
            with tarfile.open(path, mode="r:") as tar:
                for info in tar:
                    handle = tar.extractfile(info)
                    if handle is None or len(handle.read()) != info.size:
                        raise OSError(f"member {info.name} is truncated")
                    keys.add(info.name.rpartition("/")[2].partition(".")[0])
        except UNREADABLE_ERRORS as err:
            problems.append(f"{path}: {type(err).__name__}: {err}")
            continue
        if len(keys) != int(record["count"]):
            problems.append(f"{path} holds {len(keys)} samples, {INDEX_NAME} says {record['count']}")
    return problems
