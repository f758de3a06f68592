"""Convert an image folder (ImageNet-style class folders or flat) into webdataset tar shards.

    python -m recipes.image.make_shards root=/data/imagenet/train out=/data/imagenet-shards/train
    python -m recipes.image.make_shards root=FOLDER out=DIR shard_size=1000 max_size_mb=512 seed=0 shuffle=true workers=8

Writes ``DIR/shard-000000.tar`` ... (original image bytes + ``.cls`` label per sample) and
``DIR/index.json`` (counts, classes, skipped files). Interrupted runs resume when re-run with the
same arguments; ``overwrite=true`` starts over. Train with ``data.shards=DIR`` (or the brace pattern
printed at the end).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from modalities.image.shards import IMAGE_SHARDS
    from recipes.shards_command import make_shards_main

    make_shards_main(argv, IMAGE_SHARDS, doc=__doc__ or "")


if __name__ == "__main__":
    main()
