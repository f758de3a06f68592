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
settings into the same ``out`` are refused (``overwrite=true`` replaces). See docs/latent-cache.md.
"""

from __future__ import annotations

import json

from recipes.keyvalue import parse_key_values


def main(argv: list[str] | None = None) -> dict:
    from modalities.image.latent_cache import CacheLatentsSettings, cache_latents

    settings = parse_key_values(CacheLatentsSettings, argv, prog="cache_latents", doc=__doc__ or "")
    if not settings.tokenizer or not settings.out:
        raise SystemExit("cache_latents: tokenizer=EXPORT_DIR and out=DIR are required (see --help)")
    result, summary = cache_latents(settings)
    state = "complete" if result.complete else f"stopped early (max_shards={settings.max_shards}); re-run to resume"
    rate = f", {summary['encode_images_per_s']} img/s" if summary["encode_images_per_s"] else ""
    print(f"{summary['count']} latents {summary['latent_shape']} ({summary['dtype']}"
          f"{', +std' if summary['has_std'] else ''}{', +flip' if summary['flip'] else ''}) in {summary['shards']} shard(s) "
          f"under {summary['out']}: {summary['num_classes']} classes, {state}; {result.written_shards} shard(s) written, "
          f"{result.resumed_shards} reused, {summary['encoded_images']} images encoded in {summary['seconds']:.1f}s{rate}")
    if summary["skipped"]:
        print(f"{summary['skipped']} unreadable image(s) skipped")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
