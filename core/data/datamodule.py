"""Generic map-style dataset and LightningDataModule for tokenizer training on any modality.

Sources: a folder (``data.root``; a ``train/`` + ``val/`` pair, or one folder with a seeded holdout of
``data.holdout`` files), the modality's bundled demo data (``data.demo``), or webdataset shards
(``data.shards``, streamed by :mod:`core.data.stream`; evaluation then uses the folder when given, a
seeded class-stratified subset of ``data.holdout`` of its files, else the first samples of the
first shard). Unreadable files are skipped, counted and reported; the run continues.

The modality supplies a :class:`DataSpec`: which files are samples, how to open one, its typed
options and its train/eval transforms. Items are ``{"x": tensor, "key": str, "cls": int}``.
"""

from __future__ import annotations

import functools
import logging
import random
import tarfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from core.data.folder_shards import read_shard_index
from core.data.options import SampleDataOptions, parse_options
from core.data.resumable import ResumableDataModule, ResumableSampler, loader_generator
from core.data.skips import UNREADABLE_ERRORS, SkipLog, skip_kind
from core.data.sources import SampleRef, assign_labels, expand_shards, folder_class_names, list_files, list_shard_members
from core.data.stream import make_shard_stream, plan_epoch
from core.data.subset import holdout_split, stratified_subset

__all__ = ["SampleTransform", "DataSpec", "SampleDataset", "ShardSampleDecoder", "SampleDataModule"]


class SampleTransform(Protocol):
    """A modality's train or eval transform: opened sample + random stream -> tensor."""

    def __call__(self, sample: Any, rng: random.Random) -> Tensor: ...

    def for_cache(self, sample: Any) -> Any:
        """What the in-memory cache keeps of an opened sample (e.g. a pre-resized image)."""
        ...


@dataclass(frozen=True)
class DataSpec:
    """What a modality contributes to :class:`SampleDataModule`.

    Attributes:
        noun: what one sample is, in messages (``"image"``).
        extensions: file suffixes (with dot, case-insensitive) that are samples in a folder.
        shard_extensions: member extensions (dot-less, lower case) that are the sample in a shard.
        open_ref: path or :class:`~core.data.sources.TarMember` -> opened sample; raises one of
            :data:`~core.data.skips.UNREADABLE_ERRORS` on corrupt data.
        open_bytes: encoded bytes -> opened sample (streamed shards).
        check: path or tar member -> None, raising on an unreadable file (the setup scan; may be
            stricter than ``open_ref``).
        options_type: the modality's options dataclass (extends :class:`SampleDataOptions`).
        train_transform: ``(options, data config) -> SampleTransform`` for training.
        eval_transform: ``(options, data config) -> SampleTransform`` for evaluation and previews.
        export_demo: ``(directory or None) -> folder`` writing the bundled demo data (``train/`` + ``val/``).
        logger: where skips are reported.
    """

    noun: str
    extensions: tuple[str, ...]
    shard_extensions: tuple[str, ...]
    open_ref: Callable[[SampleRef], Any]
    open_bytes: Callable[[bytes], Any]
    check: Callable[[SampleRef], None]
    options_type: type[SampleDataOptions]
    train_transform: Callable[[Any, Any], SampleTransform]
    eval_transform: Callable[[Any, Any], SampleTransform]
    export_demo: Callable[[str | None], Path] | None = None
    logger: logging.Logger = logging.getLogger("difftok.data")


