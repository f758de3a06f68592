"""The parts every decode benchmark shares after timing: command-line flags, per-entry medians,
the printed table and the JSON header (machine, threads, torch, mode)."""

from __future__ import annotations

import argparse
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import torch

__all__ = ["Column", "leading_columns", "add_timing_args", "setup_device", "median_rows", "print_table", "run_header"]


@dataclass(frozen=True)
class Column:
    """One printed column: ``header``, the row key it shows and its format spec (width first)."""

    header: str
    key: str
    spec: str


def leading_columns(name_width: int) -> list[Column]:
    """The columns every table starts with: model name, solver steps, parameters."""
    return [Column("model", "model", f"<{name_width}"), Column("steps", "steps", ">6"), Column("params (M)", "params_M", ">12.2f")]


def add_timing_args(parser: argparse.ArgumentParser, *, repeats: int) -> None:
    """The flags every decode benchmark takes: device, batch, repetitions, warm-up, threads, JSON path."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=None, help="default: the benchmark's CPU / GPU batch")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--long-repeats", type=int, default=1, help="repetitions for entries with more than 10 steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--json", default=None)


def setup_device(args: argparse.Namespace) -> torch.device:
    """The device of ``--device``, with ``--threads`` applied and TF32 matmuls on a GPU."""
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def median_rows(entries: Sequence[Any], times: dict[str, list[float]], extra: Callable[[Any, float], dict[str, Any]]) -> list[dict[str, Any]]:
    """One JSON row per entry (``name``, ``steps``, ``params`` attributes): its median seconds and every
    repetition, plus ``extra(entry, median_s)`` (throughput and the ratio to the reference)."""
    rows = []
    for entry in entries:
        median = statistics.median(times[entry.name])
        rows.append({
            "model": entry.name, "steps": entry.steps, "params_M": round(entry.params / 1e6, 2), **extra(entry, median),
            "median_s": round(median, 4), "repeats": len(times[entry.name]), "all_s": [round(t, 4) for t in times[entry.name]],
        })
    return rows


def print_table(title: str, columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> None:
    """Print ``title`` and the rows under right-aligned ``columns`` (the first left-aligned)."""
    widths = [int("".join(ch for ch in c.spec.split(".")[0] if ch.isdigit()) or len(c.header)) for c in columns]
    header = "".join(f"{c.header:<{w}}" if i == 0 else f"{c.header:>{w}}" for i, (c, w) in enumerate(zip(columns, widths)))
    print(f"\n{title}\n{header}\n{'-' * len(header)}")
    for row in rows:
        print("".join(f"{row[c.key]:{c.spec}}" for c in columns))


def run_header(benchmark: str, device: torch.device, mode: str) -> dict[str, Any]:
    """The JSON fields that say where and how a benchmark ran."""
    gpu = device.type == "cuda"
    return {
        "benchmark": benchmark, "date": date.today().isoformat(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if gpu else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "mode": mode,
    }
