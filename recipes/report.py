"""Helpers shared by recipes for their end-of-run reports (loss plot from the CSV log)."""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["read_loss_curve", "plot_loss_curve", "run_loss_logs", "logged_columns"]


def _as_files(metrics_csv: str | Path | list[Path]) -> list[Path]:
    return metrics_csv if isinstance(metrics_csv, list) else [Path(metrics_csv)]


def read_loss_curve(metrics_csv: str | Path | list[Path], key: str = "train/fm") -> tuple[list[int], list[float]]:
    """(steps, values) of one logged scalar from Lightning CSV logs (several files: a resumed run)."""
    files = _as_files(metrics_csv)
    by_step: dict[int, float] = {}
    for path in files:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get(key) not in (None, ""):
                    by_step[int(float(row["step"]))] = float(row[key])  # a later file wins for repeated steps
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def run_loss_logs(output_dir: str | Path) -> list[Path]:
    """Every CSV log of a run, oldest first (one ``version_N`` folder per start or resume)."""
    files = list(Path(output_dir).glob("logs/csv/version_*/metrics.csv"))
    return sorted(files, key=lambda p: int(p.parent.name.split("_")[-1]))


def logged_columns(files: list[Path], prefix: str) -> list[str]:
    """Names of the logged columns starting with ``prefix`` in any of ``files``."""
    names: set[str] = set()
    for path in files:
        with open(path, newline="") as handle:
            names.update(k for k in (csv.DictReader(handle).fieldnames or []) if k.startswith(prefix))
    return sorted(names, key=lambda k: (len(k), k))


def plot_loss_curve(
    metrics_csv: str | Path | list[Path], path: str | Path, key: str = "train/fm", smooth: int = 20, eval_prefix: str = "eval/psnr"
) -> Path:
    """Write a PNG of the raw and moving-average loss against the step, plus a second panel with
    the held-out PSNR curves (``eval/psnr_steps<n>`` columns) when the run logged any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = _as_files(metrics_csv)
    steps, values = read_loss_curve(files, key)
    if not steps:
        raise ValueError(f"no '{key}' values in {files}")
    eval_keys = logged_columns(files, eval_prefix)
    fig, axes = plt.subplots(1, 2 if eval_keys else 1, figsize=(11 if eval_keys else 6, 3.5), dpi=120, squeeze=False)
    ax = axes[0][0]
    window = max(1, min(smooth, len(values)))
    averaged = [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]
    ax.plot(steps, values, alpha=0.3, label=key)
    ax.plot(steps, averaged, label=f"moving average ({window})")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching MSE")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    if eval_keys:
        ax = axes[0][1]
        for name in eval_keys:
            eval_steps, eval_values = read_loss_curve(files, name)
            label = name.removeprefix(eval_prefix + "_").replace("steps", "") + " Euler step(s)"
            ax.plot(eval_steps, eval_values, marker="o", label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("held-out PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
