"""The ``make_shards`` command line shared by every modality: key=value arguments -> :mod:`core.data.folder_shards`.

A modality's ``recipes.<modality>.make_shards`` passes its :class:`~core.data.folder_shards.FolderShardFormat`
(which files are samples, how one is checked, what metadata is stored) and its usage text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from core.data.folder_shards import FolderShardFormat, ShardConversion, ShardSettings, convert_folder_to_shards
from recipes.keyvalue import parse_key_values

__all__ = ["MakeShardsArgs", "make_shards_main"]


@dataclass
class MakeShardsArgs:
    root: Optional[str] = None
    out: Optional[str] = None
    shard_size: int = 1000  # samples per shard
    max_size_mb: Optional[float] = None  # also cap the shard size in MB
    seed: int = 0
    shuffle: bool = True
    verify: str = "decode"  # decode | header | none
    workers: int = -1  # reader processes; -1: min(8, CPUs), 0: none
    overwrite: bool = False
    progress: bool = True


def make_shards_main(argv: list[str] | None, sample_format: FolderShardFormat, *, doc: str) -> ShardConversion:
    """Parse ``argv``, convert ``root`` into shards under ``out`` (resumable) and print a summary."""
    args = parse_key_values(MakeShardsArgs, argv, prog="make_shards", doc=doc)
    if not args.root or not args.out:
        raise SystemExit("make_shards: root=FOLDER and out=DIR are required (see --help)")
    workers = min(8, os.cpu_count() or 1) if args.workers < 0 else args.workers
    settings = ShardSettings(shard_size=args.shard_size, max_size_mb=args.max_size_mb, seed=args.seed,
                             shuffle=args.shuffle, verify=args.verify, workers=workers)
    result = convert_folder_to_shards(args.root, args.out, sample_format, settings, progress=args.progress, overwrite=args.overwrite)
    last = len(result.shards) - 1
    print(f"{result.num_samples} {sample_format.noun}s in {len(result.shards)} shard(s) under {result.out_dir} "
          f"({len(result.classes)} classes, {result.num_skipped} unreadable skipped"
          f"{f', {result.resumed_shards} shard(s) reused from an earlier run' if result.resumed_shards else ''}) "
          f"in {result.elapsed_s:.1f}s")
    print(f"train with: data.shards='{result.out_dir}/shard-{{000000..{last:06d}}}.tar'  (or data.shards={result.out_dir})")
    return result
