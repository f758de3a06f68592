"""CPU/GPU speed of the core training step, encode and decode for a recipe's tokenizer.

    python -m benchmarks.core_speed                       # quickstart tokenizer, defaults
    python -m benchmarks.core_speed --batch 16 --size 32 --decode-size 96 --repeats 7

Measurements are interleaved across repetitions and reported as medians (seconds), so machine
noise hits every measurement alike. Writes JSON (default ``benchmarks/results/core_speed.json``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from benchmarks.results_io import write_result
from core.builder import build_autoencoder


def _timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes.image.quickstart", help="module with build_config()")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="training crop size")
    parser.add_argument("--decode-size", type=int, default=96)
    parser.add_argument("--decode-batch", type=int, default=2)
    parser.add_argument("--decode-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/core_speed.json")
    args = parser.parse_args(argv)

    import importlib

    cfg = importlib.import_module(args.recipe).build_config()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    ae = build_autoencoder(cfg.model).to(device)
    opt = torch.optim.AdamW(ae.parameters(), lr=1e-4)
    x = torch.rand(args.batch, cfg.model.in_channels, *([args.size] * cfg.model.spatial_dims), device=device) * 2 - 1
    xd = torch.rand(args.decode_batch, cfg.model.in_channels, *([args.decode_size] * cfg.model.spatial_dims), device=device) * 2 - 1

    def train_step():
        loss = ae.training_losses(x)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def encode():
        with torch.no_grad():
            ae.encode(xd)

    z = ae.encode(xd).latent_dist.mode().detach()

    def decode():
        ae.decode(z, args.decode_steps, generator=torch.Generator(device=device).manual_seed(0))

    cases = {"train_step": train_step, "encode": encode, "decode": decode}
    for fn in cases.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(_timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [
        ("train_step", f"batch {args.batch} @ {args.size}", med["train_step"], args.batch / med["train_step"], "samples/s"),
        ("encode", f"batch {args.decode_batch} @ {args.decode_size}", med["encode"], args.decode_batch / med["encode"], "samples/s"),
        ("decode", f"batch {args.decode_batch} @ {args.decode_size}, {args.decode_steps} Euler steps", med["decode"],
         args.decode_batch * args.decode_steps / med["decode"], "sample-NFE/s"),
    ]
    print(f"{'case':<12} {'setting':<36} {'median s':>9} {'throughput':>12}")
    for name, setting, sec, thr, unit in rows:
        print(f"{name:<12} {setting:<36} {sec:>9.3f} {thr:>8.1f} {unit}")
    params = {
        "encoder_M": sum(p.numel() for p in ae.encoder.parameters()) / 1e6,
        "decoder_M": sum(p.numel() for p in ae.decoder.parameters()) / 1e6,
    }
    result = {
        "date": date.today().isoformat(), "device": device, "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "recipe": args.recipe,
        "params": params, "args": vars(args), "median_seconds": med, "all_seconds": times,
    }
    out = Path(args.out)
    write_result(result, out)
    return result


if __name__ == "__main__":
    main()
