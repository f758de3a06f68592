"""Evaluate an image tokenizer's reconstructions offline: rFID, PSNR (two definitions), SSIM, LPIPS.

    python -m recipes.image.evaluate checkpoint=outputs/run/export data.root=/data/imagenet/val
    python -m recipes.image.evaluate checkpoint=outputs/run/checkpoints/last.ckpt data.shards=/data/val-shards \\
        num_images=5000 resolution=256 steps=[1,10,50] batch_size=16 seed=0 out=outputs/eval device=auto
    python -m recipes.image.evaluate checkpoint=outputs/quickstart/export data.demo=true resolution=96 steps=[1,10]

``checkpoint`` is a save_pretrained folder or a Lightning .ckpt (EMA weights when present; use_ema=false
for the live ones). The N images are a seeded class-stratified subset (subset.txt lists them).
LPIPS needs ``lpips_vgg_weights=PATH``. Writes metrics.json and reconstructions.png under ``out``.
The loop is core.eval.command (any modality); see docs/image/data-and-eval.md for the metric definitions.
"""

from __future__ import annotations

from recipes.keyvalue import parse_key_values


def main(argv: list[str] | None = None) -> dict:
    from core.eval.command import evaluate_checkpoint, format_table
    from modalities.image.eval_suite import ImageEvalSettings
    from modalities.image.metrics import TABLE_COLUMNS

    settings = parse_key_values(ImageEvalSettings, argv, prog="evaluate", doc=__doc__ or "")
    report = evaluate_checkpoint(settings)
    print(format_table(report, TABLE_COLUMNS))
    print(f"metrics: {settings.out}/metrics.json   grid: {report['grid']}")
    return report


if __name__ == "__main__":
    main()
