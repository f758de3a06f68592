"""Evaluate an image latent generator: gFID of decoded samples against reference images.

    python -m recipes.image.evaluate_generator generator=outputs/latent_dit_xl/export \\
        reference.root=/data/imagenet/train num_reference=50000 num_images=50000 batch_size=64
    python -m recipes.image.evaluate_generator generator=outputs/latent_dit_cpu/export reference.demo=true \\
        num_images=64 resolution=64 steps=50 decode_steps=10

Defaults follow DiTo: 200 Euler steps with CFG 2.0 (the generator's own settings), 50 decode steps
(the tokenizer's), class-balanced labels, per-image seeds. ``tokenizer=`` overrides the tokenizer
recorded in the generator. Writes metrics.json and samples.png (and out/samples/*.png with
save_images=true) under ``out``. See docs/latent-api.md.
"""

from __future__ import annotations

from recipes.keyvalue import parse_key_values


def main(argv: list[str] | None = None) -> dict:
    from modalities.image.generation_eval import GenerationEvalSettings, evaluate_generator

    settings = parse_key_values(GenerationEvalSettings, argv, prog="evaluate_generator", doc=__doc__ or "")
    report = evaluate_generator(settings)
    print(f"gFID {report['gfid']:.3f}  ({report['num_images']} samples vs {report['num_reference']} reference images, "
          f"{report['steps']} steps, CFG {report['cfg_scale']}, decode {report['decode_steps']} steps)")
    print(f"metrics: {settings.out}/metrics.json   samples: {settings.out}/samples.png")
    return report


if __name__ == "__main__":
    main()
