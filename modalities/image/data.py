"""Image data: folder dataset, transforms and the LightningDataModule.

Train transform (DiTo): shorter side to ``resize`` (Lanczos), random ``size`` crop, horizontal flip,
map to [-1, 1]. Eval transform: shorter side to ``resize``, center crop ``eval_size``.
Unreadable or corrupt files are skipped, counted and reported; the run continues.

Training reads either a folder (``data.root`` / ``data.demo``) or webdataset shards (``data.shards``,
streamed by :mod:`modalities.image.stream` with the same train transform).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image, ImageFile
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from modalities.image.demo import export_demo_dataset
from modalities.image.sources import LABEL_MODES, ImageRef, TarMember, assign_labels, expand_shards, list_shard_members, open_image

__all__ = ["IMAGE_EXTENSIONS", "ImageTransform", "ImageFolderDataset", "ImageDataModule", "list_images", "to_tensor"]

log = logging.getLogger("difftok.image")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".JPEG")


def list_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive), sorted for reproducibility."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; set data.root= to a folder of images or use data.demo=true")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in {e.lower() for e in IMAGE_EXTENSIONS})
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS[:6])}) found under {root}")
    return files


def to_tensor(image: Image.Image) -> Tensor:
    """PIL RGB -> (3, H, W) float in [-1, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)


@dataclass(frozen=True)
class ImageTransform:
    """Resize the shorter side, crop (random or center), optional flip, to [-1, 1].

    With ``resize_max > resize`` (SSDD's ``aug_scale``), training draws the shorter side uniformly
    in ``[resize, resize_max]`` per sample before the random crop.
    """

    size: int
    resize: int
    train: bool = True
    resize_max: int = 0
    random_crop: bool = True  # training crop position; False: center crop + flip (DiTo's latent-DiT data)

    def target_side(self, rng: random.Random) -> int:
        """Shorter-side length for one sample."""
        if self.train and self.resize_max > self.resize:
            return rng.randint(self.resize, self.resize_max)
        return self.resize

    def __call__(self, image: Image.Image, rng: random.Random) -> Tensor:
        image = resize_shorter_side(image, self.target_side(rng))
        w, h = image.size
        if w < self.size or h < self.size:
            raise ValueError(f"image {w}x{h} is smaller than the crop {self.size} after resizing to {self.resize}")
        if self.train and self.random_crop:
            left, top = rng.randint(0, w - self.size), rng.randint(0, h - self.size)
        else:
            left, top = (w - self.size) // 2, (h - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        x = to_tensor(image)
        if self.train and rng.random() < 0.5:
            x = x.flip(-1)
        return x


def resize_shorter_side(image: Image.Image, target: int) -> Image.Image:
    """Lanczos resize so that the shorter side equals ``target``."""
    w, h = image.size
    if min(w, h) == target:
        return image
    scale = target / min(w, h)
    return image.resize((max(target, round(w * scale)), max(target, round(h * scale))), Image.LANCZOS)


class ImageFolderDataset(Dataset):
    """Images from a list of files (or tar-shard members); bad files are skipped and counted.

    Args:
        files: image paths or :class:`~modalities.image.sources.TarMember` references.
        transform: :class:`ImageTransform`.
        samples_per_epoch: virtual length (>= len(files)) so tiny folders still fill batches.
        cache: keep decoded images in memory (per process), for small datasets.
        seed: base seed of the crop/flip randomness.
        labels: class index per file (returned as ``"cls"``); None: tar members' stored label, else 0.
    """

    def __init__(self, files: list[ImageRef], transform: ImageTransform, samples_per_epoch: int = 0, cache: bool = False, seed: int = 0,
                 labels: list[int] | None = None) -> None:
        if not files:
            raise ValueError("ImageFolderDataset needs at least one file")
        if labels is not None and len(labels) != len(files):
            raise ValueError(f"got {len(labels)} labels for {len(files)} files")
        self.files, self.transform = list(files), transform
        self.labels = list(labels) if labels is not None else [int(getattr(f, "label", 0)) for f in self.files]
        self.length = max(len(self.files), samples_per_epoch)
        self.cache_enabled, self._cache = cache, {}
        self.seed = seed
        self.skipped: dict[str, str] = {}
        self._draws = 0

    def __len__(self) -> int:
        return self.length

    def _load(self, path: ImageRef) -> Image.Image:
        key = str(path)
        if key in self._cache:
            return self._cache[key]
        image = open_image(path)
        if self.cache_enabled:
            image = resize_shorter_side(image, max(self.transform.resize, self.transform.resize_max))
            self._cache[key] = image
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        self._draws += 1
        rng = random.Random(hash((self.seed, index, self._draws, torch.initial_seed())))
        for attempt in range(len(self.files)):
            position = (index + attempt) % len(self.files)
            path = self.files[position]
            if str(path) in self.skipped:
                continue
            try:
                image = self._load(path)
                return {"x": self.transform(image, rng), "key": path.stem, "cls": self.labels[position]}
            except (OSError, ValueError, SyntaxError) as err:
                self.skipped[str(path)] = f"{type(err).__name__}: {err}"
                log.warning("skipping unreadable image %s (%s); %d skipped so far", path, err, len(self.skipped))
        raise RuntimeError(f"every image file is unreadable ({len(self.skipped)} skipped); first: {next(iter(self.skipped.items()))}")


