"""Image folders to webdataset tar shards: :mod:`core.data.folder_shards` with image files and PIL checks.

Each sample stores the original encoded image bytes (``<key>.jpg`` / ``.png`` / ...) plus ``<key>.cls``.
"""

from __future__ import annotations

from pathlib import Path

from core.data.folder_shards import FolderShardFormat, ShardConversion, ShardSettings, convert_folder_to_shards as convert_files
from core.data.folder_shards import read_shard_index
from modalities.image.data import IMAGE_EXTENSIONS, check_image_bytes, log

__all__ = ["IMAGE_SHARDS", "ShardSettings", "ShardConversion", "convert_folder_to_shards", "read_shard_index"]

IMAGE_SHARDS = FolderShardFormat(noun="image", index_format="difftok-image-shards", extensions=IMAGE_EXTENSIONS,
                                 check=check_image_bytes, logger=log)


def convert_folder_to_shards(root: str | Path, out: str | Path, settings: ShardSettings = ShardSettings(), *, progress: bool = True,
                             overwrite: bool = False) -> ShardConversion:
    """Write ``out/shard-%06d.tar`` + ``out/index.json`` from the images under ``root`` (resumable; see
    :func:`core.data.folder_shards.convert_folder_to_shards`)."""
    return convert_files(root, out, IMAGE_SHARDS, settings, progress=progress, overwrite=overwrite)
