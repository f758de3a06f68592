"""Encode an image dataset once into webdataset shards of latents + labels (for training a generator).

    python -m recipes.image.cache_latents tokenizer=outputs/dito_b/export data.root=/data/imagenet/train out=/data/latents/in256
    python -m recipes.image.cache_latents tokenizer=EXPORT data.shards=/data/imagenet-shards/train out=DIR size=256 \\
        batch_size=64 flip=false dtype=float32 samples_per_shard=1000 device=auto num_workers=4 labels=folder
    python -m recipes.image.cache_latents tokenizer=outputs/quickstart/export data.demo=true labels=file size=128 out=outputs/demo-latents

Eval transform (shorter side to ``size``, center crop), tokenizer in eval mode, no_grad; ``bf16=true``
autocasts on CUDA. Writes ``DIR/latents-%06d.tar`` (per sample: ``mean.npy`` [+ ``std.npy`` for KL
tokenizers] [+ ``mean_flip.npy``/``std_flip.npy`` with ``flip=true``] + ``cls``) and ``DIR/index.json``.
``labels``: folder (class sub-folders -> sorted index; flat folder -> 0), file (each file its own
class) or none. Re-running with the same arguments resumes after the last complete shard; other
settings into the same ``out`` are refused (``overwrite=true`` replaces). The same as
``python -m recipes.cache_latents modality=image ...``; see docs/latent-cache.md.
"""

from __future__ import annotations

from recipes.cache_latents import run
from recipes.keyvalue import parse_key_values


def main(argv: list[str] | None = None) -> dict:
    """``recipes.cache_latents`` with ``modality=image`` and the image keys."""
    from modalities.image.latent_cache import ImageCacheLatentsSettings

    return run(parse_key_values(ImageCacheLatentsSettings, argv, prog="cache_latents", doc=__doc__ or ""))


if __name__ == "__main__":
    main()
