"""Audio folders to webdataset tar shards: :mod:`core.data.folder_shards` with soundfile checks.

Each sample stores the ORIGINAL encoded bytes (``<key>.flac`` / ``.wav`` / ``.ogg`` / ``.mp3``, never
re-encoded or resampled), ``<key>.cls`` and ``<key>.json`` = ``{"sr", "channels", "frames"}`` read from the
file's header. Unreadable files are skipped and counted; too-short files are kept (the minimum length is
a training option, applied when the shards are read).
"""

from __future__ import annotations

from pathlib import Path

from core.data.folder_shards import FolderShardFormat, ShardConversion, ShardSettings, convert_folder_to_shards as convert_files
from modalities.audio.data import AUDIO_EXTENSIONS, check_audio_bytes
from modalities.audio.io import audio_info, log

__all__ = ["AUDIO_SHARDS", "convert_audio_folder_to_shards"]

AUDIO_SHARDS = FolderShardFormat(noun="clip", index_format="difftok-audio-shards", extensions=AUDIO_EXTENSIONS,
                                 check=check_audio_bytes, logger=log, metadata=audio_info)


def convert_audio_folder_to_shards(root: str | Path, out: str | Path, settings: ShardSettings = ShardSettings(), *,
                                   progress: bool = True, overwrite: bool = False) -> ShardConversion:
    """Write ``out/shard-%06d.tar`` + ``out/index.json`` from the audio files under ``root`` (resumable; see
    :func:`core.data.folder_shards.convert_folder_to_shards`)."""
    return convert_files(root, out, AUDIO_SHARDS, settings, progress=progress, overwrite=overwrite)