def scan_images(files: list[ImageRef]) -> tuple[list[ImageRef], dict[str, str]]:
    """Check that every file opens as an image; return (good files, {bad file: reason})."""
    good, bad = [], {}
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    for path in files:
        try:
            if isinstance(path, TarMember):
                open_image(path)
            else:
                with Image.open(path) as handle:
                    handle.verify()
                with Image.open(path) as handle:
                    handle.load()
            good.append(path)
        except Exception as err:  # PIL raises many types for corrupt data
            bad[str(path)] = f"{type(err).__name__}: {err}"
    return good, bad


class ImageDataModule(L.LightningDataModule):
    """Folder (or bundled demo) images, or streamed webdataset shards, for tokenizer training.

    Reads :class:`core.training.config.DataConfig`; ``options`` keys: ``resize`` (shorter side
    before cropping, default ``size``), ``resize_max`` (train shorter side drawn in
    ``[resize, resize_max]``, SSDD's scale augmentation; 0 = fixed), ``eval_size``/``eval_resize``, ``samples_per_epoch``,
    ``cache`` (bool), ``verify`` (scan files at setup, default True), ``shuffle_buffer`` (shards,
    default 1000), ``labels`` (the ``"cls"`` of folder items: ``folder`` (default; ImageNet-style class
    folders -> sorted class index, flat folder -> 0), ``file`` (each file its own class) or ``none`` (all 0);
    streamed shards yield their stored ``.cls``), ``train_crop`` (``random`` (default) or ``center``:
    DiTo's latent-DiT data is shorter side + center crop + flip).

    With ``data.shards``, training streams the shards (resampled per rank and worker, epochs of
    ``samples_per_epoch`` images, default: the count in the shards' ``index.json``). Evaluation and
    previews then use ``data.root``/``data.demo`` when given (its ``val/`` folder if present; a seeded
    class-stratified subset of ``data.holdout`` images when ``holdout > 0``), otherwise the first
    ``max(holdout, 8)`` samples of the first shard (which are also trained on).
    """

    def __init__(self, cfg: Any, seed: int = 0, batch_size: int | None = None) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, seed
        self.batch_size = batch_size or cfg.batch_size
        options = dict(cfg.options or {})
        self.resize = int(options.get("resize", cfg.size))
        self.resize_max = int(options.get("resize_max", 0))
        self.eval_size = int(options.get("eval_size", cfg.size))
        self.eval_resize = int(options.get("eval_resize", max(self.resize, self.eval_size)))
        self.samples_per_epoch = int(options.get("samples_per_epoch", 0))
        self.cache = bool(options.get("cache", False))
        self.verify = bool(options.get("verify", True))
        self.shuffle_buffer = int(options.get("shuffle_buffer", 1000))
        self.label_mode = str(options.get("labels", "folder"))
        self.train_crop = str(options.get("train_crop", "random"))
        if self.train_crop not in ("random", "center"):
            raise ValueError(f"data.options.train_crop={self.train_crop!r}: use 'random' or 'center'")
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"data.options.labels={self.label_mode!r}; choose one of {LABEL_MODES}")
        self.labels: dict[str, int] = {}  # str(ref) -> class index
        self.class_names: list[str] | None = None
        if self.resize < cfg.size or self.eval_resize < self.eval_size:
            raise ValueError(
                f"data.options.resize={self.resize} / eval_resize={self.eval_resize} must be at least the crop sizes "
                f"data.size={cfg.size} / eval_size={self.eval_size}"
            )
        self.skipped: dict[str, str] = {}
        self.shard_urls: list[str] = expand_shards(cfg.shards) if cfg.shards else []
        self.train_files, self.val_files = self._split_shards() if self.shard_urls else self._split_files()

    def _data_root(self) -> Path | None:
        cfg = self.cfg
        return Path(export_demo_dataset(cfg.root)) if cfg.demo else Path(cfg.root) if cfg.root else None

    def _split_files(self) -> tuple[list[ImageRef], list[ImageRef]]:
        cfg = self.cfg
        root = self._data_root()
        if root is None:
            raise ValueError("no image data given: set data.root=/path/to/images, data.shards=... or data.demo=true")
        if (root / "train").is_dir() and (root / "val").is_dir():
            train, val = list_images(root / "train"), list_images(root / "val")
            self._assign_labels([(train, root / "train"), (val, root / "val")])
        else:
            files = list_images(root)
            self._assign_labels([(files, root)])
            order = list(range(len(files)))
            random.Random(self.seed).shuffle(order)
            held = set(order[: cfg.holdout])
            train = [f for i, f in enumerate(files) if i not in held]
            val = [f for i, f in enumerate(files) if i in held]
        train, val = self._verified(train), self._verified(val)
        if not train:
            raise FileNotFoundError(f"no readable training images under {root} ({len(self.skipped)} unreadable)")
        return train, val

    def _split_shards(self) -> tuple[list[ImageRef], list[ImageRef]]:
        """Training streams the shards; returns ([], evaluation references)."""
        from modalities.image.sources import folder_class_names
        from modalities.image.subset import stratified_subset

        root = self._data_root()
        holdout = int(self.cfg.holdout)
        if root is None:
            members: list[ImageRef] = list(list_shard_members(self.shard_urls[:1])[: max(holdout, 8)])
            self._assign_labels([(members, None)])
            return [], self._verified(members)
        eval_root = root / "val" if (root / "val").is_dir() else root
        files: list[ImageRef] = list(list_images(eval_root))
        self._assign_labels([(files, eval_root)])
        if holdout <= 0:
            return [], self._verified(files)
        # walk the full stratified order and keep the first `holdout` readable images
        chosen: list[ImageRef] = []
        for index in stratified_subset(folder_class_names(files, eval_root), len(files), self.seed):
            chosen.extend(self._verified([files[index]]))
            if len(chosen) == holdout:
                break
        return [], chosen

    def _assign_labels(self, groups: list[tuple[list[ImageRef], Path | None]]) -> None:
        """Class index of every listed reference (before unreadable files are dropped, so indices
        match ``recipes.image.cache_latents`` on the same folder)."""
        labels, self.class_names = assign_labels(groups, self.label_mode)
        self.labels = {str(ref): label for (refs, _), group in zip(groups, labels) for ref, label in zip(refs, group)}

    def labels_of(self, files: list[ImageRef]) -> list[int]:
        """Class index of each reference (``data.options.labels``)."""
        return [self.labels[str(ref)] for ref in files]

    def _verified(self, files: list[ImageRef]) -> list[ImageRef]:
        if not self.verify or not files:
            return files
        good, bad = scan_images(files)
        if bad:
            self.skipped.update(bad)
            shown = "; ".join(f"{k} ({v})" for k, v in list(bad.items())[:5])
            log.warning("skipped %d unreadable image file(s): %s", len(bad), shown)
        return good

    def stream_epoch_samples(self) -> int:
        """Global images per epoch when streaming: option, else the shards' ``index.json`` count."""
        if self.samples_per_epoch > 0:
            return self.samples_per_epoch
        from modalities.image.shards import read_shard_index

        index = read_shard_index(Path(self.shard_urls[0]).parent) if "://" not in self.shard_urls[0] else None
        if index and index.get("num_samples"):
            return int(index["num_samples"])
        guess = 1000 * len(self.shard_urls)
        log.warning("no index.json next to the shards: assuming %d images per epoch (set data.options.samples_per_epoch)", guess)
        return guess

    def train_dataset(self) -> Any:
        """Map-style folder dataset, or the infinite shard stream (``IterableDataset``) with ``data.shards``."""
        transform = ImageTransform(self.cfg.size, self.resize, train=True, resize_max=self.resize_max,
                                   random_crop=self.train_crop == "random")
        if self.shard_urls:
            from modalities.image.stream import make_shard_stream, plan_epoch

            world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
            plan = plan_epoch(self.stream_epoch_samples(), self.batch_size, int(self.cfg.num_workers), world)
            return make_shard_stream(self.shard_urls, transform, plan, seed=self.seed, shuffle_buffer=self.shuffle_buffer, rank=rank)
        samples = max(self.samples_per_epoch, self.batch_size)  # tiny folders still fill a batch
        return ImageFolderDataset(self.train_files, transform, samples, self.cache, self.seed, self.labels_of(self.train_files))

    def eval_dataset(self) -> ImageFolderDataset:
        """Held-out images (or the training images when nothing is held out), center-cropped."""
        files = self.val_files or self.train_files
        return ImageFolderDataset(files, ImageTransform(self.eval_size, self.eval_resize, train=False), labels=self.labels_of(files))

    def train_dataloader(self) -> DataLoader:
        workers = int(self.cfg.num_workers)
        return DataLoader(
            self.train_dataset(), batch_size=self.batch_size, shuffle=not self.shard_urls, drop_last=True, num_workers=workers,
            persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
        )

    def preview_batch(self, count: int = 8) -> Tensor:
        """A fixed batch of held-out center crops (evaluation size) for periodic reconstructions."""
        dataset = self.eval_dataset()
        return torch.stack([dataset[i]["x"] for i in range(min(count, len(dataset.files)))])
