"""``make_shards`` command line of any modality: folder -> webdataset tar shards (see :mod:`core.data.folder_shards`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from recipes.keyvalue import parse_key_values

__all__ = ["MakeShardsArgs", "run_make_shards"]


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


def run_make_shards(convert: Callable[..., Any], noun: str, argv: list[str] | None, doc: str,
                    args_type: type[MakeShardsArgs] = MakeShardsArgs) -> Any:
    """Parse ``argv`` into ``args_type``, run ``convert(root, out, settings, progress=, overwrite=)``, print a
    summary naming ``noun`` (``"images"``) and return the :class:`~core.data.folder_shards.ShardConversion`."""
    from core.data.folder_shards import ShardSettings

    args = parse_key_values(args_type, argv, prog="make_shards", doc=doc)
    if not args.root or not args.out:
        raise SystemExit("make_shards: root=FOLDER and out=DIR are required (see --help)")
    workers = min(8, os.cpu_count() or 1) if args.workers < 0 else args.workers
    settings = ShardSettings(shard_size=args.shard_size, max_size_mb=args.max_size_mb, seed=args.seed, shuffle=args.shuffle,
                             verify=args.verify, workers=workers)
    result = convert(args.root, args.out, settings, progress=args.progress, overwrite=args.overwrite)
    last = len(result.shards) - 1
    reused = f", {result.resumed_shards} shard(s) reused from an earlier run" if result.resumed_shards else ""
    print(f"{result.num_samples} {noun} in {len(result.shards)} shard(s) under {result.out_dir} ({len(result.classes)} classes, "
          f"{result.num_skipped} unreadable skipped{reused}) in {result.elapsed_s:.1f}s")
    print(f"train with: data.shards='{Path(result.out_dir)}/shard-{{000000..{last:06d}}}.tar'  (or data.shards={result.out_dir})")
    return result
