"""Encode a dataset of any modality once into webdataset shards of latents + labels (for training a generator).

    python -m recipes.cache_latents modality=image tokenizer=outputs/dito_b/export data.root=/data/imagenet/train out=/data/latents/in256
    python -m recipes.cache_latents modality=NAME --help      # that modality's keys

The samples and their order and labels come from the modality (``Modality.cache_inputs``); the
tokenizer runs in eval mode under no_grad (``bf16=true`` autocasts on CUDA). ``flip=true`` also
stores latents of the sample reversed along ``flip_axis`` (default -1: an image's horizontal flip).
Writes ``DIR/latents-%06d.tar`` and ``DIR/index.json``; re-running with the same arguments resumes
after the last complete shard; other settings into the same ``out`` are refused (``overwrite=true``
replaces). See docs/latent-cache.md.
"""

from __future__ import annotations

import json
import sys

from recipes.modality_tool import parse_tool_settings


def run(settings) -> dict:
    """Encode ``settings`` (a ``CacheLatentsSettings`` subclass), print a summary and return it."""
    from core.latent.cache_command import cache_latents

    if not settings.tokenizer or not settings.out:
        raise SystemExit("cache_latents: tokenizer=EXPORT_DIR and out=DIR are required (see --help)")
    result, summary = cache_latents(settings)
    state = "complete" if result.complete else f"stopped early (max_shards={settings.max_shards}); re-run to resume"
    rate = f", {summary['encode_images_per_s']} samples/s" if summary["encode_images_per_s"] else ""
    print(f"{summary['count']} latents {summary['latent_shape']} ({summary['dtype']}"
          f"{', +std' if summary['has_std'] else ''}{', +flip' if summary['flip'] else ''}) in {summary['shards']} shard(s) "
          f"under {summary['out']}: {summary['num_classes']} classes, {state}; {result.written_shards} shard(s) written, "
          f"{result.resumed_shards} reused, {summary['encoded_images']} samples encoded in {summary['seconds']:.1f}s{rate}")
    if summary["skipped"]:
        print(f"{summary['skipped']} unreadable sample(s) skipped")
    print(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = list(sys.argv[1:] if argv is None else argv)
    return run(parse_tool_settings("cache_latents", args, prog="cache_latents", doc=__doc__ or ""))


if __name__ == "__main__":
    main()
