"""End-of-run report for image tokenizer recipes: held-out reconstructions, loss plot, metrics JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.training.run import to_experiment_config
from core.training.skeleton import TrainResult

__all__ = ["write_reconstruction_report", "eval_history"]


def eval_history(output_dir: str | Path) -> list[dict[str, float]]:
    """Held-out metrics logged during training (``eval/*`` columns of the CSV logs), one row per step."""
    from recipes.report import logged_columns, read_loss_curve, run_loss_logs

    files = run_loss_logs(output_dir)
    if not files:
        return []
    rows: dict[int, dict[str, float]] = {}
    for name in logged_columns(files, "eval/"):
        for step, value in zip(*read_loss_curve(files, name)):
            rows.setdefault(step, {"step": step})[name.removeprefix("eval/")] = value
    return [rows[s] for s in sorted(rows)]


def write_reconstruction_report(cfg: Any, result: TrainResult, steps: Sequence[int] = (1, 10, 50)) -> dict[str, Any]:
    """Evaluate the exported tokenizer on the held-out images with each decode step count and write
    ``reconstructions.png``, ``loss.png`` and ``metrics.json`` (incl. the in-training eval history)
    into the run's output directory; print a summary and return the report."""
    import torch
    from torch.utils.data import DataLoader

    from core.eval.reconstruction import evaluate_reconstructions
    from core.pretrained import from_pretrained
    from modalities.image.metrics import ReconstructionMetrics
    from modalities.image.preview import EIGHT_BIT, save_grid
    from recipes.report import plot_loss_curve, read_loss_curve, run_loss_logs

    cfg = to_experiment_config(cfg)
    out = Path(cfg.output_dir)
    tokenizer = from_pretrained(result.export_dir, modality="image").eval()
    dataset = result.datamodule.eval_dataset()
    evaluation = evaluate_reconstructions(
        tokenizer, DataLoader(dataset, batch_size=4, shuffle=False), steps=tuple(steps), metrics=lambda: [ReconstructionMetrics()],
        seed=cfg.seed, quantization=EIGHT_BIT, preview_count=4,
    )
    metrics = evaluation.metrics
    save_grid(list(torch.stack(evaluation.previews, dim=1)), out / "reconstructions.png")  # originals row, then a row per step count
    logs = run_loss_logs(out)
    loss_key = "train/distill_mse" if cfg.distill.enabled else "train/fm"  # a distillation run logs no FM loss
    loss_png = plot_loss_curve(logs, out / "loss.png", key=loss_key) if logs else None
    fm_steps, fm_values = read_loss_curve(logs, loss_key) if logs else ([], [])
    report = {
        "experiment": cfg.name,
        "global_step": result.global_step,
        "train_wall_time_s": round(result.wall_time_s, 1),
        "eval_images": [f.stem for f in dataset.files],  # files or shard members
        "eval_resolution": cfg.data.options.get("eval_size", cfg.data.size),
        "reconstruction": metrics,
        "eval_history": eval_history(out),
        "loss_name": loss_key,
        "loss_first_last": [fm_values[0], fm_values[-1]] if fm_values else [],
        "loss_steps": [fm_steps[0], fm_steps[-1]] if fm_steps else [],
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    print(f"\n{cfg.name} finished in {result.wall_time_s:.0f}s of training ({result.global_step} steps)")
    for n in steps:
        m = metrics[f"steps_{n}"]
        print(f"  held-out PSNR {m['psnr_mean_per_image']:.2f} dB, SSIM {m['ssim']:.3f} with {n} Euler step(s)")
    print(f"  reconstruction grid: {out / 'reconstructions.png'}")
    print(f"  loss plot:           {loss_png}")
    print(f"  metrics:             {out / 'metrics.json'}")
    print(f"  tokenizer export:    {result.export_dir}  (core.from_pretrained)")
    return report
