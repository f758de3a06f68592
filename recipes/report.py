"""Helpers shared by recipes for their end-of-run reports (loss plot from the CSV log)."""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["read_loss_curve", "plot_loss_curve"]


def read_loss_curve(metrics_csv: str | Path, key: str = "train/fm") -> tuple[list[int], list[float]]:
    """(steps, values) of one logged scalar from Lightning's CSV log."""
    steps, values = [], []
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get(key) not in (None, ""):
                steps.append(int(float(row["step"])))
                values.append(float(row[key]))
    return steps, values


def plot_loss_curve(metrics_csv: str | Path, path: str | Path, key: str = "train/fm", smooth: int = 20) -> Path:
    """Write a PNG of the raw and moving-average loss against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, values = read_loss_curve(metrics_csv, key)
    if not steps:
        raise ValueError(f"no '{key}' values in {metrics_csv}")
    window = max(1, min(smooth, len(values)))
    averaged = [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(steps, values, alpha=0.3, label=key)
    ax.plot(steps, averaged, label=f"moving average ({window})")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching MSE")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
