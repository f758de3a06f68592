"""Encode a dataset once into a latent cache (:mod:`core.latent.cache`) for generator training, any modality.

The modality lists the samples in encoding order with their labels and loader
(``Modality.cache_inputs`` -> :class:`~core.eval.samples.CacheInputs`; image: the eval transform,
deterministic order plus an optional seeded shuffle so every shard mixes classes). The tokenizer
encodes in eval mode under ``no_grad``. An interrupted run resumes exactly: complete shards are
skipped without re-encoding, and encoding restarts on the same batch grid as an uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from core.eval.runtime import resolve_device
from core.eval.samples import LoadedSamples, sample_loader
from core.latent.cache import LatentBatch, LatentCacheResult, LatentCacheSettings, LatentCacheWriter, TokenizerInfo
from core.latent.cache_format import file_fingerprint
from core.modality import get_modality
from core.training.checkpoint_load import load_autoencoder

__all__ = ["CacheLatentsSettings", "tokenizer_fingerprint", "encode_batch", "cache_latents"]

log = logging.getLogger("difftok.latent")


@dataclass
class CacheLatentsSettings:
    """Modality-independent arguments of the ``cache_latents`` command.

    A modality subclasses this with where its samples come from (image:
    :class:`modalities.image.latent_cache.ImageCacheLatentsSettings`), read by its ``cache_inputs`` hook.
    """

    modality: str = ""
    tokenizer: Optional[str] = None  # save_pretrained folder (or a Lightning .ckpt)
    out: Optional[str] = None
    batch_size: int = 64
    flip: bool = False  # also store latents of the flipped sample (flip_axis)
    flip_axis: int = -1  # data axis the flip reverses (image: -1, a horizontal flip)
    dtype: str = "float32"  # float32 | float16
    samples_per_shard: int = 1000
    device: str = "auto"
    num_workers: int = 4
    shuffle: bool = True  # seeded shuffle of the input order (shards then mix classes)
    seed: int = 0
    bf16: bool = False  # bf16 autocast while encoding (CUDA only; ignored on CPU)
    use_ema: bool = True  # Lightning checkpoints: EMA weights when present
    max_shards: Optional[int] = None  # stop after this many new shards (resume later)
    overwrite: bool = False
    progress: bool = True


def tokenizer_fingerprint(path: str | Path, use_ema: bool = True) -> str:
    """Hash of a tokenizer's config and weights (folder) or checkpoint file (+ the EMA choice)."""
    path = Path(path)
    if path.is_dir():
        return file_fingerprint(path / "config.json", path / "model.safetensors")
    return f"{file_fingerprint(path)}:{'ema' if use_ema else 'live'}"


@torch.no_grad()
def encode_batch(model: Any, x: Tensor, flip: bool, bf16: bool, flip_axis: int = -1) -> dict[str, Tensor | None]:
    """Latent mean/std of ``x`` (and of ``x`` reversed along ``flip_axis``), float32."""
    out: dict[str, Tensor | None] = {}
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        for suffix, samples in (("", x), ("_flip", x.flip(flip_axis) if flip else None)):
            if samples is None:
                continue
            dist = model.encode(samples).latent_dist
            out[f"mean{suffix}"] = dist.mean.float()
            out[f"std{suffix}"] = None if dist.std is None else dist.std.float()
    return out


def cache_latents(settings: CacheLatentsSettings) -> tuple[LatentCacheResult, dict[str, Any]]:
    """Encode the samples of ``settings`` into ``settings.out``; returns the writer result and a summary."""
    if not settings.tokenizer or not settings.out:
        raise ValueError("tokenizer=EXPORT_DIR and out=DIR are required (see --help)")
    if settings.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {settings.batch_size}")
    modality = get_modality(settings.modality)
    modality.require_hooks("cache_latents", "cache_inputs")
    begin = time.perf_counter()
    device = resolve_device(settings.device)
    bf16 = settings.bf16 and device.type == "cuda"
    if settings.bf16 and not bf16:
        log.warning("bf16=true is ignored on %s (autocast only on CUDA); encoding in float32", device)
    inputs = modality.cache_inputs(settings)
    loaded = load_autoencoder(settings.tokenizer, modality=modality.name, use_ema=settings.use_ema)
    model = loaded.model.to(device).eval()
    tokenizer = TokenizerInfo(str(Path(settings.tokenizer).resolve()), tokenizer_fingerprint(settings.tokenizer, settings.use_ema),
                              model.latent_stats.shift, model.latent_stats.scale)
    source = {
        "inputs": inputs.digest, "labels": inputs.label_mode, "shuffle": settings.shuffle, "seed": settings.seed,
        "transform": inputs.transform, "flip": settings.flip,
        "precision": "bf16-autocast" if bf16 else "float32", "batch_size": settings.batch_size,
    }
    if settings.flip and settings.flip_axis != -1:  # recorded only when not the default, so older caches still resume
        source["flip_axis"] = settings.flip_axis
    num_classes = len(inputs.label_names) if inputs.label_names else max(inputs.labels) + 1
    writer = LatentCacheWriter(
        settings.out, LatentCacheSettings(settings.samples_per_shard, settings.dtype, source), num_inputs=len(inputs.refs),
        tokenizer=tokenizer, num_classes=num_classes, label_names=inputs.label_names, overwrite=settings.overwrite,
    )
    # restart on the batch grid of an uninterrupted run: identical batches give bit-identical latents
    start = writer.resume_position - writer.resume_position % settings.batch_size
    encoded = 0

    def batches() -> Any:
        nonlocal encoded
        loader = sample_loader(LoadedSamples(inputs.refs, inputs.load, inputs.labels, start), settings.batch_size,
                               settings.num_workers, pin_memory=device.type == "cuda")
        for batch in loader:
            if batch["x"] is None:
                continue
            positions = batch["index"].tolist()
            latents = encode_batch(model, batch["x"].to(device, non_blocking=True), settings.flip, bf16, settings.flip_axis)
            encoded += len(positions)
            yield LatentBatch(keys=[inputs.keys[p] for p in positions], labels=batch["label"], positions=positions,
                              mean=latents["mean"], std=latents["std"], mean_flip=latents.get("mean_flip"),  # type: ignore[arg-type]
                              std_flip=latents.get("std_flip"))

    result = writer.write(batches(), start=start, max_shards=settings.max_shards, progress=settings.progress)
    elapsed = time.perf_counter() - begin
    index = result.index
    summary = {
        "out": str(Path(settings.out).resolve()), "count": result.count, "num_inputs": len(inputs.refs),
        "skipped": (len(inputs.refs) - result.count) if result.complete else None, "shards": result.num_shards,
        "written_shards": result.written_shards, "resumed_shards": result.resumed_shards, "complete": result.complete,
        "latent_shape": list(index.latent_shape) if index else None, "has_std": index.has_std if index else None,
        "flip": settings.flip, "dtype": settings.dtype, "num_classes": num_classes, "source": inputs.location,
        "device": str(device), "precision": source["precision"], "encoded_images": encoded, "seconds": round(elapsed, 2),
        "encode_images_per_s": round(encoded / result.elapsed_s, 2) if encoded and result.elapsed_s > 0 else None,
    }
    return result, summary
