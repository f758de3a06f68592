"""The bundled demo dataset: real photographs shipped inside installed packages (no download).

Sources (all installed with difftok's own dependencies):

- scikit-image (``skimage.data``, files inside the wheel): colour photographs ``astronaut``,
  ``chelsea``, ``coffee``, ``hubble_deep_field``, ``immunohistochemistry``, ``retina``, ``rocket``,
  the stereo ``motorcycle`` pair, and the grayscale ``camera`` (turned into RGB). The grayscale
  texture photographs ``brick``, ``grass``, ``gravel``, ``coins`` and ``moon`` are left out: with
  them the quickstart scored 0.6–0.9 dB lower on the held-out colour photographs and its colours
  washed out (docs/quickstart.md, probe 5). ``skimage.data.cat`` is the same photograph as
  ``chelsea`` and is left out so the held-out cat never appears in training; ``eagle``, ``lily`` and
  friends need a download and are left out; ``text``/``page``/``logo``/``colorwheel`` are not photographs.
- matplotlib's sample data: ``grace_hopper`` (a portrait; ``mpl-data/sample_data/grace_hopper.jpg``).

scikit-learn's ``china``/``flower`` and PyWavelets' images would add more, but neither package is a
difftok dependency, and a demo set that changed with what happens to be installed would not be
reproducible.

Exported as PNGs into ``<dir>/train`` and ``<dir>/val``; ``chelsea``, ``coffee`` and
``grace_hopper`` are held out (:data:`DEMO_VAL`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from core.fileio import atomic_output

__all__ = ["DEMO_TRAIN", "DEMO_VAL", "demo_photographs", "export_demo_dataset", "default_demo_dir"]

DEMO_TRAIN = (
    "astronaut", "camera", "hubble_deep_field", "immunohistochemistry", "retina", "rocket", "motorcycle_left", "motorcycle_right",
)
DEMO_VAL = ("chelsea", "coffee", "grace_hopper")
DEMO_VERSION = 3  # bump when the photographs or the split change: exports go to a fresh folder


def _photograph(name: str) -> np.ndarray:
    """One demo photograph as loaded from its package (uint8, HxW or HxWxC)."""
    if name == "grace_hopper":
        import matplotlib.cbook

        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as handle:
            return np.asarray(handle.convert("RGB"))
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(data, name)()


def demo_photographs() -> dict[str, np.ndarray]:
    """Name -> HxWx3 uint8 RGB array for every demo photograph (:data:`DEMO_TRAIN` then :data:`DEMO_VAL`)."""
    images: dict[str, np.ndarray] = {}
    for name in DEMO_TRAIN + DEMO_VAL:
        array = _photograph(name)
        if array.ndim == 2:  # grayscale photograph -> RGB
            array = np.repeat(array[..., None], 3, axis=2)
        images[name] = np.ascontiguousarray(array[..., :3])
    return images


def default_demo_dir() -> Path:
    """``$DIFFTOK_CACHE/demo_images_v<DEMO_VERSION>`` (default ``~/.cache/difftok/demo_images_v3``).

    Versioned, because an export only adds missing files: an older export in the same folder would
    keep photographs in a split they have left."""
    base = Path(os.environ.get("DIFFTOK_CACHE", Path.home() / ".cache" / "difftok"))
    return base / f"demo_images_v{DEMO_VERSION}"


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
