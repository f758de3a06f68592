"""Which images ``cache_latents`` encodes, in which order, with which labels (the loop: :mod:`core.latent.cache_command`).

Images get the evaluation transform (shorter side to ``size``, Lanczos; center crop ``size``; DiTo's
latent-DiT data prep). The input order is deterministic (sorted files, or shard order, then an
optional seeded shuffle so every shard mixes classes), so an interrupted run resumes exactly.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from core.data.folder_shards import read_shard_index
from core.data.sources import SampleRef as ImageRef, assign_labels, expand_shards, list_shard_members
from core.eval.samples import CacheInputs
from core.latent.cache_command import CacheLatentsSettings
from modalities.image.data import SHARD_IMAGE_EXTENSIONS, list_images
from modalities.image.demo import export_demo_dataset
from modalities.image.eval_suite import CenterCropLoader, EvalData

__all__ = ["CacheData", "ImageCacheLatentsSettings", "list_cache_inputs", "image_cache_inputs"]

log = logging.getLogger("difftok.image")


@dataclass
class CacheData(EvalData):
    """Where the images come from (one of ``root``, ``shards``, ``demo``; see :class:`EvalData`)."""

    split: Optional[str] = None  # sub-folder of root to encode; default: train/ when root has train/ and val/


@dataclass
class ImageCacheLatentsSettings(CacheLatentsSettings):
    """Arguments of ``python -m recipes.image.cache_latents`` (see its docstring)."""

    modality: str = "image"
    data: CacheData = field(default_factory=CacheData)
    size: int = 256
    labels: str = "folder"  # folder | file | none


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


def list_cache_inputs(data: CacheData, labels: str = "folder", *, shuffle: bool = True, seed: int = 0, size: int = 256) -> CacheInputs:
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
    loader = CenterCropLoader(size)
    return CacheInputs([refs[i] for i in order], keys, [group[i] for i in order], label_names, location, digest, loader,
                       f"shorter side {size} (Lanczos), center crop {size}", label_mode=labels)


def image_cache_inputs(settings: ImageCacheLatentsSettings) -> CacheInputs:
    """The image modality's ``cache_inputs`` hook."""
    return list_cache_inputs(settings.data, settings.labels, shuffle=settings.shuffle, seed=settings.seed, size=settings.size)


