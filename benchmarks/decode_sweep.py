"""Decode seconds and peak memory across resolutions, one (model, size, tiling) per subprocess.

    python -m benchmarks.decode_sweep                                  # 256² .. 2048², CPU, batch 1
    python -m benchmarks.decode_sweep --sizes 256,512 --models ssdd-m,sd-vae
    python -m benchmarks.decode_sweep --one ssdd-m 1024 0              # the worker: one decode, JSON on stdout

Each measurement runs in a fresh ``python -m benchmarks.decode_sweep --one MODEL SIZE TILE`` process
so its peak RSS (``getrusage``'s ``ru_maxrss``) belongs to that decode alone; ``baseline_gb`` is the
RSS after building the model and inputs, before decoding, and ``decode_gb`` the difference. One decode per process (after a 128²
warm-up of the same model), random weights, batch 1. ``TILE`` is the latent tile (0 = untiled):
SSDD decodes through ``core.tiling`` (overlap ``tile // 4``); the SD-VAE reference (diffusers'
``AutoencoderKL`` with the SD config) through its own ``enable_tiling()`` with the same tile and
overlap factor 0.25. Entries whose estimated peak exceeds ``--max-gb`` are skipped (marked so in the
table) rather than risking the machine. Prints a table and writes JSON
(default ``benchmarks/results/decode_sweep_<device>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

from benchmarks.results_io import write_result

__all__ = ["decode_once", "main"]

MODELS = ("ssdd-m", "ssdd-s", "sd-vae")


def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1e9


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def _decoder(model: str, device: torch.device, attention: str):
    """``decode(z) -> image`` for ``model`` with ``tile`` latents (0 = untiled)."""
    if model == "sd-vae":
        from benchmarks.decode_throughput import _sd_vae_decoder

        vae = _sd_vae_decoder(device)

        def decode_vae(z: torch.Tensor, noise: torch.Tensor, tile: int) -> torch.Tensor:
            if tile:
                vae.enable_tiling()
                vae.tile_latent_min_size, vae.tile_sample_min_size = tile, 8 * tile
            else:
                vae.disable_tiling()
            return vae.decode(z).sample

        return decode_vae
    from core.builder import build_autoencoder
    from modalities.image.ssdd.config import ssdd_config

    size = model.split("-")[1]
    tok = build_autoencoder(ssdd_config(size, lpips_weight=0, repa_weight=0, decoder_kwargs={"attention_backend": attention}))
    tok = tok.to(device).eval()

    def decode_ssdd(z: torch.Tensor, noise: torch.Tensor, tile: int) -> torch.Tensor:
        return tok.decode(z, 1, noise=noise, tile=tile or None).sample

    return decode_ssdd


def decode_once(model: str, size: int, tile: int, *, device: str = "cpu", attention: str = "auto") -> dict:
    """Build ``model``, warm it up at 128², decode one ``size``² image once; seconds and memory."""
    dev = torch.device(device)
    decode = _decoder(model, dev, attention)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        decode(torch.randn(1, 4, 16, 16, generator=generator).to(dev), torch.randn(1, 3, 128, 128).to(dev), 0)
        z = torch.randn(1, 4, size // 8, size // 8, generator=generator).to(dev)
        noise = torch.randn(1, 3, size, size, generator=generator).to(dev)
        baseline = _rss_gb()
        load = os.getloadavg()[0]  # the machine is shared: record how busy it was
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        image = decode(z, noise, tile)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - start
    row = {"model": model, "size": size, "tile": tile, "seconds": round(seconds, 3), "baseline_gb": round(baseline, 3),
           "peak_rss_gb": round(_peak_rss_gb(), 3),
           "decode_gb": round(_peak_rss_gb() - baseline, 3), "load_avg_1min": round(load, 2), "finite": bool(torch.isfinite(image).all())}
    if dev.type == "cuda":
        row["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated(dev) / 1e9, 3)
    return row


def _estimate_gb(rows: list[dict], model: str, size: int, tile: int) -> float | None:
    """Peak RSS of a (model, size, tile) decode, extrapolated from the largest measured size of the
    same (model, tile): the baseline plus the decode's own memory scaled with pixels (untiled) or
    kept (tiled: bounded by the tile)."""
    done = [r for r in rows if r["model"] == model and r["tile"] == tile and "peak_rss_gb" in r]
    if not done:
        return None
    last = max(done, key=lambda r: r["size"])
    return last["baseline_gb"] + last["decode_gb"] * ((size / last["size"]) ** 2 if not tile else 1.0)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "SIZE", "TILE"), help="worker: one decode, JSON on stdout")
    parser.add_argument("--sizes", default="256,512,1024,2048")
    parser.add_argument("--models", default="ssdd-m,sd-vae", help=f"comma-separated, from {MODELS}")
    parser.add_argument("--tile", type=int, default=64, help="latent tile of the tiled runs (64 = 512 px at f8)")
    parser.add_argument("--untiled-max", type=int, default=1024, help="largest size decoded without tiling")
    parser.add_argument("--tiled-min", type=int, default=1024, help="smallest size also decoded with tiling")
    parser.add_argument("--max-gb", type=float, default=8.0, help="skip entries estimated above this peak RSS")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--attention", default="auto", help="SSDD attention backend")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        model, size, tile = args.one[0], int(args.one[1]), int(args.one[2])
        print(json.dumps(decode_once(model, size, tile, device=args.device, attention=args.attention)))
        return None

    rows: list[dict] = []
    result = {"benchmark": "decode_sweep", "date": date.today().isoformat(), "device": args.device,
              "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "attention": args.attention, "tile": args.tile, "rows": rows}
    out = Path(args.json or Path(__file__).parent / "results" / f"decode_sweep_{args.device}.json")
    for size in (int(s) for s in args.sizes.split(",")):
        for model in args.models.split(","):
            tiles = ([0] if size <= args.untiled_max else []) + ([args.tile] if size >= args.tiled_min else [])
            for tile in tiles:
                estimate = _estimate_gb(rows, model, size, tile)
                if estimate is not None and estimate > args.max_gb:
                    rows.append({"model": model, "size": size, "tile": tile, "skipped": f"estimated {estimate:.1f} GB > --max-gb"})
                    print(f"  skip {model} {size}² tile {tile}: estimated {estimate:.1f} GB", flush=True)
                    continue
                command = [sys.executable, "-m", "benchmarks.decode_sweep", "--one", model, str(size), str(tile),
                           "--device", args.device, "--attention", args.attention]
                if args.threads:
                    command += ["--threads", str(args.threads)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode:
                    rows.append({"model": model, "size": size, "tile": tile, "error": done.stderr.strip().splitlines()[-1:]})
                else:
                    rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"  {rows[-1]}", flush=True)
                write_result(result, out)  # after every row: a stopped sweep keeps what it measured

    header = f"{'model':<8}{'size':>6}{'tile':>6}{'seconds':>10}{'peak GB':>9}{'base GB':>9}{'decode GB':>11}"
    print(f"\ndecode seconds and peak RSS on {args.device}, batch 1, one decode per process")
    print(header)
    print("-" * len(header))
    for r in rows:
        if "seconds" in r:
            print(f"{r['model']:<8}{r['size']:>6}{r['tile'] or '-':>6}{r['seconds']:>10.2f}{r['peak_rss_gb']:>9.2f}{r['baseline_gb']:>9.2f}{r['decode_gb']:>11.2f}")
        else:
            print(f"{r['model']:<8}{r['size']:>6}{r['tile'] or '-':>6}  {r.get('skipped') or r.get('error')}")
    write_result(result, out)
    return result


if __name__ == "__main__":
    main()
