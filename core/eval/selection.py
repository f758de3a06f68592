"""Which samples the offline tools read, for any modality with a :class:`~core.data.datamodule.DataSpec`.

The evaluation command, the latent statistics and the gFID reference take a seeded class-stratified
subset (:func:`select_samples`); the latent cache encodes every sample in a fixed, optionally shuffled
order (:func:`list_cache_inputs`). The modality contributes its :class:`DataSpec` (which files are
samples, the demo data) and a ``load(ref) -> Tensor`` applying its evaluation transform.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from torch import Tensor

from core.data.datamodule import DataSpec
from core.data.folder_shards import read_shard_index
from core.data.sources import SampleRef, assign_labels, expand_shards, folder_class_names, list_files, list_shard_members, sample_key
from core.data.subset import stratified_subset
from core.eval.samples import CacheInputs, EvalSamples

__all__ = ["SourceData", "CacheSource", "select_samples", "list_cache_inputs"]

log = logging.getLogger("difftok.eval")


@dataclass
class SourceData:
    """Where an offline tool's samples come from: shards (when set), a folder, or the modality's demo data."""

    root: Optional[str] = None
    shards: Optional[str] = None
    demo: bool = False


@dataclass
class CacheSource(SourceData):
    """:class:`SourceData` plus the sub-folder of ``root`` to encode (default: ``train/`` when there are train/ and val/)."""

    split: Optional[str] = None


def _demo_root(spec: DataSpec) -> Path:
    if spec.export_demo is None:
        raise ValueError(f"this modality ships no demo {spec.noun}s: set data.root=FOLDER or data.shards=PATTERN")
    return Path(spec.export_demo(None))


def select_samples(spec: DataSpec, data: SourceData, count: int, seed: int, load: Callable[[SampleRef], Tensor],
                   transform: str) -> EvalSamples:
    """Every available sample with its class, then the seeded stratified subset of ``count`` (``<= 0``: all).

    Args:
        spec: the modality's data spec (sample extensions, demo data).
        data: folder / shards / demo.
        count: how many samples.
        seed: subset seed.
        load: ``ref -> (C, *spatial)`` in [-1, 1] (the modality's evaluation transform).
        transform: one line describing ``load`` (written to the report's protocol).
    """
    if data.shards:
        members = list_shard_members(expand_shards(data.shards), spec.shard_extensions)
        refs, labels, source, location = list(members), [m.label for m in members], "shards", str(data.shards)
    elif data.demo or data.root:
        root = _demo_root(spec) if data.demo else Path(str(data.root))
        files = list_files(root, spec.extensions, spec.noun)
        refs, labels = list(files), folder_class_names(files, root)
        source, location = ("demo" if data.demo else "folder"), str(root.resolve())
    else:
        raise ValueError(f"no evaluation {spec.noun}s: set data.root=FOLDER, data.shards=PATTERN or data.demo=true")
    chosen = stratified_subset(labels, len(refs) if count <= 0 else count, seed)
    report: dict[str, Any] = {
        "source": source, "location": location, "num_available": len(refs), "num_classes": len(set(labels)),
        f"num_{spec.noun}s_requested": count, "subset": "seeded class-stratified round-robin (subset.txt)", "subset_seed": seed,
    }
    return EvalSamples([refs[i] for i in chosen], [labels[i] for i in chosen], load, report, {"eval_transform": transform},
                       unit=spec.noun)


def _cache_root(spec: DataSpec, data: CacheSource) -> Path:
    root = _demo_root(spec) if data.demo else Path(str(data.root))
    if data.split:
        return root / data.split
    if (root / "train").is_dir() and (root / "val").is_dir():
        log.info("%s has train/ and val/: encoding train/ (pass data.split=val for the other)", root)
        return root / "train"
    return root



def list_cache_inputs(spec: DataSpec, data: CacheSource, labels: str, load: Callable[[SampleRef], Tensor], transform: str, *,
                      shuffle: bool = True, seed: int = 0) -> CacheInputs:
    """The samples of ``data`` with their labels (``labels``: folder | file | none), in the deterministic encoding order."""
    given = [name for name, on in (("data.root", bool(data.root)), ("data.shards", bool(data.shards)), ("data.demo", data.demo)) if on]
    if len(given) != 1:
        raise ValueError(f"give exactly one of data.root=FOLDER, data.shards=PATTERN, data.demo=true (got {given or 'none'})")
    label_names: list[str] | None
    if data.shards:
        members = list_shard_members(expand_shards(data.shards), spec.shard_extensions)
        if not members:
            raise FileNotFoundError(f"no {spec.noun} samples in data.shards={data.shards}")
        refs: list[SampleRef] = list(members)
        (group,), label_names = assign_labels([(refs, None)], labels)
        if label_names is None:  # stored labels: class names from the shards' index.json when present
            label_names = (read_shard_index(Path(members[0].shard).parent) or {}).get("classes")
        names = [f"{Path(m.shard).name}::{m.key}" for m in members]
        stems = [m.key for m in members]
        location = str(data.shards)
    else:
        root = _cache_root(spec, data)
        files = list_files(root, spec.extensions, spec.noun)
        refs = list(files)
        (group,), label_names = assign_labels([(refs, root)], labels)
        names = [f.relative_to(root).as_posix() for f in files]
        stems = [f.relative_to(root).with_suffix("").as_posix() for f in files]
        location = str(root.resolve())
    order = list(range(len(refs)))
    if shuffle:
        random.Random(seed).shuffle(order)
    digest = hashlib.sha1("\n".join(f"{names[i]}\t{group[i]}" for i in order).encode()).hexdigest()
    keys = [sample_key(position, stems[i]) for position, i in enumerate(order)]
    return CacheInputs([refs[i] for i in order], keys, [group[i] for i in order], label_names, location, digest, load,
                       transform, label_mode=labels)
