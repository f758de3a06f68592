"""End-of-run report for image tokenizer recipes: held-out reconstructions, loss plot, metrics JSON.

Two held-out sets are scored with every decode step count, from the same seeded noise:

- ``photos``: each held-out photograph at the evaluation resolution (``data.options.eval_size``
  center crop), the images of the reconstruction grid;
- ``crops``: every non-overlapping ``crop_size``² tile of the held-out photographs at the training
  scale (shorter side ``data.options.eval_resize``), enough samples for an rFID (bundled Inception)
  next to PSNR, SSIM and the high-frequency energy ratio (:mod:`modalities.image.sharpness`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from core.training.run import to_experiment_config
from core.training.skeleton import TrainResult

__all__ = ["CropSet", "MIN_RFID_CROPS", "held_out_crops", "score_crops", "crop_table", "write_reconstruction_report", "eval_history"]

MIN_RFID_CROPS = 64  # below this the Inception statistics of a few images say little


@dataclass(frozen=True)
class CropSet:
    """Which held-out tiles the report scores: ``size``² tiles of each held-out photograph resized to a
    shorter side of ``resize`` (0: the run's ``data.options.eval_resize``); ``rfid`` adds the bundled-Inception rFID."""

    size: int
    resize: int = 0
    rfid: bool = True


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


def held_out_crops(refs: Sequence[Any], *, size: int, resize: int) -> Tensor:
    """Every non-overlapping ``size``² tile (row-major, left to right) of each image in ``refs`` after
    a Lanczos resize of its shorter side to ``resize``: ``(N, 3, size, size)`` in [-1, 1].

    Raises:
        ValueError: ``resize < size`` (no tile fits) or no image was given.
    """
    from modalities.image.data import open_image, resize_shorter_side, to_tensor

    if resize < size:
        raise ValueError(f"held-out crops of {size}² need a shorter side of at least {size}, got resize={resize}")
    tiles = []
    for ref in refs:
        image = resize_shorter_side(open_image(ref), resize)
        width, height = image.size
        for top in range(0, height - size + 1, size):
            for left in range(0, width - size + 1, size):
                tiles.append(to_tensor(image.crop((left, top, left + size, top + size))))
    if not tiles:
        raise ValueError("no held-out images to crop; the run's evaluation set is empty")
    return torch.stack(tiles)


def _batches(x: Tensor, batch_size: int) -> Iterator[dict[str, Tensor]]:
    for start in range(0, len(x), batch_size):
        yield {"x": x[start : start + batch_size], "index": torch.arange(start, min(start + batch_size, len(x)))}


def score_crops(
    tokenizer: Any, crops: Tensor, steps: Sequence[int], *, seed: int = 0, rfid: bool = True, min_rfid_crops: int = MIN_RFID_CROPS,
    batch_size: int = 16,
) -> dict[str, Any]:
    """PSNR, SSIM, high-frequency energy ratios, decode seconds per crop and (with ``rfid`` and at
    least ``min_rfid_crops`` crops) rFID of ``tokenizer``'s reconstructions of ``crops`` with each
    step count: ``{"steps_<n>": {...}}`` plus ``num_crops``, ``rfid_note`` and the time of each phase."""
    from core.eval.reconstruction import evaluate_reconstructions
    from core.eval.runtime import PhaseTimer
    from modalities.image.fid import image_feature_extractor
    from modalities.image.metrics import ReconstructionMetrics
    from modalities.image.preview import EIGHT_BIT
    from modalities.image.sharpness import HighFrequencyEnergy

    timer = PhaseTimer(torch.device("cpu"))
    with_rfid = rfid and len(crops) >= max(2, min_rfid_crops)
    features = image_feature_extractor(torch.device("cpu")) if with_rfid else None
    evaluation = evaluate_reconstructions(
        tokenizer, _batches(crops, batch_size), steps=tuple(steps), metrics=lambda: [ReconstructionMetrics(), HighFrequencyEnergy()],
        seed=seed, quantization=EIGHT_BIT, features=features, timer=timer,
    )
    for n in steps:
        evaluation.metrics[f"steps_{n}"]["decode_s_per_crop"] = timer.totals[f"decode_steps_{n}"] / len(crops)
    return {
        **evaluation.metrics,
        "num_crops": len(crops),
        "rfid_note": "" if with_rfid or not rfid else f"rFID skipped: {len(crops)} crops, fewer than {min_rfid_crops}",
        "timing_s": timer.rounded(),
    }


def crop_table(rows: dict[str, dict[str, float]], num_crops: int) -> str:
    """A markdown table, one row per ``label -> metrics`` (one step count's entry of :func:`score_crops`;
    ``rfid`` is optional: nan when absent)."""
    note = "" if num_crops >= MIN_RFID_CROPS else f" (only {num_crops} crops: noisy)"
    lines = [
        f"| decode | PSNR (dB, mean per crop) | PSNR (dataset) | SSIM | rFID ({num_crops} crops){note} | HF ratio | decode s/crop |",
        "|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for label, m in rows.items():
        lines.append(
            f"| {label} | {m['psnr_mean_per_image']:.2f} | {m['psnr_dataset']:.2f} | {m['ssim']:.3f} | {m.get('rfid', nan):.1f} | "
            f"{m['hf_ratio']:.2f} | {m['decode_s_per_crop']:.4f} |"
        )
    return "\n".join(lines)


def _summary_line(n: int, m: dict[str, float]) -> str:
    line = f"  {n:>3} Euler step(s): PSNR {m['psnr_mean_per_image']:.2f} dB, SSIM {m['ssim']:.3f}, HF ratio {m['hf_ratio']:.2f}"
    return line + (f", rFID {m['rfid']:.1f}" if "rfid" in m else "")


def write_reconstruction_report(
    cfg: Any, result: TrainResult, steps: Sequence[int] = (1, 10, 50), crops: CropSet | None = None
) -> dict[str, Any]:
    """Evaluate the exported tokenizer on the held-out photographs (and, with ``crops``, on their
    tiles) with each decode step count; write ``reconstructions.png``, ``loss.png`` and
    ``metrics.json`` (incl. the in-training eval history) into the run's output directory; print a
    summary and return the report."""
    from torch.utils.data import DataLoader

    from core.eval.reconstruction import evaluate_reconstructions
    from core.pretrained import from_pretrained
    from modalities.image.metrics import ReconstructionMetrics
    from modalities.image.preview import EIGHT_BIT, save_grid
    from modalities.image.sharpness import HighFrequencyEnergy
    from recipes.report import plot_loss_curve, read_loss_curve, run_loss_logs

    cfg = to_experiment_config(cfg)
    out = Path(cfg.output_dir)
    tokenizer = from_pretrained(result.export_dir, modality="image").eval()
    dataset = result.datamodule.eval_dataset()
    evaluation = evaluate_reconstructions(
        tokenizer, DataLoader(dataset, batch_size=4, shuffle=False), steps=tuple(steps),
        metrics=lambda: [ReconstructionMetrics(), HighFrequencyEnergy()], seed=cfg.seed, quantization=EIGHT_BIT, preview_count=4,
    )
    metrics = evaluation.metrics
    save_grid(list(torch.stack(evaluation.previews, dim=1)), out / "reconstructions.png")  # originals row, then a row per step count
    crop_scores = None
    if crops is not None:
        resize = crops.resize or int(cfg.data.options.get("eval_resize") or cfg.data.size)
        tiles = held_out_crops(dataset.files, size=crops.size, resize=resize)
        crop_scores = {"crop_size": crops.size, "resize": resize, **score_crops(tokenizer, tiles, steps, seed=cfg.seed, rfid=crops.rfid)}
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
        "crops": crop_scores,
        "eval_history": eval_history(out),
        "loss_name": loss_key,
        "loss_first_last": [fm_values[0], fm_values[-1]] if fm_values else [],
        "loss_steps": [fm_steps[0], fm_steps[-1]] if fm_steps else [],
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    print(f"\n{cfg.name} finished in {result.wall_time_s:.0f}s of training ({result.global_step} steps)")
    print(f"held-out photographs ({', '.join(report['eval_images'])}):")
    for n in steps:
        print(_summary_line(n, metrics[f"steps_{n}"]))
    if crop_scores is not None:
        print(f"{crop_scores['num_crops']} held-out {crops.size}² crops:")
        for n in steps:
            print(_summary_line(n, crop_scores[f"steps_{n}"]))
    print(f"  reconstruction grid: {out / 'reconstructions.png'}")
    print(f"  loss plot:           {loss_png}")
    print(f"  metrics:             {out / 'metrics.json'}")
    print(f"  tokenizer export:    {result.export_dir}  (core.from_pretrained)")
    return report
