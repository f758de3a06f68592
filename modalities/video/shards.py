"""Video folders to webdataset tar shards: :mod:`core.data.folder_shards` with decord checks and json metadata.

Each sample stores the original encoded bytes (``<key>.mp4`` / ``.webm`` / ...), ``<key>.cls`` and
``<key>.json`` (``fps, frames, width, height``; ``frames`` counts the safely readable frames). Verification
(``verify=decode``) opens the video and reads its last safe frame, which catches truncated files.
"""

from __future__ import annotations

from pathlib import Path

from core.data.folder_shards import FolderShardFormat, ShardConversion, ShardSettings
from core.data.folder_shards import convert_folder_to_shards as convert_files
from modalities.video.data import VIDEO_EXTENSIONS, log
from modalities.video.reader import check_video_bytes, video_info_bytes

__all__ = ["VIDEO_SHARDS", "convert_video_folder"]

VIDEO_SHARDS = FolderShardFormat(noun="video", index_format="difftok-video-shards", extensions=VIDEO_EXTENSIONS,
                                 check=check_video_bytes, logger=log, metadata=video_info_bytes)


def convert_video_folder(root: str | Path, out: str | Path, settings: ShardSettings = ShardSettings(), *, progress: bool = True,
                         overwrite: bool = False) -> ShardConversion:
    """Write ``out/shard-%06d.tar`` + ``out/index.json`` from the videos under ``root`` (resumable; see
    :func:`core.data.folder_shards.convert_folder_to_shards`)."""
    return convert_files(root, out, VIDEO_SHARDS, settings, progress=progress, overwrite=overwrite)
