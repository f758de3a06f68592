"""The image input policy (modalities/image/modes.py): every Pillow mode a file can decode to reaches
training as correct 8-bit RGB, written here as real files with Pillow/numpy and read back through
``open_image`` (folders) and ``open_image_bytes`` (shards)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.data.skips import UNREADABLE_ERRORS
from modalities.image.data import open_image, open_image_bytes
from modalities.image.modes import BACKGROUND

GRADIENT_16 = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (8, 1))  # (8, 256): 0..65535 left to right


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    image = open_image_bytes(data)
    assert image.mode == "RGB"
    return np.asarray(image)


def _assert_gradient_spread(rgb: np.ndarray, expected: np.ndarray) -> None:
    """Every column of the 16-bit gradient maps to its own 8-bit level (not 2 values, 99.6 % white)."""
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    assert rgb.min() == 0 and rgb.max() == 255 and len(np.unique(rgb)) == 256
    assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1
    assert (rgb == 255).mean() < 0.01


@pytest.mark.parametrize("mode,fmt", [("I;16", "PNG"), ("I;16", "TIFF"), ("I;16B", "TIFF")])
def test_16_bit_grayscale_spreads_over_the_type_range(mode, fmt):
    raw = GRADIENT_16.astype(">u2" if mode == "I;16B" else "<u2").tobytes()
    data = _encode(Image.frombytes(mode, (256, 8), raw), fmt)
    with Image.open(io.BytesIO(data)) as handle:
        assert handle.mode == mode  # the file really is stored in that mode
        naive = np.asarray(handle.convert("RGB"))
    assert len(np.unique(naive)) <= 2  # what convert("RGB") alone made of it: clipped
    _assert_gradient_spread(_pixels(data), np.rint(GRADIENT_16 / 257.0))


def test_32_bit_integer_image_in_16_bit_range_reads_as_16_bit():
    data = _encode(Image.fromarray(GRADIENT_16.astype(np.int32), mode="I"), "TIFF")
    _assert_gradient_spread(_pixels(data), np.rint(GRADIENT_16 / 257.0))


def test_float_tiff_in_unit_range_and_outside_it():
    unit = np.tile(np.linspace(0.0, 1.0, 256, dtype=np.float32), (8, 1))
    _assert_gradient_spread(_pixels(_encode(Image.fromarray(unit, mode="F"), "TIFF")), np.rint(unit * 255))
    wide = unit * 4000.0 - 1000.0  # e.g. raw sensor values: the image's own min..max maps to 0..255
    _assert_gradient_spread(_pixels(_encode(Image.fromarray(wide, mode="F"), "TIFF")), np.rint(unit * 255))
    broken = unit.copy()
    broken[0, 0] = np.nan
    with pytest.raises(UNREADABLE_ERRORS, match="NaN or Inf"):
        open_image_bytes(_encode(Image.fromarray(broken, mode="F"), "TIFF"))


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)  # stored landscape: left half red, right half blue
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    image.save(path, quality=95, exif=exif)
    shown = np.asarray(open_image(path))
    assert shown.shape == (40, 20, 3)  # portrait, as every viewer shows it
    assert shown[5, 10, 0] > 200 and shown[5, 10, 2] < 60  # the red half is now on top
    assert shown[35, 10, 2] > 200 and shown[35, 10, 0] < 60


def test_transparency_is_composited_on_white():
    rgba = np.zeros((4, 8, 4), np.uint8)
    rgba[:, :4] = (255, 0, 0, 0)  # fully transparent red -> background
    rgba[:, 4:] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    rgb = _pixels(_encode(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    assert BACKGROUND == (255, 255, 255) and (rgb[:, :4] == 255).all()
    assert np.abs(rgb[:, 4:].astype(int) - 127).max() <= 1
    la = _pixels(_encode(Image.new("LA", (4, 4), (0, 0)), "PNG"))
    assert (la == 255).all()
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30] + [0] * 765)
    assert (_pixels(_encode(palette, "PNG", transparency=0)) == 255).all()
    assert (_pixels(_encode(palette, "PNG")) == (10, 20, 30)).all()  # no transparency: the palette colour


def test_cmyk_and_ycbcr_convert_to_rgb():
    cmyk = _pixels(_encode(Image.new("CMYK", (8, 8), (0, 255, 0, 0)), "JPEG", quality=100))
    assert np.abs(cmyk[0, 0].astype(int) - (255, 0, 255)).max() <= 3  # no magenta ink missing: magenta
    ycbcr = _pixels(_encode(Image.new("YCbCr", (8, 8), (128, 128, 128)), "JPEG", quality=100))
    assert np.abs(ycbcr.astype(int) - 128).max() <= 2


def test_tar_member_path_applies_the_same_policy(tmp_path):
    import tarfile

    from core.data.sources import list_shard_members

    data = _encode(Image.frombytes("I;16", (256, 8), GRADIENT_16.tobytes()), "PNG")
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as tar:
        info = tarfile.TarInfo("00000000_grad.png")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (member,) = list_shard_members([str(shard)], ("png",))
    assert np.array_equal(np.asarray(open_image(member)), _pixels(data))

