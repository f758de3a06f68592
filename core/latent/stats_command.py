"""Dataset latent statistics of a tokenizer, for any modality (the ``recipes.latent_stats`` command).

A latent generator (DiT) is trained on ``(z - shift) / scale``. KL latents are not normalised by
the tokenizer, so ``shift``/``scale`` are the scalar mean and std of encoded latents over a
dataset (SSDD); DiTo's LayerNorm latents already have mean 0 and std 1 per sample.

Protocol: the modality's evaluation samples (``Modality.select_eval_samples``: image, a seeded
class-stratified subset with the eval transform), latents drawn with ``latent_dist.sample(generator)``
for KL tokenizers (one generator seeded by ``seed``, batches in subset order) and ``mode()`` for
deterministic ones, float64 accumulation (:func:`~core.latent.stats.compute_latent_moments`). The
stats are written into the tokenizer's ``config.json`` (in place, atomically; weights untouched) or
into a copy at ``out``, together with ``latent_stats.json``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from core.data.skips import skip_notes
from core.eval.runtime import resolve_device
from core.eval.samples import LoadedSamples, SampleRequest, sample_loader
from core.latent.stats import compute_latent_moments
from core.modality import get_modality
from core.pretrained import from_pretrained, write_latent_stats

__all__ = ["LatentStatsSettings", "STATS_FILE", "compute_dataset_latent_stats", "format_stats"]

log = logging.getLogger("difftok.latent")
STATS_FILE = "latent_stats.json"


@dataclass
class LatentStatsSettings:
    """Modality-independent settings of one latent-statistics run (all recorded in ``latent_stats.json``).

    A modality subclasses this with where its samples come from and implements :meth:`sample_request`
    (image: :class:`modalities.image.latent_stats.ImageLatentStatsSettings`).
    """

    modality: str = ""
    tokenizer: Optional[str] = None  # save_pretrained folder (e.g. <run>/export)
    batch_size: int = 32
    seed: int = 0  # subset selection and KL sampling noise
    latent: str = "auto"  # auto (sample for KL, mode for deterministic) | sample | mode
    out: Optional[str] = None  # None: update the tokenizer folder in place
    device: str = "auto"
    num_workers: int = 2
    progress: bool = True

    def sample_request(self) -> SampleRequest:
        """Which samples to encode; defined by the modality's subclass."""
        raise NotImplementedError(f"{type(self).__name__} does not say which samples to encode: use the modality's "
                                  f"settings class (Modality.tool_settings.latent_stats), which defines sample_request()")


def _latent_mode(requested: str, deterministic: bool) -> str:
    """Which latent to use: ``latent_dist.sample()`` or ``mode()``."""
    if requested not in ("auto", "sample", "mode"):
        raise ValueError(f"latent={requested!r}: choose auto, sample or mode")
    if requested == "auto":
        return "mode" if deterministic else "sample"
    return requested


@torch.no_grad()
def compute_dataset_latent_stats(settings: LatentStatsSettings) -> dict[str, Any]:
    """Encode the samples, compute scalar stats, write them into the tokenizer and ``latent_stats.json``.

    Returns:
        The report written to ``latent_stats.json``: ``shift``, ``scale``, ``num_<unit>s``,
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
    modality = get_modality(settings.modality)
    modality.require_hooks("latent_stats", "select_eval_samples")
    device = resolve_device(settings.device)
    model = from_pretrained(source, modality=modality.name, map_location="cpu").to(device).eval()
    samples = modality.select_eval_samples(settings.sample_request())
    loader = sample_loader(LoadedSamples(samples.refs, samples.load), settings.batch_size, settings.num_workers)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    skipped: Counter[str] = Counter()  # kind -> count (unreadable / too_short)

    def readable_batches() -> Iterator[Tensor]:
        from tqdm import tqdm

        with tqdm(total=len(samples.refs), unit=samples.unit, desc="latent stats", disable=not settings.progress, dynamic_ncols=True) as bar:
            for batch in loader:
                skipped.update(batch["skips"])
                bar.update(batch["count"])
                if batch["x"] is not None:
                    yield batch["x"].to(device)

    used: set[str] = set()

    def encode(x: Tensor) -> Tensor:
        dist = model.encode(x).latent_dist  # (B, C_z, *latent_spatial)
        mode = _latent_mode(settings.latent, dist.deterministic)
        used.add(mode)
        return dist.sample(generator) if mode == "sample" else dist.mode()

    moments = compute_latent_moments(encode, readable_batches())
    stats = moments.stats()
    count_key = f"num_{samples.unit}s"
    location = samples.report.get("location", "")
    report: dict[str, Any] = {
        "shift": stats.shift,
        "scale": stats.scale,
        count_key: moments.num_samples,
        "latent": "/".join(sorted(used)),
        "latent_channels": model.latent_channels,
        "channel_mean": moments.channel_mean(),
        "channel_std": moments.channel_std(),
        "previous": model.latent_stats.to_dict(),
        "regularizer": model.config.regularizer.name,
        "data": {k: samples.report[k] for k in ("source", "location", "num_available", "num_classes") if k in samples.report}
        | {"unreadable": skipped.get("unreadable", 0), "skipped": dict(skipped)},
        "unit": samples.unit,
        "settings": asdict(settings),
    }
    target = write_latent_stats(source, stats, out=settings.out,
                                extra={"latent_stats": {count_key: report[count_key], "latent": report["latent"], "source": location}})
    report["tokenizer"] = str(target)
    (target / STATS_FILE).write_text(json.dumps(report, indent=2))
    for note in skip_notes(skipped, samples.unit):
        log.warning("%s", note)
    return report


def format_stats(report: dict[str, Any]) -> str:
    """Human-readable summary of a report from :func:`compute_dataset_latent_stats`."""
    unit = report.get("unit", "sample")
    channels = ", ".join(f"{m:+.4f}/{s:.4f}" for m, s in zip(report["channel_mean"], report["channel_std"]))
    return "\n".join([
        f"latent stats over {report[f'num_{unit}s']} {unit}s ({report['data'].get('source')}: {report['data'].get('location')}), "
        f"latents from latent_dist.{report['latent']}() ({report['regularizer']} regularizer)",
        f"shift = {report['shift']:.6f}   scale = {report['scale']:.6f}   (generator latents: (z - shift) / scale)",
        f"per-channel mean/std (information only): {channels}",
        f"previous: shift = {report['previous']['shift']:.6f}, scale = {report['previous']['scale']:.6f}",
        f"written to {report['tokenizer']}/config.json and {report['tokenizer']}/{STATS_FILE}",
    ])
