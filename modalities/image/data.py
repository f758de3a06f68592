"""Image data: folder dataset, transforms and the LightningDataModule.

Train transform (DiTo): shorter side to ``resize`` (Lanczos), random ``size`` crop, horizontal flip,
map to [-1, 1]. Eval transform: shorter side to ``resize``, center crop ``eval_size``.
Unreadable or corrupt files are skipped, counted and reported; the run continues.
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
    """Resize the shorter side, crop (random or center), optional flip, to [-1, 1]."""

    size: int
    resize: int
    train: bool = True

    def __call__(self, image: Image.Image, rng: random.Random) -> Tensor:
        image = resize_shorter_side(image, self.resize)
        w, h = image.size
        if w < self.size or h < self.size:
            raise ValueError(f"image {w}x{h} is smaller than the crop {self.size} after resizing to {self.resize}")
        if self.train:
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
    """Images from a list of files; bad files are skipped and counted.

    Args:
        files: image paths.
        transform: :class:`ImageTransform`.
        samples_per_epoch: virtual length (>= len(files)) so tiny folders still fill batches.
        cache: keep decoded images in memory (per process), for small datasets.
        seed: base seed of the crop/flip randomness.
    """

    def __init__(self, files: list[Path], transform: ImageTransform, samples_per_epoch: int = 0, cache: bool = False, seed: int = 0) -> None:
        if not files:
            raise ValueError("ImageFolderDataset needs at least one file")
        self.files, self.transform = list(files), transform
        self.length = max(len(self.files), samples_per_epoch)
        self.cache_enabled, self._cache = cache, {}
        self.seed = seed
        self.skipped: dict[str, str] = {}
        self._draws = 0

    def __len__(self) -> int:
        return self.length

    def _load(self, path: Path) -> Image.Image:
        key = str(path)
        if key in self._cache:
            return self._cache[key]
        with Image.open(path) as handle:
            image = handle.convert("RGB")
        if self.cache_enabled:
            image = resize_shorter_side(image, self.transform.resize)
            self._cache[key] = image
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        self._draws += 1
        rng = random.Random(hash((self.seed, index, self._draws, torch.initial_seed())))
        for attempt in range(len(self.files)):
            path = self.files[(index + attempt) % len(self.files)]
            if str(path) in self.skipped:
                continue
            try:
                image = self._load(path)
                return {"x": self.transform(image, rng), "key": path.stem}
            except (OSError, ValueError, SyntaxError) as err:
                self.skipped[str(path)] = f"{type(err).__name__}: {err}"
                log.warning("skipping unreadable image %s (%s); %d skipped so far", path, err, len(self.skipped))
        raise RuntimeError(f"every image file is unreadable ({len(self.skipped)} skipped); first: {next(iter(self.skipped.items()))}")


def scan_images(files: list[Path]) -> tuple[list[Path], dict[str, str]]:
    """Check that every file opens as an image; return (good files, {bad file: reason})."""
    good, bad = [], {}
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    for path in files:
        try:
            with Image.open(path) as handle:
                handle.verify()
            with Image.open(path) as handle:
                handle.load()
            good.append(path)
        except Exception as err:  # PIL raises many types for corrupt data
            bad[str(path)] = f"{type(err).__name__}: {err}"
    return good, bad


class ImageDataModule(L.LightningDataModule):
    """Folder (or bundled demo) images for tokenizer training.

    Reads :class:`core.training.config.DataConfig`; ``options`` keys: ``resize`` (shorter side
    before cropping, default ``size``), ``eval_size``/``eval_resize``, ``samples_per_epoch``,
    ``cache`` (bool), ``verify`` (scan files at setup, default True).
    """

    def __init__(self, cfg: Any, seed: int = 0, batch_size: int | None = None) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, seed
        self.batch_size = batch_size or cfg.batch_size
        options = dict(cfg.options or {})
        self.resize = int(options.get("resize", cfg.size))
        self.eval_size = int(options.get("eval_size", cfg.size))
        self.eval_resize = int(options.get("eval_resize", max(self.resize, self.eval_size)))
        self.samples_per_epoch = int(options.get("samples_per_epoch", 0))
        self.cache = bool(options.get("cache", False))
        self.verify = bool(options.get("verify", True))
        if self.resize < cfg.size or self.eval_resize < self.eval_size:
            raise ValueError(
                f"data.options.resize={self.resize} / eval_resize={self.eval_resize} must be at least the crop sizes "
                f"data.size={cfg.size} / eval_size={self.eval_size}"
            )
        self.skipped: dict[str, str] = {}
        self.train_files, self.val_files = self._split_files()

    def _split_files(self) -> tuple[list[Path], list[Path]]:
        cfg = self.cfg
        if cfg.shards:
            raise NotImplementedError("data.shards (webdataset) is not supported by the image datamodule yet; use data.root")
        root = Path(export_demo_dataset(cfg.root)) if cfg.demo else Path(cfg.root) if cfg.root else None
        if root is None:
            raise ValueError("no image data given: set data.root=/path/to/images or data.demo=true")
        if (root / "train").is_dir() and (root / "val").is_dir():
            train, val = list_images(root / "train"), list_images(root / "val")
        else:
            files = list_images(root)
            order = list(range(len(files)))
            random.Random(self.seed).shuffle(order)
            held = set(order[: cfg.holdout])
            train = [f for i, f in enumerate(files) if i not in held]
            val = [f for i, f in enumerate(files) if i in held]
        if self.verify:
            train, bad_train = scan_images(train)
            val, bad_val = scan_images(val)
            self.skipped.update(bad_train | bad_val)
            if self.skipped:
                shown = "; ".join(f"{k} ({v})" for k, v in list(self.skipped.items())[:5])
                log.warning("skipped %d unreadable image file(s): %s", len(self.skipped), shown)
        if not train:
            raise FileNotFoundError(f"no readable training images under {root} ({len(self.skipped)} unreadable)")
        return train, val

    def train_dataset(self) -> ImageFolderDataset:
        transform = ImageTransform(self.cfg.size, self.resize, train=True)
        samples = max(self.samples_per_epoch, self.batch_size)  # tiny folders still fill a batch
        return ImageFolderDataset(self.train_files, transform, samples, self.cache, self.seed)

    def eval_dataset(self) -> ImageFolderDataset:
        """Held-out images (or the training images when nothing is held out), center-cropped."""
        files = self.val_files or self.train_files
        return ImageFolderDataset(files, ImageTransform(self.eval_size, self.eval_resize, train=False))

    def train_dataloader(self) -> DataLoader:
        workers = int(self.cfg.num_workers)
        return DataLoader(
            self.train_dataset(), batch_size=self.batch_size, shuffle=True, drop_last=True, num_workers=workers,
            persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
        )

    def preview_batch(self, count: int = 8) -> Tensor:
        """A fixed batch of held-out center crops (evaluation size) for periodic reconstructions."""
        dataset = self.eval_dataset()
        return torch.stack([dataset[i]["x"] for i in range(min(count, len(dataset.files)))])
