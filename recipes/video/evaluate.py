"""Evaluate a video tokenizer's reconstructions offline: per-frame PSNR / SSIM / LPIPS, frame-0 PSNR,
temporal consistency and rFVD.

    python -m recipes.video.evaluate checkpoint=outputs/run/export data.root=/data/videos/val num_videos=100
    python -m recipes.video.evaluate checkpoint=outputs/run/export data.shards=/data/video-shards/val \\
        resolution=256 num_frames=17 frame_stride=4 steps=[1,10,50] i3d=/weights/i3d_torchscript.pt
    python -m recipes.video.evaluate checkpoint=outputs/video_quickstart/export data.demo=true resolution=32 num_frames=9

``checkpoint`` is a save_pretrained folder or a Lightning .ckpt. Each video gives its first clip of
``num_frames`` frames ``frame_stride`` apart (``num_frames`` must fit the tokenizer's frame rule, e.g.
1 + 4k). Per-frame LPIPS needs ``lpips_vgg_weights=PATH``, rFVD ``i3d=PATH`` (see docs/video-data.md).
Writes metrics.json, reconstructions.png (frame strips) and reconstructions.gif under ``out``.
"""

from __future__ import annotations

from recipes.keyvalue import parse_key_values


def main(argv: list[str] | None = None) -> dict:
    from core.eval.command import evaluate_checkpoint, format_table
    from modalities.video.eval_suite import VideoEvalSettings
    from modalities.video.metrics import VIDEO_TABLE_COLUMNS

    settings = parse_key_values(VideoEvalSettings, argv, prog="evaluate", doc=__doc__ or "")
    report = evaluate_checkpoint(settings)
    print(format_table(report, VIDEO_TABLE_COLUMNS))
    print(f"metrics: {settings.out}/metrics.json   grid: {report['grid']}")
    return report


if __name__ == "__main__":
    main()
