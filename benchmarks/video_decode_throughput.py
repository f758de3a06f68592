"""Video decoder throughput: video DiTo-S / -B (1 and N steps) vs diffusers' video VAE decoders.

    python -m benchmarks.video_decode_throughput                          # CPU: fp32 eager, 9×64², batch 1
    python -m benchmarks.video_decode_throughput --frames 17 --resolution 128
    python -m benchmarks.video_decode_throughput --device cuda            # GPU: bf16 autocast, 17×256², batch 4

Peers (random weights, their DEFAULT diffusers configs, ``vae.decode(z)``): ``AutoencoderKLWan``
(Wan 2.1, 4×8×8×16, 127M), ``AutoencoderKLCogVideoX`` (4×8×8×16, 216M) and ``AutoencoderKLLTXVideo``
(v0.9 defaults: 8×32×32×128, 419M; a 4x coarser time/space grid, so it decodes fewer latents per
frame). Each model decodes its own latent grid for the same clip size, from the same seed.
Repetitions are interleaved across models (A, B, C, A, B, C, ...) and medians reported; entries
with more than 10 solver steps run only in the first ``--long-repeats`` repetitions. Frames/s
count output frames; "× Wan" is the speed ratio to the Wan decoder measured in the same process.
GFLOP per frame: one decode (all steps, ``core.flops``) divided by the clip's frames. Prints a
table and writes JSON (default ``benchmarks/results/video_decode_throughput_<device>.json``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import modalities.video  # noqa: F401  (registers the video networks)
from benchmarks.decode_table import Column, add_timing_args, leading_columns, median_rows, print_table, run_header, setup_device
from benchmarks.interleave import interleaved_times
from benchmarks.results_io import write_result
from core.builder import build_autoencoder
from core.flops import count_flops
from modalities.video.models import video_dito_config

__all__ = ["VideoEntry", "PEERS", "build_entries", "main"]

REFERENCE = "Wan2.1 VAE"
# name -> (diffusers class, (temporal, spatial) compression, latent channels) of the default config
PEERS: dict[str, tuple[str, tuple[int, int], int]] = {
    "Wan2.1 VAE": ("AutoencoderKLWan", (4, 8), 16),
    "CogVideoX VAE": ("AutoencoderKLCogVideoX", (4, 8), 16),
    "LTX-Video VAE": ("AutoencoderKLLTXVideo", (8, 32), 128),
}


@dataclass
class VideoEntry:
    """One decoder configuration to time."""

    name: str
    steps: int
    run: Callable[[], torch.Tensor]  # decodes the benchmark clips once
    flops_per_frame: float  # one full decode (all steps) / frames
    params: int
    latent: tuple[int, ...]


def _latent_grid(frames: int, resolution: int, temporal: int, spatial: int) -> tuple[int, int, int]:
    if (frames - 1) % temporal or resolution % spatial:
        raise ValueError(f"clip {frames}×{resolution}² does not fit a {temporal}×{spatial}×{spatial} peer; "
                         f"use 1 + 8k frames and a multiple of 32 pixels to run every peer")
    return 1 + (frames - 1) // temporal, resolution // spatial, resolution // spatial


def build_entries(device: torch.device, frames: int, resolution: int, batch: int, *, steps: int, autocast: bool,
                  only: tuple[str, ...] = ()) -> list[VideoEntry]:
    """The benchmark's decoders, each with a closure decoding ``batch`` clips of ``frames × resolution²``
    (only names starting with a prefix in ``only``, when given; the Wan reference always)."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast)
    noise = torch.randn(batch, 3, frames, resolution, resolution, generator=generator).to(device)
    entries: list[VideoEntry] = []

    def wanted(name: str) -> bool:
        return name.startswith(REFERENCE) or not only or any(name.startswith(p) or p.startswith(name) for p in only)

    for size in ("s", "b"):
        label = f"video DiTo-{size.upper()}"
        if not wanted(label):
            continue
        model = build_autoencoder(video_dito_config(size), with_loss_terms=False).to(device).eval()
        z = torch.randn(batch, *model.latent_shape(tuple(noise.shape[1:])), generator=generator).to(device)
        t = torch.ones(1, device=device)
        with torch.no_grad():
            one = float(count_flops(lambda: model.decoder(noise[:1], 1000.0 * t, z[:1])).total)
        params = sum(p.numel() for p in model.decoder.parameters())
        for n in (1, steps):
            def run(model=model, z=z, n=n) -> torch.Tensor:
                with torch.no_grad(), amp:
                    return model.decode(z, n, noise=noise).sample
            entries.append(VideoEntry(f"{label} {n}-step", n, run, one * n / frames, params, tuple(z.shape[1:])))

    try:
        import diffusers
    except ImportError as err:
        raise ImportError("the video VAE references need diffusers: pip install 'difftok[bench]'") from err
    for name, (cls_name, (temporal, spatial), channels) in PEERS.items():
        if not wanted(name):
            continue
        vae = getattr(diffusers, cls_name)().to(device).eval()
        z = torch.randn(batch, channels, *_latent_grid(frames, resolution, temporal, spatial), generator=generator).to(device)
        with torch.no_grad():
            flops = float(count_flops(lambda vae=vae, z=z: vae.decode(z[:1]).sample).total)

        def run_vae(vae=vae, z=z) -> torch.Tensor:
            with torch.no_grad(), amp:
                return vae.decode(z).sample

        entries.append(VideoEntry(f"{name} decoder", 1, run_vae, flops / frames, sum(p.numel() for p in vae.decoder.parameters()),
                                  tuple(z.shape[1:])))
    return entries


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_args(parser, repeats=3)
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (1 + 8k fits every peer); default 9 CPU, 17 GPU")
    parser.add_argument("--resolution", type=int, default=None, help="default: 64 on CPU, 256 on GPU")
    parser.add_argument("--steps", type=int, default=50, help="the N of the N-step video DiTo entries (DiTo: 50)")
    parser.add_argument("--only", default="", help="comma-separated name prefixes to keep (the Wan reference always runs)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    device = setup_device(args)
    gpu = device.type == "cuda"
    frames, resolution, batch = args.frames or (17 if gpu else 9), args.resolution or (256 if gpu else 64), args.batch or (4 if gpu else 1)
    keep = tuple(p.strip() for p in args.only.split(",") if p.strip())
    entries = build_entries(device, frames, resolution, batch, steps=args.steps, autocast=gpu, only=keep)

    times = interleaved_times(entries, device, repeats=args.repeats, long_repeats=args.long_repeats, warmup=args.warmup)

    reference = statistics.median(times[f"{REFERENCE} decoder"])
    rows = median_rows(entries, times, lambda entry, median: {
        "latent": list(entry.latent), "gflops_per_frame": round(entry.flops_per_frame / 1e9, 2),
        "frames_per_s": round(batch * frames / median, 3), "ratio_vs_wan": round(reference / median, 3),
    })
    mode = "bf16" if gpu else "fp32 eager"
    print_table(f"video decode throughput on {device} ({mode}), {frames}×{resolution}², batch {batch}", [
        *leading_columns(24),
        Column("GFLOP/frame", "gflops_per_frame", ">13.2f"), Column("frames/s", "frames_per_s", ">10.3f"),
        Column("× Wan", "ratio_vs_wan", ">8.2f"),
    ], rows)
    result = {
        **run_header("video_decode_throughput", device, mode), "frames": frames, "resolution": resolution, "batch": batch,
        "steps": args.steps, "repeats": args.repeats, "long_repeats": args.long_repeats, "rows": rows,
    }
    write_result(result, Path(args.json or Path(__file__).parent / "results" / f"video_decode_throughput_{device.type}.json"))
    return result

if __name__ == "__main__":
    main()
