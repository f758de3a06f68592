"""Compute dataset latent statistics (shift/scale) of an image tokenizer and store them in it.

    python -m recipes.image.latent_stats tokenizer=outputs/run/export data.root=/data/imagenet/train num_images=1000
    python -m recipes.image.latent_stats tokenizer=outputs/run/export data.shards=/data/shards size=256 batch_size=32 out=outputs/run/export-stats
    python -m recipes.image.latent_stats tokenizer=outputs/quickstart/export data.demo=true size=96

KL tokenizers: latents are drawn with latent_dist.sample() (seeded by ``seed``); deterministic
(LayerNorm) ones use mode(). The N images are a seeded class-stratified subset, eval transform
(shorter side to ``size``, center crop). The tokenizer's config.json is updated in place
(atomically; weights untouched) unless ``out=DIR`` names a new folder; latent_stats.json is
written next to it. Generators then train on tok.normalize_latents(z). The same as
``python -m recipes.latent_stats modality=image ...``; see docs/latent-api.md.
"""

from __future__ import annotations

from recipes.keyvalue import parse_key_values
from recipes.latent_stats import run


def main(argv: list[str] | None = None) -> dict:
    """``recipes.latent_stats`` with ``modality=image`` and the image keys."""
    from modalities.image.latent_stats import ImageLatentStatsSettings

    return run(parse_key_values(ImageLatentStatsSettings, argv, prog="latent_stats", doc=__doc__ or ""))


if __name__ == "__main__":
    main()
