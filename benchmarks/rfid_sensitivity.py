"""How the small-crop rFID of the CPU runs responds to grain vs blur, and to the decode schedule.

    python -m benchmarks.rfid_sensitivity                                   # degradations only
    python -m benchmarks.rfid_sensitivity --export outputs/quickstart/export  # + decode schedules

The crops are the quickstart's held-out set (every ``--crop``² tile of the demo ``val/``
photographs at a shorter side of ``--resize``). Part 1 scores the original tiles against
themselves with seeded Gaussian noise or a separable Gaussian blur added, so PSNR and rFID can be
read side by side for the two kinds of error a diffusion decoder makes (grain, over-smoothing).
Part 2 (with ``--export``) decodes the same tiles with one tokenizer under several schedules from
the same seeded noise (``steps:grid:power:solver[:stop]``, e.g. ``50:power:0.5:euler``). With a
``stop`` time the grid is cut where it passes ``t = stop`` and the decode jumps from there to the
data estimate ``x̂0 = x_t + t·u`` in one step: it shows which part of the trajectory adds what.
Prints a table and writes JSON (default ``benchmarks/results/rfid_sensitivity_cpu.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.decode_table import run_header
from benchmarks.results_io import write_result

__all__ = ["blur", "degradation_rows", "truncated_grid", "TruncatedDecode", "schedule_rows", "main"]

NOISE_SIGMAS = (0.05, 0.1, 0.15, 0.2)  # of the [-1, 1] range
BLUR_SIGMAS = (0.7, 1.0, 1.5, 2.0)  # pixels
DEFAULT_SCHEDULES = ("1:uniform:2:euler", "50:uniform:2:euler", "50:power:2:euler", "50:power:0.5:euler", "25:uniform:2:heun")


def blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` images (radius 4, reflect padding)."""
    taps = torch.arange(-4, 5, dtype=x.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    y = F.pad(x, (4, 4, 4, 4), mode="reflect")
    y = F.conv2d(y, kernel.view(1, 1, 1, 9).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(y, kernel.view(1, 1, 9, 1).repeat(channels, 1, 1, 1), groups=channels)


@torch.no_grad()
def degradation_rows(tiles: Tensor, features: Any, seed: int = 0) -> list[dict[str, Any]]:
    """PSNR (8-bit, mean per tile, as :func:`recipes.image.report.score_crops` reports it) and rFID of
    ``tiles`` + noise / blurred ``tiles`` against ``tiles`` themselves."""
    from core.eval.frechet import frechet_distance
    from modalities.image.metrics import psnr_per_image
    from modalities.image.preview import to_uint8

    reference = features(tiles)
    generator = torch.Generator().manual_seed(seed)
    variants = [(f"noise sigma={s}", tiles + s * torch.randn(tiles.shape, generator=generator)) for s in NOISE_SIGMAS]
    variants += [(f"blur sigma={s}px", blur(tiles, s)) for s in BLUR_SIGMAS]
    rows = []
    for label, degraded in variants:
        degraded = degraded.clamp(-1, 1)
        psnr = psnr_per_image(to_uint8(tiles), to_uint8(degraded)).mean().item()
        rows.append({"degradation": label, "psnr": psnr, "rfid": frechet_distance(reference, features(degraded))})
    return rows


def truncated_grid(times: Tensor, stop: float) -> Tensor:
    """The decreasing grid ``times`` (1 -> 0) cut at ``stop``: every time above it, then ``stop``, then 0.

    Raises:
        ValueError: ``stop`` is not in [0, 1).
    """
    if not 0.0 <= stop < 1.0:
        raise ValueError(f"stop time must be in [0, 1), got {stop}")
    if stop == 0.0:
        return times
    kept = times[times > stop]
    return torch.cat([kept, torch.tensor([stop, 0.0], dtype=times.dtype, device=times.device)])


class TruncatedDecode:
    """A tokenizer whose :meth:`decode` follows its own grid only down to ``stop``, then jumps to t = 0
    (everything else is the wrapped tokenizer's); what :func:`recipes.image.report.score_crops` decodes with."""

    def __init__(self, tokenizer: Any, stop: float) -> None:
        self.tokenizer, self.stop = tokenizer, stop

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)

    @torch.no_grad()
    def decode(self, z: Tensor, num_steps: int, *, noise: Tensor, solver: str | None = None) -> Any:
        from core.latent.distribution import DecoderOutput
        from core.samplers.grids import time_grid
        from core.samplers.solvers import solve

        cfg = self.tokenizer.sampling
        times = truncated_grid(time_grid(num_steps, cfg.grid, power=cfg.power, device=z.device), self.stop)
        out = solve(solver or cfg.solver, lambda x, t, c: self.tokenizer.velocity(x, t, c), noise, times, z)
        return DecoderOutput(sample=out.sample, num_function_evals=out.num_function_evals)


def schedule_rows(export: str | Path, tiles: Tensor, schedules: list[str], seed: int = 0) -> list[dict[str, Any]]:
    """:func:`recipes.image.report.score_crops` of one export's decodes under each ``steps:grid:power:solver[:stop]``
    (with ``stop``, through :class:`TruncatedDecode`); each row also counts the network calls."""
    from core.pretrained import from_pretrained
    from core.samplers.grids import time_grid
    from recipes.image.report import score_crops

    tokenizer = from_pretrained(export, modality="image").eval()
    default = tokenizer.sampling
    rows = []
    for spec in schedules:
        try:
            steps, grid, power, solver, *rest = spec.split(":")
            steps_n, power_f, stop = int(steps), float(power), float(rest[0]) if rest else 0.0
            if len(rest) > 1 or not 0.0 <= stop < 1.0:
                raise ValueError
        except ValueError:
            raise SystemExit(
                f"--schedule {spec!r}: expected steps:grid:power:solver[:stop] with stop in [0, 1), e.g. 50:power:0.5:euler or 50:uniform:1:euler:0.3"
            ) from None
        tokenizer.sampling = dataclasses.replace(default, grid=grid, power=power_f, solver=solver)
        decoder = TruncatedDecode(tokenizer, stop) if stop > 0 else tokenizer
        scores = score_crops(decoder, tiles, [steps_n], seed=seed)[f"steps_{steps_n}"]
        solver_steps = len(truncated_grid(time_grid(steps_n, grid, power=power_f), stop)) - 1
        evaluations = solver_steps * (2 if solver == "heun" else 1)
        rows.append({"schedule": spec, "evaluations": evaluations,
                     **{k: scores[k] for k in ("psnr_mean_per_image", "ssim", "hf_ratio", "rfid")}})
    return rows


def main(argv: list[str] | None = None) -> None:
    from modalities.image.demo import export_demo_dataset
    from modalities.image.fid import image_feature_extractor
    from recipes.image.report import held_out_crops

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=32, help="tile size (quickstart: 32)")
    parser.add_argument("--resize", type=int, default=128, help="shorter side before tiling (quickstart: 128)")
    parser.add_argument("--export", default=None, help="a save_pretrained folder: also score its decode schedules")
    parser.add_argument("--schedule", action="append", default=None, help=f"steps:grid:power:solver[:stop] (default {DEFAULT_SCHEDULES})")
    parser.add_argument("--out", default="benchmarks/results/rfid_sensitivity_cpu.json")
    args = parser.parse_args(argv)

    val = sorted((export_demo_dataset() / "val").glob("*.png"))
    tiles = held_out_crops(val, size=args.crop, resize=args.resize)
    features = image_feature_extractor(torch.device("cpu")).eval()
    degradations = degradation_rows(tiles, features)
    print(f"{len(tiles)} held-out {args.crop}² tiles at a shorter side of {args.resize}\n")
    print("| degradation | PSNR (dB) | rFID |\n|---|---|---|")
    for row in degradations:
        print(f"| {row['degradation']} | {row['psnr']:.2f} | {row['rfid']:.1f} |")
    schedules = []
    if args.export:
        schedules = schedule_rows(args.export, tiles, args.schedule or list(DEFAULT_SCHEDULES))
        print("\n| decode (steps:grid:power:solver[:stop]) | network calls | PSNR (dB) | SSIM | HF ratio | rFID |\n|---|---|---|---|---|---|")
        for row in schedules:
            print(f"| {row['schedule']} | {row['evaluations']} | {row['psnr_mean_per_image']:.2f} | {row['ssim']:.3f} | {row['hf_ratio']:.2f} | {row['rfid']:.1f} |")
    write_result({
        **run_header("rfid_sensitivity", torch.device("cpu"), "fp32"), "num_tiles": len(tiles), "crop": args.crop,
        "resize": args.resize, "export": args.export, "degradations": degradations, "schedules": schedules,
    }, args.out)


if __name__ == "__main__":
    main()
