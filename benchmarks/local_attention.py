"""SSDD windowed attention per call: the dense SDPA reference vs halo-tiled ``local`` at several tile sizes.

    python -m benchmarks.local_attention                # CPU, SSDD-M width (288, 4 heads), ±7 window
    python -m benchmarks.local_attention --device cuda --backends sdpa,local,flex,xformers

One ``LocalAttention`` module (random weights and bias table) on ``(batch, N, 288)`` tokens; every
backend runs the same inputs, repetitions interleaved, medians. The dense path is skipped above
``--dense-max`` tokens per side (its ``N × N`` bias grows with N²). Prints a table and writes JSON
(default ``benchmarks/results/local_attention_<device>.json``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from benchmarks.results_io import write_result
from modalities.image.ssdd.attention import LocalAttention, WindowLayout
from modalities.image.ssdd.window_tiles import HaloTiling

__all__ = ["main"]


def _layouts(side: int, device: torch.device, backends: list[str], tiles: list[int], dense_max: int) -> dict[str, WindowLayout]:
    layouts = {}
    for backend in backends:
        if backend == "sdpa" and side > dense_max:
            continue
        if backend == "local":
            for tile in tiles:
                tiling = HaloTiling.build(side, side, 7, device, tile)
                layouts[f"local (tile {tile})"] = WindowLayout(side, side, 7, "local", tiling=tiling)
        else:
            layouts[backend] = WindowLayout.build(side, side, 7, backend, device)
    return layouts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grids", default="16:4,32:4,32:1,64:1,128:1", help="side:batch pairs (tokens per side)")
    parser.add_argument("--backends", default="sdpa,local")
    parser.add_argument("--tiles", default="4,8,16", help="query tile sides of the local backend")
    parser.add_argument("--dense-max", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    module = LocalAttention(288, 4, window=8).to(device)
    with torch.no_grad():
        module.relative_bias_table.normal_()
    rows = []
    for pair in args.grids.split(","):
        side, batch = (int(v) for v in pair.split(":"))
        x = torch.randn(batch, side * side, 288, device=device)
        layouts = _layouts(side, device, args.backends.split(","), [int(t) for t in args.tiles.split(",")], args.dense_max)
        times: dict[str, list[float]] = {name: [] for name in layouts}
        with torch.no_grad():
            for layout in layouts.values():
                module(x, layout)  # warm-up (and compilation)
            for _ in range(args.repeats):
                for name, layout in layouts.items():
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    module(x, layout)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times[name].append(time.perf_counter() - start)
        for name, values in times.items():
            rows.append({"grid": side, "batch": batch, "backend": name, "median_ms": round(1000 * statistics.median(values), 2)})
            print(f"{side:>4}² tokens, batch {batch}: {name:<16} {rows[-1]['median_ms']:>9.2f} ms", flush=True)
    result = {"benchmark": "local_attention", "date": date.today().isoformat(), "device": str(device),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "repeats": args.repeats, "rows": rows}
    write_result(result, Path(args.json or Path(__file__).parent / "results" / f"local_attention_{device.type}.json"))
    return result


if __name__ == "__main__":
    main()
