"""Encode an image dataset once into a latent cache (:mod:`core.latent.cache`) for generator training.

Images get the evaluation transform (shorter side to ``size``, Lanczos; center crop ``size``; DiTo's
latent-DiT data prep) and are encoded with the tokenizer in eval mode under ``no_grad``. The input
order is deterministic (sorted files, or shard order, then an optional seeded shuffle so every shard
mixes classes), so an interrupted run resumes exactly: complete shards are skipped without
re-encoding, and encoding restarts on the same batch grid as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from core.data.folder_shards import read_shard_index
from core.data.sources import SampleRef as ImageRef, assign_labels, expand_shards, list_shard_members
from core.latent.cache import LatentBatch, LatentCacheResult, LatentCacheSettings, LatentCacheWriter, TokenizerInfo
from core.latent.cache_format import file_fingerprint
from modalities.image.data import SHARD_IMAGE_EXTENSIONS, ImageTransform, list_images, open_image
from modalities.image.demo import export_demo_dataset
from modalities.image.eval_suite import EvalData, resolve_device

__all__ = ["CacheData", "CacheLatentsSettings", "CacheInputs", "list_cache_inputs", "tokenizer_fingerprint", "encode_batch", "cache_latents"]

log = logging.getLogger("difftok.image")


@dataclass
class CacheData(EvalData):
    """Where the images come from (one of ``root``, ``shards``, ``demo``; see :class:`EvalData`)."""

    split: Optional[str] = None  # sub-folder of root to encode; default: train/ when root has train/ and val/


@dataclass
class CacheLatentsSettings:
    """Arguments of ``python -m recipes.image.cache_latents`` (see its docstring)."""

    tokenizer: Optional[str] = None  # save_pretrained folder (or a Lightning .ckpt)
    data: CacheData = field(default_factory=CacheData)
    out: Optional[str] = None
    size: int = 256
    batch_size: int = 64
    flip: bool = False  # also store latents of the horizontally flipped image
    dtype: str = "float32"  # float32 | float16
    samples_per_shard: int = 1000
    device: str = "auto"
    num_workers: int = 4
    labels: str = "folder"  # folder | file | none
    shuffle: bool = True  # seeded shuffle of the input order (shards then mix classes)
    seed: int = 0
    bf16: bool = False  # bf16 autocast while encoding (CUDA only; ignored on CPU)
    use_ema: bool = True  # Lightning checkpoints: EMA weights when present
    max_shards: Optional[int] = None  # stop after this many new shards (resume later)
    overwrite: bool = False
    progress: bool = True


@dataclass
class CacheInputs:
    """The images to encode, in encoding order."""

    refs: list[ImageRef]
    keys: list[str]  # dot-free, unique
    labels: list[int]
    label_names: list[str] | None
    location: str
    digest: str  # hash of the (relative) names and labels in order


def _key(position: int, name: str) -> str:
    return f"{position:08d}_{re.sub(r'[^A-Za-z0-9_-]+', '_', name)[-80:]}"


def _image_root(data: CacheData) -> Path:
    root = export_demo_dataset() if data.demo else Path(str(data.root))
    if data.split:
        return root / data.split
    if (root / "train").is_dir() and (root / "val").is_dir():
        log.info("%s has train/ and val/: encoding train/ (pass data.split=val for the other)", root)
        return root / "train"
    return root


def list_cache_inputs(data: CacheData, labels: str = "folder", *, shuffle: bool = True, seed: int = 0) -> CacheInputs:
    """List the images of ``data`` with their labels, in the (deterministic) encoding order."""
    given = [name for name, on in (("data.root", bool(data.root)), ("data.shards", bool(data.shards)), ("data.demo", data.demo)) if on]
    if len(given) != 1:
        raise ValueError(f"give exactly one of data.root=FOLDER, data.shards=PATTERN, data.demo=true (got {given or 'none'})")
    label_names: list[str] | None
    if data.shards:
        members = list_shard_members(expand_shards(data.shards), SHARD_IMAGE_EXTENSIONS)
        if not members:
            raise FileNotFoundError(f"no image samples in data.shards={data.shards}")
        refs: list[ImageRef] = list(members)
        (group,), label_names = assign_labels([(refs, None)], labels)
        if label_names is None:  # stored labels: class names from make_shards' index.json when present
            index = read_shard_index(Path(members[0].shard).parent) or {}
            label_names = index.get("classes")
        names = [f"{Path(m.shard).name}::{m.key}" for m in members]
        stems = [m.key for m in members]
        location = str(data.shards)
    else:
        root = _image_root(data)
        files = list_images(root)
        refs = list(files)
        (group,), label_names = assign_labels([(refs, root)], labels)
        names = [f.relative_to(root).as_posix() for f in files]
        stems = [f.relative_to(root).with_suffix("").as_posix() for f in files]
        location = str(root.resolve())
    order = list(range(len(refs)))
    if shuffle:
        random.Random(seed).shuffle(order)
    digest = hashlib.sha1("\n".join(f"{names[i]}\t{group[i]}" for i in order).encode()).hexdigest()
    keys = [_key(position, stems[i]) for position, i in enumerate(order)]
    return CacheInputs([refs[i] for i in order], keys, [group[i] for i in order], label_names, location, digest)


def tokenizer_fingerprint(path: str | Path, use_ema: bool = True) -> str:
    """Hash of a tokenizer's config and weights (folder) or checkpoint file (+ the EMA choice)."""
    path = Path(path)
    if path.is_dir():
        return file_fingerprint(path / "config.json", path / "model.safetensors")
    return f"{file_fingerprint(path)}:{'ema' if use_ema else 'live'}"