class SampleDataset(Dataset):
    """Samples from a list of files (or tar-shard members); bad files are skipped and counted.

    Args:
        files: paths or :class:`~core.data.sources.TarMember` references.
        open_ref: reference -> opened sample (the modality's decoder).
        transform: the modality's :class:`SampleTransform`.
        samples_per_epoch: virtual length (>= len(files)) so tiny folders still fill batches.
        cache: keep opened samples (``transform.for_cache``) in memory, per process.
        seed: base seed of the transform's randomness.
        labels: class index per file (returned as ``"cls"``); None: tar members' stored label, else 0.
        logger: where skipped files are reported.
    """

    def __init__(self, files: list[SampleRef], open_ref: Callable[[SampleRef], Any], transform: SampleTransform,
                 samples_per_epoch: int = 0, cache: bool = False, seed: int = 0, labels: list[int] | None = None,
                 logger: logging.Logger | None = None) -> None:
        if not files:
            raise ValueError(f"{type(self).__name__} needs at least one file")
        if labels is not None and len(labels) != len(files):
            raise ValueError(f"got {len(labels)} labels for {len(files)} files")
        self.files, self.open_ref, self.transform = list(files), open_ref, transform
        self.labels = list(labels) if labels is not None else [int(getattr(f, "label", 0)) for f in self.files]
        self.length = max(len(self.files), samples_per_epoch)
        self.cache_enabled, self._cache = cache, {}
        self.seed = seed
        self.skips = SkipLog(logger or logging.getLogger("difftok.data"), "file")
        self._draws = 0

    @property
    def skipped(self) -> dict[str, str]:
        """``{file: reason}`` of the files skipped so far in this process."""
        return self.skips.reasons

    def __len__(self) -> int:
        return self.length

    def _load(self, ref: SampleRef) -> Any:
        key = str(ref)
        if key in self._cache:
            return self._cache[key]
        sample = self.open_ref(ref)
        if self.cache_enabled:
            sample = self.transform.for_cache(sample)
            self._cache[key] = sample
        return sample

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """Sample ``index`` (from the next file that opens when it is unreadable).

        ``index`` may be an ``(index, draw)`` pair (what :class:`~core.data.resumable.ResumableSampler`
        yields): the augmentation is then seeded by (seed, index, draw) alone, so it does not depend on
        which worker process serves it or on how many samples that process drew before (exact resume).
        A plain index numbers its draws with a per-process counter.
        """
        if isinstance(index, (tuple, list)):
            index, draw = int(index[0]), int(index[1])
        else:
            self._draws += 1
            draw = -self._draws  # negative: never collides with a sampler's draw numbers
        rng = random.Random(hash((self.seed, index, draw)))  # ints hash to themselves: stable across processes
        for attempt in range(len(self.files)):
            position = (index + attempt) % len(self.files)
            ref = self.files[position]
            if ref in self.skips:
                continue
            try:
                return {"x": self.transform(self._load(ref), rng), "key": ref.stem, "cls": self.labels[position]}
            except UNREADABLE_ERRORS as err:
                self.skips.record(ref, f"{type(err).__name__}: {err}", skip_kind(err))
        raise RuntimeError(f"every file is unreadable ({len(self.skips)} skipped); first: {next(iter(self.skipped.items()))}")


