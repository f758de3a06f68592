"""Dataset latent statistics of an image tokenizer (the ``recipes.image.latent_stats`` command).

A latent generator (DiT) is trained on ``(z - shift) / scale``. KL latents are not normalised by
the tokenizer, so ``shift``/``scale`` are the scalar mean and std of encoded latents over a
dataset (SSDD); DiTo's LayerNorm latents already have mean 0 and std 1 per sample.

Protocol: a seeded class-stratified subset (:func:`~modalities.image.eval_suite.select_eval_images`),
the eval transform (shorter side to ``size``, center crop), latents drawn with
``latent_dist.sample(generator)`` for KL tokenizers (one generator seeded by ``seed``, batches in
subset order) and ``mode()`` for deterministic ones, float64 accumulation
(:func:`~core.latent.stats.compute_latent_moments`). The stats are written into the tokenizer's
``config.json`` (in place, atomically; weights untouched) or into a copy at ``out``, together with
``latent_stats.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from core.latent.stats import compute_latent_moments
from core.pretrained import from_pretrained, write_latent_stats
from modalities.image.eval_suite import EvalData, EvalImages, resolve_device, select_eval_images

__all__ = ["LatentStatsSettings", "STATS_FILE", "compute_dataset_latent_stats", "format_stats"]

log = logging.getLogger("difftok.image")
STATS_FILE = "latent_stats.json"


@dataclass
class LatentStatsSettings:
    """Settings of one latent-statistics run (all recorded in ``latent_stats.json``)."""

    tokenizer: Optional[str] = None  # save_pretrained folder (e.g. <run>/export)
    data: EvalData = field(default_factory=EvalData)
    num_images: int = 1000  # <= 0: every image
    size: int = 256
    batch_size: int = 32
    seed: int = 0  # subset selection and KL sampling noise
    latent: str = "auto"  # auto (sample for KL, mode for deterministic) | sample | mode
    out: Optional[str] = None  # None: update the tokenizer folder in place
    device: str = "auto"
    num_workers: int = 2
    progress: bool = True


def _latent_mode(requested: str, deterministic: bool) -> str:
    """Which latent to use: ``latent_dist.sample()`` or ``mode()``."""
    if requested not in ("auto", "sample", "mode"):
        raise ValueError(f"latent={requested!r}: choose auto, sample or mode")
    if requested == "auto":
        return "mode" if deterministic else "sample"
    return requested


@torch.no_grad()
def compute_dataset_latent_stats(settings: LatentStatsSettings) -> dict[str, Any]:
    """Encode the subset, compute scalar stats, write them into the tokenizer and ``latent_stats.json``.

    Returns:
        The report written to ``latent_stats.json``: ``shift``, ``scale``, ``num_images``,
        ``latent`` (``"sample"`` or ``"mode"``), per-channel ``channel_mean``/``channel_std``
        (information only), the previous stats, the data selection and the settings.
    """
    if not settings.tokenizer:
        raise ValueError("tokenizer=PATH is required (a save_pretrained folder, e.g. <run>/export)")
    _latent_mode(settings.latent, deterministic=False)  # reject a bad value before any work
    source = Path(settings.tokenizer)
    if not source.is_dir():
        raise ValueError(f"tokenizer={source} is not a save_pretrained folder; the stats are written into one "
                         f"(export a Lightning .ckpt first, e.g. the run's <output_dir>/export)")
    device = resolve_device(settings.device)
    model = from_pretrained(source, modality="image", map_location="cpu").to(device).eval()
    selection = select_eval_images(settings.data, settings.num_images, settings.seed)
    loader = DataLoader(EvalImages(selection.refs, settings.size), batch_size=settings.batch_size,
                        num_workers=settings.num_workers, shuffle=False)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    unreadable = 0

    def readable_batches() -> Iterator[Tensor]:
        nonlocal unreadable
        from tqdm import tqdm

        with tqdm(total=len(selection.refs), unit="img", desc="latent stats", disable=not settings.progress, dynamic_ncols=True) as bar:
            for batch in loader:
                ok = batch["ok"].bool()
                unreadable += int((~ok).sum())
                bar.update(int(ok.numel()))
                if ok.any():
                    yield batch["x"][ok].to(device)

    used: set[str] = set()

    def encode(x: Tensor) -> Tensor:
        dist = model.encode(x).latent_dist  # (B, C_z, h, w)
        mode = _latent_mode(settings.latent, dist.deterministic)
        used.add(mode)
        return dist.sample(generator) if mode == "sample" else dist.mode()

    moments = compute_latent_moments(encode, readable_batches())
    stats = moments.stats()
    report: dict[str, Any] = {
        "shift": stats.shift,
        "scale": stats.scale,
        "num_images": moments.num_samples,
        "latent": "/".join(sorted(used)),
        "latent_channels": model.latent_channels,
        "channel_mean": moments.channel_mean(),
        "channel_std": moments.channel_std(),
        "previous": model.latent_stats.to_dict(),
        "regularizer": model.config.regularizer.name,
        "data": {"source": selection.source, "location": selection.location, "num_available": selection.num_available,
                 "num_classes": selection.num_classes, "unreadable": unreadable},
        "settings": asdict(settings),
    }
    target = write_latent_stats(source, stats, out=settings.out,
                                extra={"latent_stats": {k: report[k] for k in ("num_images", "latent")} | {"source": selection.location}})
    report["tokenizer"] = str(target)
    (target / STATS_FILE).write_text(json.dumps(report, indent=2))
    if unreadable:
        log.warning("%d unreadable image(s) skipped", unreadable)
    return report


def format_stats(report: dict[str, Any]) -> str:
    """Human-readable summary of a report from :func:`compute_dataset_latent_stats`."""
    channels = ", ".join(f"{m:+.4f}/{s:.4f}" for m, s in zip(report["channel_mean"], report["channel_std"]))
    return "\n".join([
        f"latent stats over {report['num_images']} images ({report['data']['source']}: {report['data']['location']}), "
        f"latents from latent_dist.{report['latent']}() ({report['regularizer']} regularizer)",
        f"shift = {report['shift']:.6f}   scale = {report['scale']:.6f}   (generator latents: (z - shift) / scale)",
        f"per-channel mean/std (information only): {channels}",
        f"previous: shift = {report['previous']['shift']:.6f}, scale = {report['previous']['scale']:.6f}",
        f"written to {report['tokenizer']}/config.json and {report['tokenizer']}/{STATS_FILE}",
    ])