class _CenterCrops(Dataset):
    """Eval-transformed images by position; unreadable ones are flagged (``ok=False``), not replaced."""

    def __init__(self, inputs: CacheInputs, size: int, start: int) -> None:
        self.inputs, self.start = inputs, start
        self.transform, self.size = ImageTransform(size, size, train=False), size

    def __len__(self) -> int:
        return len(self.inputs.refs) - self.start

    def __getitem__(self, offset: int) -> dict[str, Any]:
        position = self.start + offset
        ref = self.inputs.refs[position]
        try:
            x = self.transform(open_image(ref), rng=None)  # type: ignore[arg-type]  # eval: no randomness
            ok = True
        except (OSError, ValueError, SyntaxError) as err:
            log.warning("skipping unreadable image %s (%s)", ref, err)
            x, ok = torch.zeros(3, self.size, self.size), False
        return {"x": x, "position": position, "ok": ok, "label": self.inputs.labels[position]}


@torch.no_grad()
def encode_batch(model: Any, x: Tensor, flip: bool, bf16: bool) -> dict[str, Tensor | None]:
    """Latent mean/std of ``x`` (and of ``x`` flipped left-right), float32."""
    out: dict[str, Tensor | None] = {}
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        for suffix, images in (("", x), ("_flip", x.flip(-1) if flip else None)):
            if images is None:
                continue
            dist = model.encode(images).latent_dist
            out[f"mean{suffix}"] = dist.mean.float()
            out[f"std{suffix}"] = None if dist.std is None else dist.std.float()
    return out


def cache_latents(settings: CacheLatentsSettings) -> tuple[LatentCacheResult, dict[str, Any]]:
    """Encode the images of ``settings.data`` into ``settings.out``; returns the writer result and a summary."""
    from core.training.checkpoint_load import load_autoencoder

    if not settings.tokenizer or not settings.out:
        raise ValueError("tokenizer=EXPORT_DIR and out=DIR are required (see --help)")
    if settings.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {settings.batch_size}")
    begin = time.perf_counter()
    device = resolve_device(settings.device)
    bf16 = settings.bf16 and device.type == "cuda"
    if settings.bf16 and not bf16:
        log.warning("bf16=true is ignored on %s (autocast only on CUDA); encoding in float32", device)
    inputs = list_cache_inputs(settings.data, settings.labels, shuffle=settings.shuffle, seed=settings.seed)
    loaded = load_autoencoder(settings.tokenizer, modality="image", use_ema=settings.use_ema)
    model = loaded.model.to(device).eval()
    tokenizer = TokenizerInfo(str(Path(settings.tokenizer).resolve()), tokenizer_fingerprint(settings.tokenizer, settings.use_ema),
                              model.latent_stats.shift, model.latent_stats.scale)
    source = {
        "inputs": inputs.digest, "labels": settings.labels, "shuffle": settings.shuffle, "seed": settings.seed,
        "transform": f"shorter side {settings.size} (Lanczos), center crop {settings.size}", "flip": settings.flip,
        "precision": "bf16-autocast" if bf16 else "float32", "batch_size": settings.batch_size,
    }
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
        loader = DataLoader(_CenterCrops(inputs, settings.size, start), batch_size=settings.batch_size, shuffle=False,
                            num_workers=settings.num_workers, pin_memory=device.type == "cuda")
        for batch in loader:
            ok = batch["ok"].bool()
            if not ok.any():
                continue
            positions = batch["position"][ok].tolist()
            latents = encode_batch(model, batch["x"][ok].to(device, non_blocking=True), settings.flip, bf16)
            encoded += len(positions)
            yield LatentBatch(keys=[inputs.keys[p] for p in positions], labels=batch["label"][ok], positions=positions,
                              mean=latents["mean"], std=latents["std"], mean_flip=latents.get("mean_flip"),  # type: ignore[arg-type]
                              std_flip=latents.get("std_flip"))

    result = writer.write(batches(), start=start, max_shards=settings.max_shards,
                          progress=settings.progress)
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
