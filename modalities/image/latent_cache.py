"""Which images ``cache_latents`` encodes, in which order, with which labels (the loop: :mod:`core.latent.cache_command`).

Images get the evaluation transform (shorter side to ``size``, Lanczos; center crop ``size``; DiTo's
latent-DiT data prep). The input order is deterministic (sorted files, or shard order, then an
optional seeded shuffle so every shard mixes classes), so an interrupted run resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.eval.samples import CacheInputs
from core.eval.selection import CacheSource
from core.eval.selection import list_cache_inputs as list_source_cache_inputs
from core.latent.cache_command import CacheLatentsSettings
from modalities.image.data import IMAGE_DATA
from modalities.image.eval_suite import CenterCropLoader

__all__ = ["ImageCacheLatentsSettings", "list_cache_inputs", "image_cache_inputs"]


@dataclass
class ImageCacheLatentsSettings(CacheLatentsSettings):
    """Arguments of ``python -m recipes.image.cache_latents`` (see its docstring)."""

    modality: str = "image"
    data: CacheSource = field(default_factory=CacheSource)
    size: int = 256
    labels: str = "folder"  # folder | file | none


def list_cache_inputs(data: CacheSource, labels: str = "folder", *, shuffle: bool = True, seed: int = 0, size: int = 256) -> CacheInputs:
    """The images of ``data`` with their labels, in the (deterministic) encoding order, center-cropped to ``size``."""
    loader = CenterCropLoader(size)
    return list_source_cache_inputs(IMAGE_DATA, data, labels, loader, f"shorter side {size} (Lanczos), center crop {size}",
                                    shuffle=shuffle, seed=seed)


def image_cache_inputs(settings: ImageCacheLatentsSettings) -> CacheInputs:
    """The image modality's ``cache_inputs`` hook."""
    return list_cache_inputs(settings.data, settings.labels, shuffle=settings.shuffle, seed=settings.seed, size=settings.size)
