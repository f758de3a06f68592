"""Convert an image folder (ImageNet-style class folders or flat) into webdataset tar shards.

    python -m recipes.image.make_shards root=/data/imagenet/train out=/data/imagenet-shards/train
    python -m recipes.image.make_shards root=FOLDER out=DIR shard_size=1000 max_size_mb=512 seed=0 shuffle=true workers=8

Writes ``DIR/shard-000000.tar`` ... (original image bytes + ``.cls`` label per sample) and
``DIR/index.json`` (counts, classes, skipped files). Interrupted runs resume when re-run with the
same arguments; ``overwrite=true`` starts over. Train with ``data.shards=DIR`` (or the brace pattern
printed at the end).
"""

from __future__ import annotations

from modalities.image.shards import convert_folder_to_shards
from recipes.shards_command import run_make_shards

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    run_make_shards(convert_folder_to_shards, "images", argv, __doc__ or "")


if __name__ == "__main__":
    main()
