"""Audio decoder throughput: ``audio_s`` / ``audio_b44k`` (1 and N steps) vs diffusers' ``AutoencoderOobleck``.

    python -m benchmarks.audio_decode_throughput                      # CPU: fp32 eager, 2 s clips, batch 1
    python -m benchmarks.audio_decode_throughput --device cuda        # GPU: bf16 autocast, 10 s clips, batch 16
    python -m benchmarks.audio_decode_throughput --seconds 5 --steps 1,50

Every decoder runs from random latents with random weights (speed does not depend on the values),
on the same device in one process. The reference at each hop is the decoder of diffusers'
``AutoencoderOobleck``: its default config (44.1 kHz stereo, strides 2·4·4·8·8 = hop 2048, the
Stable Audio Open VAE) next to ``audio_b44k`` (same rate, hop and channels), and the same config
with strides 2·4·4·8 = hop 256, mono, at 16 kHz next to ``audio_s``. Repetitions are interleaved
across models (A, B, C, A, B, C, ...) and medians reported; entries with more than 10 solver
steps run only in the first ``--long-repeats`` repetitions. The real-time factor is seconds of audio
decoded per second of wall time (``batch × clip seconds / median``; above 1 is faster than real
time). FLOPs per clip from ``core.flops`` (convolutions + linear layers), one forward × steps.
Prints a table and writes JSON (default ``benchmarks/results/audio_decode_throughput_<device>.json``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.decode_table import Column, add_timing_args, leading_columns, median_rows, print_table, run_header, setup_device
from benchmarks.interleave import interleaved_times
from benchmarks.results_io import write_result
from core.builder import build_autoencoder
from core.flops import count_flops
from modalities.audio.models import audio_config, audio_size

__all__ = ["Entry", "build_entries", "main"]


@dataclass
class Entry:
    """One decoder configuration to time."""

    name: str
    steps: int
    reference: str  # name of the Oobleck entry at the same hop
    run: Callable[[], torch.Tensor]  # decodes the benchmark batch once
    flops_per_clip: float
    params: int
    clip_seconds: float  # audio per clip (whole latent frames)


def _oobleck(hop: int, channels: int, rate: int, device: torch.device) -> torch.nn.Module:
    try:
        from diffusers import AutoencoderOobleck
    except ImportError as err:
        raise ImportError("the Oobleck reference needs diffusers: pip install 'difftok[bench]'") from err
    if hop == 2048:
        vae = AutoencoderOobleck(audio_channels=channels, sampling_rate=rate)  # the default config
    elif hop == 256:
        vae = AutoencoderOobleck(downsampling_ratios=[2, 4, 4, 8], channel_multiples=[1, 2, 4, 8],
                                 audio_channels=channels, sampling_rate=rate)
    else:
        raise ValueError(f"no Oobleck reference at hop {hop}; the benchmark compares hops 256 and 2048")
    return vae.to(device).eval()


def build_entries(device: torch.device, seconds: float, batch: int, steps: tuple[int, ...], *, autocast: bool,
                  sizes: tuple[str, ...] = ("s", "b44k")) -> list[Entry]:
    """Per size: the tokenizer at every step count and the Oobleck decoder at its hop, each decoding
    ``batch`` clips of about ``seconds`` (rounded down to whole latent frames)."""
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast)
    generator = torch.Generator().manual_seed(0)
    entries: list[Entry] = []
    for size in sizes:
        row = audio_size(size)
        frames = max(int(seconds * row.sample_rate) // row.hop, 1)
        model = build_autoencoder(audio_config(size)).to(device).eval()
        z = torch.randn(batch, row.latent_channels, frames, generator=generator).to(device)
        noise = torch.randn(batch, row.channels, frames * row.hop, generator=generator).to(device)
        reference = f"Oobleck hop {row.hop}"
        clip = frames * row.hop / row.sample_rate
        with torch.no_grad():
            one = float(count_flops(lambda: model.decoder(noise[:1], torch.full((1,), 1000.0, device=device), z[:1])).total)
        params = sum(p.numel() for p in model.decoder.parameters())
        for n in steps:
            def run(model=model, z=z, noise=noise, n=n) -> torch.Tensor:
                with torch.no_grad(), amp:
                    return model.decode(z, n, noise=noise).sample
            entries.append(Entry(f"audio_{size} {n}-step", n, reference, run, one * n, params, clip))
        vae = _oobleck(row.hop, row.channels, row.sample_rate, device)
        z_vae = torch.randn(batch, 64, frames, generator=generator).to(device)
        with torch.no_grad():
            vae_flops = float(count_flops(lambda: vae.decode(z_vae[:1]).sample).total)

        def run_vae(vae=vae, z_vae=z_vae) -> torch.Tensor:
            with torch.no_grad(), amp:
                return vae.decode(z_vae).sample

        entries.append(Entry(reference, 1, reference, run_vae, vae_flops, sum(p.numel() for p in vae.decoder.parameters()), clip))
    return entries


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_args(parser, repeats=3)
    parser.add_argument("--seconds", type=float, default=None, help="clip length (default: 2 on CPU, 10 on GPU)")
    parser.add_argument("--steps", default="1,10", help="comma-separated solver step counts")
    parser.add_argument("--sizes", default="s,b44k", help="comma-separated audio sizes")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))

    device = setup_device(args)
    gpu = device.type == "cuda"
    seconds = args.seconds or (10.0 if gpu else 2.0)
    batch = args.batch or (16 if gpu else 1)
    steps = tuple(int(s) for s in args.steps.split(",") if s.strip())
    sizes = tuple(s.strip() for s in args.sizes.split(",") if s.strip())
    entries = build_entries(device, seconds, batch, steps, autocast=gpu, sizes=sizes)

    times = interleaved_times(entries, device, repeats=args.repeats, long_repeats=args.long_repeats, warmup=args.warmup)

    medians = {name: statistics.median(values) for name, values in times.items()}
    rows = median_rows(entries, times, lambda entry, median: {
        "clip_s": round(entry.clip_seconds, 4), "gflops_per_clip": round(entry.flops_per_clip / 1e9, 2),
        "realtime_factor": round(batch * entry.clip_seconds / median, 3),
        "ratio_vs_oobleck": round(medians[entry.reference] / median, 3), "reference": entry.reference,
    })
    mode = "bf16 autocast" if gpu else "fp32 eager"
    print_table(f"audio decode throughput on {device} ({mode}), {seconds:g} s clips, batch {batch}", [
        *leading_columns(22),
        Column("GFLOP/clip", "gflops_per_clip", ">12.2f"), Column("median s", "median_s", ">10.3f"),
        Column("× real time", "realtime_factor", ">13.2f"), Column("× Oobleck", "ratio_vs_oobleck", ">11.2f"),
    ], rows)
    result = {
        **run_header("audio_decode_throughput", device, mode), "seconds": seconds, "batch": batch, "steps": list(steps),
        "repeats": args.repeats, "long_repeats": args.long_repeats, "rows": rows,
    }
    write_result(result, Path(args.json or Path(__file__).parent / "results" / f"audio_decode_throughput_{device.type}.json"))
    return result

if __name__ == "__main__":
    main()
