"""Convert a folder of audio files (wav / flac / ogg / mp3; class sub-folders or flat) into webdataset tar shards.

    python -m recipes.audio.make_shards root=/data/speech/train out=/data/speech-shards/train
    python -m recipes.audio.make_shards root=FOLDER out=DIR shard_size=1000 max_size_mb=512 seed=0 shuffle=true workers=8

Writes ``DIR/shard-000000.tar`` ... (the ORIGINAL file bytes, never re-encoded or resampled, + ``.cls`` +
``.json`` with ``sr, channels, frames``) and ``DIR/index.json`` (counts, classes, unreadable files).
``verify=decode`` decodes every file (catches truncation), ``header`` reads headers only. Interrupted runs
resume when re-run with the same arguments; ``overwrite=true`` starts over. Train with ``data.shards=DIR``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from recipes.keyvalue import parse_key_values


@dataclass
class MakeAudioShardsArgs:
    root: Optional[str] = None
    out: Optional[str] = None
    shard_size: int = 1000  # files per shard
    max_size_mb: Optional[float] = None  # also cap the shard size in MB
    seed: int = 0
    shuffle: bool = True
    verify: str = "decode"  # decode | header | none
    workers: int = -1  # reader processes; -1: min(8, CPUs), 0: none
    overwrite: bool = False
    progress: bool = True


def main(argv: list[str] | None = None) -> None:
    from core.data.folder_shards import ShardSettings
    from modalities.audio.shards import convert_audio_folder_to_shards

    args = parse_key_values(MakeAudioShardsArgs, argv, prog="make_shards", doc=__doc__ or "")
    if not args.root or not args.out:
        raise SystemExit("make_shards: root=FOLDER and out=DIR are required (see --help)")
    workers = min(8, os.cpu_count() or 1) if args.workers < 0 else args.workers
    settings = ShardSettings(shard_size=args.shard_size, max_size_mb=args.max_size_mb, seed=args.seed,
                             shuffle=args.shuffle, verify=args.verify, workers=workers)
    result = convert_audio_folder_to_shards(args.root, args.out, settings, progress=args.progress, overwrite=args.overwrite)
    last = len(result.shards) - 1
    print(f"{result.num_samples} clips in {len(result.shards)} shard(s) under {result.out_dir} "
          f"({len(result.classes)} classes, {result.num_skipped} unreadable skipped"
          f"{f', {result.resumed_shards} shard(s) reused from an earlier run' if result.resumed_shards else ''}) "
          f"in {result.elapsed_s:.1f}s")
    print(f"train with: data.shards='{result.out_dir}/shard-{{000000..{last:06d}}}.tar'  (or data.shards={result.out_dir})")


if __name__ == "__main__":
    main()
