"""Score tokenizers on tiles of the held-out photographs: PSNR, SSIM, sharpness, rFID and decode time.

The CPU evidence runs hold out two or three photographs; their center crops alone give too few
samples for an rFID. Every non-overlapping ``size``² tile of them (at the training scale) gives
70 tiles of 64² at a shorter side of 320. All tokenizers and step counts decode the same tiles
from the same seeded noise (:func:`core.eval.reconstruction.evaluate_reconstructions`), 8-bit
quantised before every metric; rFID uses the bundled FID Inception, the sharpness measure is the
Laplacian energy ratio of :mod:`modalities.image.sharpness`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["held_out_crops", "score_crops", "crop_table", "MIN_RFID_CROPS"]

MIN_RFID_CROPS = 64  # below this the Inception statistics of a few images say little


def held_out_crops(refs: Sequence[Any], *, size: int, resize: int) -> Tensor:
    """Every non-overlapping ``size``² tile (row-major) of each image in ``refs`` after a Lanczos
    resize of its shorter side to ``resize``: ``(N, 3, size, size)`` in [-1, 1].

    Raises:
        ValueError: ``resize < size`` (no tile fits) or ``refs`` is empty.
    """
    from modalities.image.data import open_image, resize_shorter_side, to_tensor

    if resize < size:
        raise ValueError(f"held-out tiles of {size}² need a shorter side of at least {size}, got resize={resize}")
    tiles = []
    for ref in refs:
        image = resize_shorter_side(open_image(ref).convert("RGB"), resize)
        width, height = image.size
        for top in range(0, height - size + 1, size):
            for left in range(0, width - size + 1, size):
                tiles.append(to_tensor(image.crop((left, top, left + size, top + size))))
    if not tiles:
        raise ValueError("no held-out images to cut tiles from; the run's evaluation set is empty")
    return torch.stack(tiles)


def _batches(x: Tensor, batch_size: int) -> Iterator[dict[str, Tensor]]:
    for start in range(0, len(x), batch_size):
        yield {"x": x[start : start + batch_size], "index": torch.arange(start, min(start + batch_size, len(x)))}


def score_crops(tokenizer: Any, crops: Tensor, steps: Sequence[int], *, seed: int = 0, batch_size: int = 16) -> dict[str, dict[str, float]]:
    """``{"steps_<n>": {psnr_mean_per_image, psnr_dataset, ssim, hf_ratio, hf_error_ratio, rfid, decode_s_per_crop}}``
    for ``tokenizer`` (eval mode, CPU) on ``crops`` with each step count."""
    from core.eval.reconstruction import evaluate_reconstructions, step_key
    from core.eval.runtime import PhaseTimer
    from modalities.image.fid import image_feature_extractor
    from modalities.image.metrics import ReconstructionMetrics
    from modalities.image.preview import EIGHT_BIT
    from modalities.image.sharpness import HighFrequencyEnergy

    timer = PhaseTimer(torch.device("cpu"))
    evaluation = evaluate_reconstructions(
        tokenizer, _batches(crops, batch_size), steps=tuple(steps), metrics=lambda: [ReconstructionMetrics(), HighFrequencyEnergy()],
        seed=seed, quantization=EIGHT_BIT, features=image_feature_extractor(torch.device("cpu")), timer=timer,
    )
    for n in steps:
        evaluation.metrics[step_key(n)]["decode_s_per_crop"] = timer.totals[f"decode_steps_{n}"] / len(crops)
    return evaluation.metrics


def crop_table(rows: dict[str, dict[str, float]], num_crops: int) -> str:
    """A markdown table, one row per ``label -> metrics`` (as returned per step count by :func:`score_crops`;
    ``hf_error_ratio`` is optional: nan when the sharpness measure does not report it)."""
    note = "" if num_crops >= MIN_RFID_CROPS else f" (only {num_crops} crops: noisy)"
    lines = [
        f"| decode | PSNR (dB, mean per crop) | PSNR (dataset) | SSIM | rFID ({num_crops} crops){note} | HF ratio | HF error ratio | decode s/crop |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, m in rows.items():
        lines.append(
            f"| {label} | {m['psnr_mean_per_image']:.2f} | {m['psnr_dataset']:.2f} | {m['ssim']:.3f} | {m['rfid']:.1f} | "
            f"{m['hf_ratio']:.2f} | {m.get('hf_error_ratio', float('nan')):.2f} | {m['decode_s_per_crop']:.4f} |"
        )
    return "\n".join(lines)
