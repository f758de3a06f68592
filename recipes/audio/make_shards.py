"""Convert a folder of audio files (wav / flac / ogg / mp3; class sub-folders or flat) into webdataset tar shards.

    python -m recipes.audio.make_shards root=/data/speech/train out=/data/speech-shards/train
    python -m recipes.audio.make_shards root=FOLDER out=DIR shard_size=1000 max_size_mb=512 seed=0 shuffle=true workers=8

Writes ``DIR/shard-000000.tar`` ... (the ORIGINAL file bytes, never re-encoded or resampled, + ``.cls`` +
``.json`` with ``sr, channels, frames``) and ``DIR/index.json`` (counts, classes, unreadable files).
``verify=decode`` decodes every file (catches truncation), ``header`` reads headers only. Interrupted runs
resume when re-run with the same arguments; ``overwrite=true`` starts over. Train with ``data.shards=DIR``.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from modalities.audio.shards import convert_audio_folder_to_shards
    from recipes.shards_command import run_make_shards

    run_make_shards(convert_audio_folder_to_shards, "audio files", argv, __doc__ or "")


if __name__ == "__main__":
    main()
