"""Samples chosen for an offline tool, and the loader that reads them with unreadable ones skipped and counted.

A modality lists its samples (``refs``: paths, tar members, ... — opaque to core) and supplies ``load(ref) ->
Tensor`` (open one sample and apply its evaluation transform). Core owns the rest: the dataset, the
collation that drops unreadable samples while keeping every sample's position, and the report fields.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from core.data.skips import UNREADABLE_ERRORS, skip_kind

__all__ = ["SampleRequest", "EvalSamples", "CacheInputs", "LoadedSamples", "collate_loaded", "sample_loader"]

log = logging.getLogger("difftok.eval")


@dataclass(frozen=True)
class SampleRequest:
    """Which samples an offline tool wants from a modality.

    Attributes:
        data: the modality's own data options (image: ``SourceData`` with ``root``/``shards``/``demo``).
        count: how many (a seeded class-stratified subset); ``<= 0``: all of them.
        seed: subset seed.
        size: the modality's sample size for the evaluation transform (image: side in pixels).
    """

    data: Any
    count: int
    seed: int
    size: Any


@dataclass
class EvalSamples:
    """Samples selected for evaluation (or statistics), as returned by ``Modality.select_eval_samples``.

    Attributes:
        refs: one reference per sample, in evaluation order (written to ``subset.txt``).
        labels: class of each sample (anything printable).
        load: ``ref -> Tensor (C, *spatial)`` in [-1, 1]; raises one of :data:`~core.data.skips.UNREADABLE_ERRORS` for a bad file.
        report: JSON-ready description of the selection (source, location, counts), copied into reports.
        protocol: JSON-ready description of the transform (e.g. ``{"eval_transform": "..."}``).
        unit: what one sample is called in reports (``"image"`` gives ``num_images``).
    """

    refs: list[Any]
    labels: list[Any]
    load: Callable[[Any], Tensor]
    report: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, str] = field(default_factory=dict)
    unit: str = "sample"


@dataclass
class CacheInputs:
    """Samples to encode into a latent cache, in encoding order (``Modality.cache_inputs``).

    Attributes:
        refs: one reference per sample.
        keys: dot-free, unique sample keys of the cache.
        labels: integer class per sample.
        label_names: class names (index order) or None.
        location: where the samples came from (for reports).
        digest: hash of the sample names and labels in order; a resumed cache must match it.
        load: ``ref -> Tensor (C, *spatial)``, as in :class:`EvalSamples`.
        transform: one line describing ``load``'s transform (stored in the cache's settings).
        label_mode: how the labels were assigned (stored in the cache's settings; image: folder, file or none).
    """

    refs: list[Any]
    keys: list[str]
    labels: list[int]
    label_names: list[str] | None
    location: str
    digest: str
    load: Callable[[Any], Tensor]
    transform: str = ""
    label_mode: str = "none"


class LoadedSamples(Dataset):
    """``load(refs[i])`` for positions ``start, start + 1, ...``; unreadable samples are flagged, not replaced.

    Items: ``{"x": Tensor | None, "index": position, "label": label or -1, "skip": kind or None}``; a sample
    that could not be used is ``x=None`` with its skip kind (:func:`~core.data.skips.skip_kind`: ``unreadable``,
    or ``too_short`` for a readable clip shorter than the evaluation length).
    """

    def __init__(self, refs: Sequence[Any], load: Callable[[Any], Tensor], labels: Sequence[int] | None = None, start: int = 0) -> None:
        self.refs, self.load, self.labels, self.start = refs, load, labels, start

    def __len__(self) -> int:
        return len(self.refs) - self.start

    def __getitem__(self, offset: int) -> dict[str, Any]:
        position = self.start + offset
        skip: str | None = None
        try:
            x: Tensor | None = self.load(self.refs[position])
        except UNREADABLE_ERRORS as err:
            skip = skip_kind(err)
            log.warning("skipping %s sample %s (%s)", skip.replace("_", "-"), self.refs[position], err)
            x = None
        return {"x": x, "index": position, "label": -1 if self.labels is None else int(self.labels[position]), "skip": skip}


def collate_loaded(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch of the readable items: ``x`` (B_ok, C, *spatial) or None, ``index``/``label`` (B_ok,), ``unreadable``
    (all skipped items), ``skips`` (``{kind: count}``) and ``count``."""
    ok = [item for item in items if item["x"] is not None]
    skips = Counter(item.get("skip") or "unreadable" for item in items if item["x"] is None)
    return {
        "x": torch.stack([item["x"] for item in ok]) if ok else None,
        "index": torch.tensor([item["index"] for item in ok], dtype=torch.long),
        "label": torch.tensor([item["label"] for item in ok], dtype=torch.long),
        "unreadable": len(items) - len(ok),
        "skips": dict(skips),
        "count": len(items),
    }


def sample_loader(dataset: LoadedSamples, batch_size: int, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """In-order loader of :class:`LoadedSamples` batches (see :func:`collate_loaded`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, collate_fn=collate_loaded,
                      pin_memory=pin_memory)
