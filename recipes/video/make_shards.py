"""Convert a folder of videos (class sub-folders or flat) into webdataset tar shards.

    python -m recipes.video.make_shards root=/data/videos/train out=/data/video-shards/train
    python -m recipes.video.make_shards root=FOLDER out=DIR shard_size=200 max_size_mb=1024 seed=0 shuffle=true workers=8

Writes ``DIR/shard-000000.tar`` ... (original video bytes + ``.cls`` label + ``.json`` with fps, frames,
width, height) and ``DIR/index.json`` (counts, classes, skipped files). ``verify=decode`` opens every video
and reads its last safe frame (``header``: open only). Interrupted runs resume when re-run with the same
arguments; ``overwrite=true`` starts over. Train with ``data.shards=DIR``. See docs/video-data.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from recipes.keyvalue import parse_key_values


@dataclass
class MakeVideoShardsArgs:
    root: Optional[str] = None
    out: Optional[str] = None
    shard_size: int = 200  # videos per shard
    max_size_mb: Optional[float] = None  # also cap the shard size in MB
    seed: int = 0
    shuffle: bool = True
    verify: str = "decode"  # decode | header | none
    workers: int = -1  # reader processes; -1: min(8, CPUs), 0: none
    overwrite: bool = False
    progress: bool = True


def main(argv: list[str] | None = None) -> dict:
    from core.data.folder_shards import ShardSettings
    from modalities.video.shards import convert_video_folder

    args = parse_key_values(MakeVideoShardsArgs, argv, prog="make_shards", doc=__doc__ or "")
    if not args.root or not args.out:
        raise SystemExit("make_shards: root=FOLDER and out=DIR are required (see --help)")
    workers = min(8, os.cpu_count() or 1) if args.workers < 0 else args.workers
    settings = ShardSettings(shard_size=args.shard_size, max_size_mb=args.max_size_mb, seed=args.seed, shuffle=args.shuffle,
                             verify=args.verify, workers=workers)
    result = convert_video_folder(args.root, args.out, settings, progress=args.progress, overwrite=args.overwrite)
    reused = f", {result.resumed_shards} shard(s) reused from an earlier run" if result.resumed_shards else ""
    print(f"{result.num_samples} videos in {len(result.shards)} shard(s) under {result.out_dir} ({len(result.classes)} classes, "
          f"{result.num_skipped} unreadable skipped{reused}) in {result.elapsed_s:.1f}s")
    print(f"train with: data.shards={result.out_dir}")
    return {"num_samples": result.num_samples, "shards": len(result.shards), "skipped": result.num_skipped,
            "resumed_shards": result.resumed_shards}


if __name__ == "__main__":
    main()
