"""Decoder throughput: SSDD (1 and 8 steps), DiTo-B (1 and 50 steps) vs the SD-VAE decoder.

    python -m benchmarks.decode_throughput                 # CPU: fp32, eager, 128², batch 1
    python -m benchmarks.decode_throughput --device cuda   # GPU: bf16 autocast + torch.compile, 256², batch 64
    python -m benchmarks.decode_throughput --device cuda --attention flex,xformers,local,sdpa   # GPU attention paths
    python -m benchmarks.decode_throughput --sweep [...]    # seconds + peak memory, 256²..2048² (benchmarks.decode_sweep)

All models are decoded from the same random latents on the same device in one run, with random
weights (speed does not depend on the values). The reference is the decoder of diffusers'
``AutoencoderKL`` with the Stable Diffusion config (``vae.decode(z)``). Repetitions are
interleaved across models (A, B, C, A, B, C, ...) and medians reported, so machine noise hits all
models alike. ``--attention`` adds SSDD entries per attention backend (``SSDD-M[sdpa] 1-step``; the
plain names use ``auto``). Entries with many solver steps run only in the first ``--long-repeats`` repetitions.
FLOPs per image: convolutions + linear layers + dense attention (``core.flops``), one decoder
forward times the number of steps. Prints a table and writes JSON
(default ``benchmarks/results/decode_throughput_<device>.json``).
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
from modalities.image.dito import dito_config
from modalities.image.ssdd.config import ssdd_config

__all__ = ["Entry", "build_entries", "main"]


@dataclass
class Entry:
    """One decoder configuration to time."""

    name: str
    steps: int
    run: Callable[[], torch.Tensor]  # decodes the benchmark batch once
    flops_per_image: float  # one full decode (all steps)
    params: int


def _sd_vae_decoder(device: torch.device) -> torch.nn.Module:
    try:
        from diffusers import AutoencoderKL
    except ImportError as err:
        raise ImportError("the SD-VAE reference needs diffusers: pip install 'difftok[bench]'") from err
    # the Stable Diffusion VAE config (diffusers' defaults for these keys are the SD ones except these)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2, norm_num_groups=32, sample_size=256,
    )
    return vae.to(device).eval()


def _forward_flops(fn: Callable[[], object]) -> float:
    return float(count_flops(fn).total)


def build_entries(
    device: torch.device, resolution: int, batch: int, *, compile_models: bool, autocast: bool, only: tuple[str, ...] = (),
    attention: tuple[str, ...] = ("auto",),
) -> list[Entry]:
    """The benchmark's models, each with a closure decoding ``batch`` images at ``resolution``
    (only names starting with a prefix in ``only``, when given; the SD-VAE reference always);
    SSDD once per attention backend in ``attention``."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    z = torch.randn(batch, 4, resolution // 8, resolution // 8, generator=generator).to(device)
    noise = torch.randn(batch, 3, resolution, resolution, generator=generator).to(device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast)
    entries: list[Entry] = []

    def add_tokenizer(label: str, config, steps_list: tuple[int, ...]) -> None:
        if only and not any(label.startswith(prefix) or prefix.startswith(label) for prefix in only):
            return
        model = build_autoencoder(config).to(device).eval()
        decoder = model.decoder
        if compile_models:
            model.decoder = torch.compile(decoder)
        t = torch.ones(1, device=device)
        with torch.no_grad():
            one = _forward_flops(lambda: decoder(noise[:1], 1000.0 * t, z[:1]))
        params = sum(p.numel() for p in decoder.parameters())
        for steps in steps_list:
            def run(model=model, steps=steps) -> torch.Tensor:
                with torch.no_grad(), amp:
                    return model.decode(z, steps, noise=noise).sample
            name = f"{label} {steps}-step"
            if not only or any(name.startswith(prefix) for prefix in only):
                entries.append(Entry(name, steps, run, one * steps, params))

    for backend in attention:
        tag = "" if backend == "auto" else f"[{backend}]"
        kwargs = {"attention_backend": backend}
        add_tokenizer(f"SSDD-S{tag}", ssdd_config("s", lpips_weight=0, repa_weight=0, decoder_kwargs=kwargs), (1,))
        add_tokenizer(f"SSDD-M{tag}", ssdd_config("m", lpips_weight=0, repa_weight=0, decoder_kwargs=kwargs), (1, 8))
    add_tokenizer("DiTo-B", dito_config("b"), (1, 50))

    vae = _sd_vae_decoder(device)
    vae_decode = torch.compile(vae.decode) if compile_models else vae.decode
    with torch.no_grad():
        vae_flops = _forward_flops(lambda: vae.decode(z[:1]).sample)

    def run_vae() -> torch.Tensor:
        with torch.no_grad(), amp:
            return vae_decode(z).sample

    entries.append(Entry("SD-VAE decoder", 1, run_vae, vae_flops, sum(p.numel() for p in vae.decoder.parameters())))
    return entries


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--sweep" in argv:  # the resolution sweep lives in its own script (one subprocess per decode)
        from benchmarks.decode_sweep import main as sweep

        return sweep([a for a in argv if a != "--sweep"])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_args(parser, repeats=5)
    parser.add_argument("--resolution", type=int, default=None, help="default: 128 on CPU, 256 on GPU")
    parser.add_argument("--only", default="", help="comma-separated name prefixes to keep (the reference always runs)")
    parser.add_argument("--attention", default="auto", help="comma-separated SSDD attention backends to time")
    args = parser.parse_args(argv)

    device = setup_device(args)
    gpu = device.type == "cuda"
    resolution = args.resolution or (256 if gpu else 128)
    batch = args.batch or (64 if gpu else 1)
    keep = tuple(p.strip() for p in args.only.split(",") if p.strip())
    backends = tuple(b.strip() for b in args.attention.split(",") if b.strip())
    entries = build_entries(device, resolution, batch, compile_models=gpu, autocast=gpu, only=keep, attention=backends)

    times = interleaved_times(entries, device, repeats=args.repeats, long_repeats=args.long_repeats, warmup=args.warmup)

    reference = statistics.median(times["SD-VAE decoder"])
    rows = median_rows(entries, times, lambda entry, median: {
        "gflops_per_image": round(entry.flops_per_image / 1e9, 1), "images_per_s": round(batch / median, 3),
        "ratio_vs_sd_vae": round(reference / median, 3),
    })
    mode = "bf16+compile" if gpu else "fp32 eager"
    print_table(f"decode throughput on {device} ({mode}), {resolution}², batch {batch}", [
        *leading_columns(22),
        Column("GFLOP/img", "gflops_per_image", ">11.1f"), Column("images/s", "images_per_s", ">10.3f"),
        Column("× SD-VAE", "ratio_vs_sd_vae", ">10.2f"),
    ], rows)
    result = {
        **run_header("decode_throughput", device, mode), "resolution": resolution, "batch": batch, "repeats": args.repeats,
        "long_repeats": args.long_repeats, "attention": list(backends), "rows": rows,
    }
    write_result(result, Path(args.json or Path(__file__).parent / "results" / f"decode_throughput_{device.type}.json"))
    return result

if __name__ == "__main__":
    main()
