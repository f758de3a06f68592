"""The image input policy: how a decoded file of any Pillow mode becomes the 8-bit RGB image training sees.

``convert("RGB")`` alone is wrong for several modes, so each is handled explicitly:

- orientation: the EXIF ``Orientation`` tag is applied (``ImageOps.exif_transpose``), so a phone
  photograph is trained upright, as every viewer shows it;
- 16-bit integers (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``): the type's range 0..65535 maps linearly
  onto 0..255 (``round(v / 257)``). ``convert`` would clip every value above 255 to white;
- 32-bit integers (``I``, which Pillow also uses for 16-bit PNGs): values inside 0..65535 are read as
  16-bit as above; otherwise the int32 range maps linearly onto 0..255;
- 32-bit float (``F``): values in [0, 1] (the float-image convention) map onto 0..255; otherwise the
  image's own min..max does (a constant image becomes mid-grey). NaN or Inf pixels make the file
  unreadable (it is skipped, not guessed);
- transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent colour, premultiplied ``RGBa``/``La``):
  composited on a WHITE background (:data:`BACKGROUND`), the usual page colour of such images;
- everything else (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ...) goes through Pillow's ``convert("RGB")``;
  a mode Pillow cannot convert (e.g. ``LAB``) raises ``ValueError`` and the file is skipped.

Grey images are repeated over the three channels. Scaling never looks at other images, so the same
file always gives the same pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

__all__ = ["BACKGROUND", "to_rgb8"]

BACKGROUND = (255, 255, 255)  # transparent pixels become white
_ORIENTATION_TAG = 0x0112
_UINT16_MAX = 65535
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def to_rgb8(image: Image.Image) -> Image.Image:
    """The 8-bit RGB version of a loaded ``image`` under the policy of the module docstring."""
    if image.getexif().get(_ORIENTATION_TAG, 1) != 1:  # only then: exif_transpose copies the image otherwise
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        return _gray_to_rgb(_scale_integers(np.asarray(image)))
    if mode == "F":
        return _gray_to_rgb(_scale_floats(np.asarray(image, dtype=np.float64)))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        return _composite((image.convert("LA") if mode == "La" else image).convert("RGBA"))  # Pillow has no La -> RGBA
    return image.convert("RGB")  # a copy for RGB: the caller may close the file's image


def _scale_integers(values: np.ndarray) -> np.ndarray:
    low, high = (0, _UINT16_MAX) if values.size == 0 or (values.min() >= 0 and values.max() <= _UINT16_MAX) else (_INT32_MIN, _INT32_MAX)
    return _to_uint8(values.astype(np.float64), low, high)


def _scale_floats(values: np.ndarray) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ValueError("float image holds NaN or Inf pixels; write finite values (e.g. in [0, 1])")
    low, high = (0.0, 1.0) if values.min() >= 0.0 and values.max() <= 1.0 else (float(values.min()), float(values.max()))
    return _to_uint8(values, low, high)


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:  # constant image outside [0, 1]: no range to spread
        return np.full(values.shape, 128, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).clip(0, 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)), mode="RGB")


def _composite(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")
