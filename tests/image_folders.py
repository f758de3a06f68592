"""Small ImageNet-style folders of real photo crops (scikit-image photographs) for data tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from modalities.image.demo import demo_photographs

CLASS_FORMATS = {"astronaut": "png", "coffee": "jpg", "rocket": "webp"}


def write_class_folder(root: Path, per_class: int = 5, size: tuple[int, int] = (56, 48), corrupt: bool = True) -> Path:
    """``root/<class>/<class>_<i>.<ext>``: ``per_class`` crops (w, h) of one photograph per class, in
    PNG/JPEG/WebP; with ``corrupt`` also ``coffee/broken.jpg`` (not an image)."""
    photos = demo_photographs()
    width, height = size
    for name, ext in CLASS_FORMATS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            top, left = 17 * i, 23 * i
            Image.fromarray(photos[name][top : top + height, left : left + width]).save(root / name / f"{name}_{i}.{ext}")
    if corrupt:
        (root / "coffee" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated, not a JPEG")
    return root
