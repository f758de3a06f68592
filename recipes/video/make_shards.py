"""Convert a folder of videos (class sub-folders or flat) into webdataset tar shards.

    python -m recipes.video.make_shards root=/data/videos/train out=/data/video-shards/train
    python -m recipes.video.make_shards root=FOLDER out=DIR shard_size=200 max_size_mb=1024 seed=0 shuffle=true workers=8

Writes ``DIR/shard-000000.tar`` ... (original video bytes + ``.cls`` label + ``.json`` with fps, frames,
width, height) and ``DIR/index.json`` (counts, classes, skipped files). ``verify=decode`` opens every video
and reads its last safe frame (``header``: open only). Interrupted runs resume when re-run with the same
arguments; ``overwrite=true`` starts over. Train with ``data.shards=DIR``. See docs/video-data.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from recipes.shards_command import MakeShardsArgs, run_make_shards


@dataclass
class MakeVideoShardsArgs(MakeShardsArgs):
    shard_size: int = 200  # videos per shard (videos are larger than images)


def main(argv: list[str] | None = None) -> dict:
    from modalities.video.shards import convert_video_folder

    result = run_make_shards(convert_video_folder, "videos", argv, __doc__ or "", MakeVideoShardsArgs)
    return {"num_samples": result.num_samples, "shards": len(result.shards), "skipped": result.num_skipped,
            "resumed_shards": result.resumed_shards}


if __name__ == "__main__":
    main()
