"""The bundled demo dataset: real photographs shipped inside scikit-image (no download).

Exported as PNGs into ``<dir>/train`` and ``<dir>/val`` (``chelsea`` and ``coffee`` are held out).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from core.fileio import atomic_output

__all__ = ["DEMO_TRAIN", "DEMO_VAL", "demo_photographs", "export_demo_dataset", "default_demo_dir"]

DEMO_TRAIN = ("astronaut", "camera", "hubble_deep_field", "immunohistochemistry", "retina", "rocket", "motorcycle_left", "motorcycle_right")
DEMO_VAL = ("chelsea", "coffee")


def demo_photographs() -> dict[str, np.ndarray]:
    """Name -> HxWx3 uint8 RGB array for every demo photograph."""
    from skimage import data

    images: dict[str, np.ndarray] = {}
    for name in DEMO_TRAIN + DEMO_VAL:
        if name.startswith("motorcycle_"):
            left, right, _ = data.stereo_motorcycle()
            array = left if name.endswith("left") else right
        else:
            array = getattr(data, name)()
        if array.ndim == 2:  # grayscale photograph -> RGB
            array = np.repeat(array[..., None], 3, axis=2)
        images[name] = np.ascontiguousarray(array[..., :3])
    return images


def default_demo_dir() -> Path:
    """``$DIFFTOK_CACHE/demo_images`` (default ``~/.cache/difftok/demo_images``)."""
    base = Path(os.environ.get("DIFFTOK_CACHE", Path.home() / ".cache" / "difftok"))
    return base / "demo_images"


def export_demo_dataset(directory: str | os.PathLike[str] | None = None) -> Path:
    """Write the demo photographs to ``directory/{train,val}/<name>.png`` (skips existing files)."""
    root = Path(directory) if directory is not None else default_demo_dir()
    photos = None
    for split, names in (("train", DEMO_TRAIN), ("val", DEMO_VAL)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            target = root / split / f"{name}.png"
            if target.exists():
                continue
            photos = photos or demo_photographs()
            with atomic_output(target) as tmp:  # concurrent exports never see half-written files
                Image.fromarray(photos[name]).save(tmp, format="PNG")
    return root
