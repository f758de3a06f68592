"""Image data: decoding, transforms, typed options and the image :class:`~core.data.datamodule.DataSpec`.

Train transform (DiTo): shorter side to ``resize`` (Lanczos), random ``size`` crop, horizontal flip,
map to [-1, 1]. Eval transform: shorter side to ``eval_resize``, center crop ``eval_size``.
Everything else (folder / shard / demo sources, holdout, labels, skip-and-count, streaming) is the
generic :class:`core.data.datamodule.SampleDataModule`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile
from torch import Tensor

from core.data.datamodule import DataSpec, SampleDataModule, SampleDataset
from core.data.options import SampleDataOptions
from core.data.skips import UNREADABLE_ERRORS, UnreadableSampleError
from core.data.sources import SampleRef, TarMember, list_files
from modalities.image.demo import export_demo_dataset
from modalities.image.modes import to_rgb8

log = logging.getLogger("difftok.image")

__all__ = [
    "IMAGE_EXTENSIONS", "SHARD_IMAGE_EXTENSIONS", "ImageTransform", "ImageDataOptions", "IMAGE_DATA", "ImageFolderDataset",
    "ImageDataModule", "list_images", "open_image", "open_image_bytes", "check_image", "check_image_bytes", "resize_shorter_side",
    "to_tensor",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".JPEG")
# lower-case extensions (without dot) treated as the image of a shard sample
SHARD_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "ppm", "gif")


def list_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive), sorted for reproducibility."""
    return list_files(root, IMAGE_EXTENSIONS, "image")


@contextlib.contextmanager
def _decoding() -> Iterator[None]:
    """Turn what Pillow raises on a hostile or broken file into a skippable error.

    Pillow's decoders raise many types for bad data (``DecompressionBombError``, ``struct.error``,
    ``IndexError``...); whatever is not already one of :data:`~core.data.skips.UNREADABLE_ERRORS`
    becomes an :class:`~core.data.skips.UnreadableSampleError`, so the one skip-and-count path sees it.
    """
    try:
        yield
    except UNREADABLE_ERRORS:
        raise
    except Image.DecompressionBombError as err:
        raise UnreadableSampleError(
            f"DecompressionBombError: {err} (if the file is trusted, raise PIL.Image.MAX_IMAGE_PIXELS)"
        ) from err
    except Exception as err:  # the file is untrusted input to the decoder: anything it raises means unreadable
        raise UnreadableSampleError(f"{type(err).__name__}: {err}") from err


def _load(source: str | Path | io.BytesIO) -> Image.Image:
    """Decode ``source`` fully (inside :func:`_decoding`), then apply the input policy of :mod:`modalities.image.modes`."""
    with _decoding():
        with Image.open(source) as handle:
            handle.load()
            return to_rgb8(handle)


def open_image_bytes(data: bytes) -> Image.Image:
    """Decode encoded image bytes to 8-bit RGB (:func:`~modalities.image.modes.to_rgb8`); raises one of
    :data:`~core.data.skips.UNREADABLE_ERRORS` on corrupt or hostile data."""
    return _load(io.BytesIO(data))


def open_image(ref: SampleRef) -> Image.Image:
    """Decode a file or tar member to 8-bit RGB (:func:`~modalities.image.modes.to_rgb8`); raises one of
    :data:`~core.data.skips.UNREADABLE_ERRORS` on corrupt or hostile data."""
    if isinstance(ref, TarMember):
        return _load(io.BytesIO(ref.read_bytes()))
    return _load(ref)


def check_image_bytes(data: bytes, mode: str = "decode") -> None:
    """Raise unless ``data`` is a readable image: ``decode`` decodes fully (and applies the input
    policy), ``header`` runs PIL's verify."""
    if mode == "decode":
        open_image_bytes(data)
        return
    with _decoding(), Image.open(io.BytesIO(data)) as image:
        image.verify()


