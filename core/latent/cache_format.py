"""On-disk format of a latent cache: webdataset shards ``latents-%06d.tar`` plus ``index.json``.

Each shard sample holds (webdataset convention: the key ends at the first dot of a member name)::

    <key>.mean.npy        (C, *S) latent mean (posterior mode), float32 or float16, numpy .npy bytes
    <key>.std.npy         (C, *S) posterior std              (KL tokenizers only: has_std)
    <key>.mean_flip.npy   (C, *S) mean of the flipped input  (has_flip; DiT-style flip augmentation)
    <key>.std_flip.npy    (C, *S) std of the flipped input   (has_std and has_flip)
    <key>.cls             class index as decimal text

Latents are stored in tokenizer space (before ``LatentStats.normalize``); the index carries the
tokenizer's shift/scale so a generator can normalise them.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.data.shard_writer import INDEX_NAME

__all__ = [
    "INDEX_NAME", "INDEX_FORMAT", "SHARD_PATTERN", "STORAGE_DTYPES", "LatentShard", "LatentCacheIndex",
    "read_latent_index", "member_names", "encode_array", "decode_array", "file_fingerprint",
]

INDEX_FORMAT = "difftok-latent-cache"
SHARD_PATTERN = "latents-{:06d}.tar"  # what core.data.shard_writer.ShardDirectory(prefix="latents") writes
STORAGE_DTYPES = ("float32", "float16")


def member_names(has_std: bool, has_flip: bool) -> list[str]:
    """Tensor member extensions of one sample, in the order they are written."""
    names = ["mean.npy"]
    if has_std:
        names.append("std.npy")
    if has_flip:
        names.append("mean_flip.npy")
        if has_std:
            names.append("std_flip.npy")
    return names


def encode_array(array: np.ndarray) -> bytes:
    """Exact ``.npy`` bytes (no pickle; same array -> same bytes)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_array(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_array`."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def file_fingerprint(*paths: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-1 over the names' basenames and bytes of ``paths`` (streamed, so large weight files are fine)."""
    digest = hashlib.sha1()
    for path in paths:
        path = Path(path)
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class LatentShard:
    """One complete shard: samples for input positions ``[start, end)`` (``count`` of them stored)."""

    name: str
    start: int
    end: int
    count: int


@dataclass(frozen=True)
class LatentCacheIndex:
    """Parsed ``index.json`` of a latent cache.

    Attributes:
        root: the cache directory.
        count: samples stored in complete shards.
        shards: complete shards in order.
        latent_shape: ``(C, *S)`` of one latent.
        dtype: storage dtype (``float32`` or ``float16``); readers always return float32.
        has_std: posterior std stored (KL tokenizer).
        has_flip: latents of the horizontally flipped input stored.
        num_classes: number of label classes (None when unknown).
        label_names: class names by index (None when unknown).
        tokenizer_path: where the tokenizer was loaded from.
        tokenizer_fingerprint: hash of the tokenizer's config and weights.
        latent_shift: tokenizer latent shift (``z_model = (z - shift) / scale``).
        latent_scale: tokenizer latent scale.
        fingerprint: hash of every setting that changes the shard bytes.
        complete: the writer finished (all inputs encoded).
        settings: the settings the fingerprint was computed from.
    """

    root: Path
    count: int
    shards: tuple[LatentShard, ...]
    latent_shape: tuple[int, ...]
    dtype: str
    has_std: bool
    has_flip: bool
    num_classes: int | None
    label_names: tuple[str, ...] | None
    tokenizer_path: str | None
    tokenizer_fingerprint: str | None
    latent_shift: float
    latent_scale: float
    fingerprint: str
    complete: bool
    settings: dict[str, Any] = field(default_factory=dict)

    def shard_paths(self) -> list[str]:
        """Paths of the complete shards."""
        return [str(self.root / shard.name) for shard in self.shards]

    @property
    def members(self) -> list[str]:
        """Tensor member extensions of each sample."""
        return member_names(self.has_std, self.has_flip)


def read_latent_index(path: str | Path) -> LatentCacheIndex:
    """Read ``<path>/index.json`` (``path`` may also name the file itself)."""
    path = Path(path)
    file = path if path.is_file() else path / INDEX_NAME
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: expected a folder written by recipes.image.cache_latents (core.latent.cache)")
    data = json.loads(file.read_text())
    if data.get("format") != INDEX_FORMAT:
        raise ValueError(f"{file} is not a latent-cache index (format={data.get('format')!r}, expected {INDEX_FORMAT!r})")
    if data.get("latent_shape") is None:
        raise ValueError(f"{file} describes an empty latent cache (no shard written yet); run the caching command to completion")
    tokenizer = data.get("tokenizer") or {}
    names = data.get("label_names")
    return LatentCacheIndex(
        root=file.parent,
        count=int(data["count"]),
        shards=tuple(LatentShard(s["name"], int(s["start"]), int(s["end"]), int(s["count"])) for s in data["shards"]),
        latent_shape=tuple(int(s) for s in data["latent_shape"]),
        dtype=str(data["dtype"]),
        has_std=bool(data["has_std"]),
        has_flip=bool(data["has_flip"]),
        num_classes=None if data.get("num_classes") is None else int(data["num_classes"]),
        label_names=None if names is None else tuple(str(n) for n in names),
        tokenizer_path=tokenizer.get("path"),
        tokenizer_fingerprint=tokenizer.get("fingerprint"),
        latent_shift=float(tokenizer.get("latent_shift", 0.0)),
        latent_scale=float(tokenizer.get("latent_scale", 1.0)),
        fingerprint=str(data["fingerprint"]),
        complete=bool(data.get("complete", False)),
        settings=dict(data.get("settings") or {}),
    )