@dataclass(frozen=True)
class ShardSampleDecoder:
    """Stream decoder (:data:`core.data.stream.EpochDecoder`) of ``<key>.<ext>`` + ``<key>.cls`` shard samples."""

    open_bytes: Callable[[bytes], Any]
    extensions: tuple[str, ...]
    transform: SampleTransform

    def __call__(self, rng: random.Random) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return functools.partial(self.decode, rng=rng)

    def decode(self, sample: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """One raw sample -> ``{"x", "key", "cls"}`` (``cls`` -1 without a label member)."""
        extension = next((e for e in self.extensions if e in sample), None)
        if extension is None:
            raise ValueError(f"no sample member (one of {self.extensions}); members: {sorted(sample)}")
        label = int(sample["cls"].decode() if isinstance(sample.get("cls"), bytes) else sample.get("cls", -1))
        return {"x": self.transform(self.open_bytes(sample[extension]), rng), "key": str(sample.get("__key__", "?")), "cls": label}


class SampleDataModule(ResumableDataModule):
    """Folder / demo / shard data of one modality for tokenizer training (see the module docstring).

    The training data position is checkpointed (:class:`~core.data.resumable.ResumableDataModule`):
    a resumed run continues the permutation or stream where the checkpointed run was.

    Args:
        cfg: :class:`core.training.config.DataConfig`; ``cfg.options`` is validated into ``spec.options_type``.
        spec: the modality's :class:`DataSpec`.
        seed: seed of the holdout split, subsets and transforms.
        batch_size: per-device batch (default ``cfg.batch_size``).
    """

    def __init__(self, cfg: Any, spec: DataSpec, seed: int = 0, batch_size: int | None = None) -> None:
        super().__init__()
        self.cfg, self.spec, self.seed = cfg, spec, seed
        self.batch_size = batch_size or cfg.batch_size
        self.options = parse_options(spec.options_type, cfg.options)
        self.train_transform = spec.train_transform(self.options, cfg)  # validates size-dependent options early
        self.eval_transform = spec.eval_transform(self.options, cfg)
        self.labels: dict[str, int] = {}  # str(ref) -> class index
        self.class_names: list[str] | None = None
        self.skipped: dict[str, str] = {}
        self.skip_counts: Counter[str] = Counter()  # setup scan: kind (unreadable, too_short) -> files dropped
        self.shard_urls: list[str] = expand_shards(cfg.shards) if cfg.shards else []
        self.train_files, self.val_files = self._split_shards() if self.shard_urls else self._split_files()

    def _data_root(self) -> Path | None:
        cfg = self.cfg
        if cfg.demo:
            if self.spec.export_demo is None:
                raise ValueError(f"this modality has no demo data; set data.root= to a folder of {self.spec.noun}s")
            return Path(self.spec.export_demo(cfg.root))
        return Path(cfg.root) if cfg.root else None

    def _list(self, root: Path) -> list[SampleRef]:
        skips = SkipLog(self.spec.logger, f"{self.spec.noun} path")  # dangling links, loops, unreadable folders
        files = list(list_files(root, self.spec.extensions, self.spec.noun, skips=skips))
        self.skipped.update(skips.reasons)
        return files

    def _split_files(self) -> tuple[list[SampleRef], list[SampleRef]]:
        root = self._data_root()
        if root is None:
            raise ValueError(f"no {self.spec.noun} data given: set data.root=/path/to/files, data.shards=... or data.demo=true")
        if (root / "train").is_dir() and (root / "val").is_dir():
            train, val = self._list(root / "train"), self._list(root / "val")
            self._assign_labels([(train, root / "train"), (val, root / "val")])
        else:
            files = self._list(root)
            self._assign_labels([(files, root)])
            train_idx, val_idx = holdout_split(len(files), int(self.cfg.holdout), self.seed)
            train, val = [files[i] for i in train_idx], [files[i] for i in val_idx]
        train, val = self._verified(train), self._verified(val)
        if not train:
            raise FileNotFoundError(f"no readable training {self.spec.noun}s under {root} ({len(self.skipped)} unreadable)")
        return train, val

    def _split_shards(self) -> tuple[list[SampleRef], list[SampleRef]]:
        """Training streams the shards; returns ([], evaluation references)."""
        root = self._data_root()
        holdout = int(self.cfg.holdout)
        if root is None:
            members: list[SampleRef] = list(self._first_shard_members()[: max(holdout, 8)])
            self._assign_labels([(members, None)])
            return [], self._verified(members)
        eval_root = root / "val" if (root / "val").is_dir() else root
        files = self._list(eval_root)
        self._assign_labels([(files, eval_root)])
        if holdout <= 0:
            return [], self._verified(files)
        # walk the full stratified order and keep the first `holdout` readable files
        chosen: list[SampleRef] = []
        for index in stratified_subset(folder_class_names(files, eval_root), len(files), self.seed):
            chosen.extend(self._verified([files[index]]))
            if len(chosen) == holdout:
                break
        return [], chosen

    def _first_shard_members(self) -> list[SampleRef]:
        """The first shard's samples (the evaluation set when no folder is given); a shard that cannot
        be read fails setup naming it."""
        url = self.shard_urls[0]
        try:
            members = list_shard_members([url], self.spec.shard_extensions)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ValueError(
                f"cannot read the first shard {url} (it gives the evaluation samples when data.root is not set): "
                f"{type(err).__name__}: {err}. Re-create or remove that shard, or set data.root= to an evaluation folder"
            ) from err
        if not members:
            raise ValueError(f"the first shard {url} holds no {self.spec.noun} sample (extensions {self.spec.shard_extensions})")
        return members

    def _assign_labels(self, groups: list[tuple[list[SampleRef], Path | None]]) -> None:
        """Class index of every listed reference (before unreadable files are dropped, so indices
        match the latent-cache command on the same folder)."""
        labels, self.class_names = assign_labels(groups, self.options.labels)
        self.labels = {str(ref): label for (refs, _), group in zip(groups, labels) for ref, label in zip(refs, group)}

    def labels_of(self, files: list[SampleRef]) -> list[int]:
        """Class index of each reference (``data.options.labels``)."""
        return [self.labels[str(ref)] for ref in files]

    def _verified(self, files: list[SampleRef]) -> list[SampleRef]:
        """The files that pass the modality's check; the others are recorded in :attr:`skipped` and logged."""
        if not self.options.verify or not files:
            return files
        good, bad = [], {}
        for ref in files:
            try:
                self.spec.check(ref)
                good.append(ref)
            except Exception as err:  # decoders raise many types for corrupt data
                bad[str(ref)] = f"{type(err).__name__}: {err}"
                self.skip_counts[skip_kind(err)] += 1
        if bad:
            self.skipped.update(bad)
            shown = "; ".join(f"{k} ({v})" for k, v in list(bad.items())[:5])
            self.spec.logger.warning("skipped %d unreadable %s file(s): %s", len(bad), self.spec.noun, shown)
        return good

    def stream_epoch_samples(self) -> int:
        """Global samples per epoch when streaming: option, else the shards' ``index.json`` count."""
        if self.options.samples_per_epoch > 0:
            return self.options.samples_per_epoch
        index = read_shard_index(Path(self.shard_urls[0]).parent) if "://" not in self.shard_urls[0] else None
        if index and index.get("num_samples"):
            return int(index["num_samples"])
        guess = 1000 * len(self.shard_urls)
        self.spec.logger.warning("no index.json next to the shards: assuming %d %ss per epoch (set data.options.samples_per_epoch)",
                                 guess, self.spec.noun)
        return guess

    def train_dataset(self) -> Any:
        """Map-style folder dataset, or the infinite shard stream (``IterableDataset``) with ``data.shards``."""
        if self.shard_urls:
            rank, world = self.rank_and_world()
            plan = plan_epoch(self.stream_epoch_samples(), self.batch_size, int(self.cfg.num_workers), world)
            decoder = ShardSampleDecoder(self.spec.open_bytes, self.spec.shard_extensions, self.train_transform)
            return make_shard_stream(self.shard_urls, decoder, plan, seed=self.seed, shuffle_buffer=self.options.shuffle_buffer,
                                     rank=rank, logger=self.spec.logger, start_batch=self.start_batch)
        samples = max(self.options.samples_per_epoch, self.batch_size)  # tiny folders still fill a batch
        return SampleDataset(self.train_files, self.spec.open_ref, self.train_transform, samples, self.options.cache, self.seed,
                             self.labels_of(self.train_files), self.spec.logger)

    def eval_dataset(self) -> SampleDataset:
        """Held-out files (or the training files when nothing is held out), with the eval transform."""
        files = self.val_files or self.train_files
        return SampleDataset(files, self.spec.open_ref, self.eval_transform, labels=self.labels_of(files), logger=self.spec.logger)

    def train_collate(self) -> Callable[[list[dict[str, Any]]], dict[str, Any]] | None:
        """The training batches' collate function (None: PyTorch's default); a modality may override it
        for per-batch choices (video: a batch of 1-frame clips with probability ``image_ratio``)."""
        return None

    def train_dataloader(self) -> DataLoader:
        """Training batches from the checkpointed position; every rank draws its own share (no
        Lightning-injected sampler: ``build_trainer`` turns that off)."""
        workers = int(self.cfg.num_workers)
        rank, world = self.rank_and_world()
        dataset = self.train_dataset()
        sampler = None
        if not self.shard_urls:
            sampler = ResumableSampler(len(dataset), self.batch_size, seed=self.seed, rank=rank, world_size=world,
                                       start_batch=self.start_batch)
        return DataLoader(
            dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True, num_workers=workers,
            persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(), collate_fn=self.train_collate(),
            generator=loader_generator(self.seed, rank, self.start_batch),
        )

    def preview_batch(self, count: int = 8) -> Tensor:
        """A fixed batch of held-out eval-transformed samples for periodic reconstructions."""
        dataset = self.eval_dataset()
        return torch.stack([dataset[i]["x"] for i in range(min(count, len(dataset.files)))])