def check_image(ref: SampleRef) -> None:
    """Raise unless ``ref`` opens as an image (files: PIL verify, then a full decode)."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    if not isinstance(ref, TarMember):
        with _decoding(), Image.open(ref) as handle:
            handle.verify()
    open_image(ref)


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

    def for_cache(self, image: Image.Image) -> Image.Image:
        """What an in-memory cache keeps: the image resized to the largest shorter side training draws."""
        return resize_shorter_side(image, max(self.resize, self.resize_max))

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


@dataclass(frozen=True)
class ImageDataOptions(SampleDataOptions):
    """``data.options`` of the image modality (0 means "derive from data.size", as documented per field).

    Attributes:
        resize: shorter side before the training crop (0: ``data.size``).
        resize_max: training shorter side drawn in ``[resize, resize_max]`` (SSDD's scale augmentation; 0: fixed).
        eval_size: evaluation center crop (0: ``data.size``).
        eval_resize: evaluation shorter side (0: ``max(resize, eval_size)``).
        train_crop: ``random`` or ``center`` (DiTo's latent-DiT data: shorter side + center crop + flip).
    """

    resize: int = 0
    resize_max: int = 0
    eval_size: int = 0
    eval_resize: int = 0
    train_crop: str = "random"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_crop not in ("random", "center"):
            raise ValueError(f"data.options.train_crop={self.train_crop!r}: use 'random' or 'center'")

    def sides(self, size: int) -> tuple[int, int, int]:
        """``(resize, eval_size, eval_resize)`` with the zeros resolved against ``data.size``; checked."""
        resize = self.resize or size
        eval_size = self.eval_size or size
        eval_resize = self.eval_resize or max(resize, eval_size)
        if resize < size or eval_resize < eval_size:
            raise ValueError(
                f"data.options.resize={resize} / eval_resize={eval_resize} must be at least the crop sizes "
                f"data.size={size} / eval_size={eval_size}"
            )
        return resize, eval_size, eval_resize


def image_train_transform(options: ImageDataOptions, cfg: Any) -> ImageTransform:
    """The training :class:`ImageTransform` of ``data`` (``cfg``) with ``options``."""
    resize, _, _ = options.sides(cfg.size)
    return ImageTransform(cfg.size, resize, train=True, resize_max=options.resize_max, random_crop=options.train_crop == "random")


def image_eval_transform(options: ImageDataOptions, cfg: Any) -> ImageTransform:
    """The evaluation (center-crop) :class:`ImageTransform`."""
    _, eval_size, eval_resize = options.sides(cfg.size)
    return ImageTransform(eval_size, eval_resize, train=False)


IMAGE_DATA = DataSpec(
    noun="image", extensions=IMAGE_EXTENSIONS, shard_extensions=SHARD_IMAGE_EXTENSIONS, open_ref=open_image,
    open_bytes=open_image_bytes, check=check_image, options_type=ImageDataOptions, train_transform=image_train_transform,
    eval_transform=image_eval_transform, export_demo=export_demo_dataset, logger=log,
)


class ImageFolderDataset(SampleDataset):
    """Images from a list of files or tar-shard members (:class:`~core.data.datamodule.SampleDataset` with PIL decoding)."""

    def __init__(self, files: list[SampleRef], transform: ImageTransform, samples_per_epoch: int = 0, cache: bool = False, seed: int = 0,
                 labels: list[int] | None = None) -> None:
        super().__init__(files, open_image, transform, samples_per_epoch, cache, seed, labels, log)


class ImageDataModule(SampleDataModule):
    """Folder (or bundled demo) images, or streamed webdataset shards: :class:`~core.data.datamodule.SampleDataModule`
    with :data:`IMAGE_DATA`; ``data.options`` are :class:`ImageDataOptions`."""

    def __init__(self, cfg: Any, seed: int = 0, batch_size: int | None = None) -> None:
        super().__init__(cfg, IMAGE_DATA, seed, batch_size)
