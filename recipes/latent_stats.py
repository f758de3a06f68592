"""Compute dataset latent statistics (shift/scale) of a tokenizer of any modality and store them in it.

    python -m recipes.latent_stats modality=image tokenizer=outputs/run/export data.root=/data/imagenet/train num_images=1000
    python -m recipes.latent_stats modality=NAME --help      # that modality's keys

KL tokenizers: latents are drawn with latent_dist.sample() (seeded by ``seed``); deterministic
(LayerNorm) ones use mode(). The samples are the modality's evaluation selection
(``Modality.select_eval_samples``). The tokenizer's config.json is updated in place (atomically;
weights untouched) unless ``out=DIR`` names a new folder; latent_stats.json is written next to it.
Generators then train on tok.normalize_latents(z). See docs/latent-api.md.
"""

from __future__ import annotations

import sys

from recipes.modality_tool import parse_tool_settings


def run(settings) -> dict:
    """Compute, write and print the stats of ``settings`` (a ``LatentStatsSettings`` subclass)."""
    from core.latent.stats_command import compute_dataset_latent_stats, format_stats

    report = compute_dataset_latent_stats(settings)
    print(format_stats(report))
    return report


def main(argv: list[str] | None = None) -> dict:
    args = list(sys.argv[1:] if argv is None else argv)
    return run(parse_tool_settings("latent_stats", args, prog="latent_stats", doc=__doc__ or ""))


if __name__ == "__main__":
    main()
