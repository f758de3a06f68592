"""Opening videos: one small reader interface over decord (the only module of the project that imports it).

decord facts this module is built around (spec video.md §3.10, §5):

- ``decord.VideoReader`` accepts a path or an ``io.BytesIO`` (shard members are decoded from memory);
- corrupt / truncated files raise ``RuntimeError`` at open, other failures ``decord._ffi.base.DECORDError``,
  which derives from ``Exception`` only: both are turned into :class:`UnreadableVideoError` (an ``OSError``,
  so the core skip-and-count machinery catches it);
- decord over-reports lengths and can hang reading the last indices (dmlc/decord#373): only the first
  ``len(vr) - 2`` frames are ever read (:data:`UNSAFE_TAIL_FRAMES`);
- readers leak when kept alive (dmlc/decord#197/#208): every reader lives inside :func:`open_video` and is
  rewound and released when the block ends.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, Union

import numpy as np

from core.data.sources import TarMember

__all__ = ["UNSAFE_TAIL_FRAMES", "VideoSource", "UnreadableVideoError", "VideoInfo", "VideoReader", "open_video",
           "video_info", "video_info_bytes", "check_video_bytes"]

# frames at the end of a video that are never read (decord's last-frame hang, dmlc/decord#373)
UNSAFE_TAIL_FRAMES = 2

VideoSource = Union[str, Path, bytes, TarMember]


class UnreadableVideoError(OSError):
    """The file is not a video decord can open or decode (corrupt, truncated, unsupported)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a shard stores about a video (its ``<key>.json`` member).

    Attributes:
        fps: average frame rate.
        frames: frames that are safe to read (decord's count minus :data:`UNSAFE_TAIL_FRAMES`).
        width: frame width in pixels.
        height: frame height in pixels.
    """

    fps: float
    frames: int
    width: int
    height: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class VideoReader(Protocol):
    """The reader interface the clip sampler uses (decord's ``VideoReader`` behind :func:`open_video`)."""

    @property
    def safe_frames(self) -> int:
        """Frames that may be read (indices ``0 .. safe_frames - 1``)."""

    @property
    def fps(self) -> float:
        """Average frame rate."""

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` as ``(T, H, W, 3)`` uint8 RGB."""


class _DecordReader:
    """:class:`VideoReader` over one ``decord.VideoReader``."""

    def __init__(self, reader: Any, name: str, decord_errors: tuple[type[BaseException], ...]) -> None:
        self._reader, self.name, self._errors = reader, name, decord_errors

    @property
    def safe_frames(self) -> int:
        return max(0, len(self._reader) - UNSAFE_TAIL_FRAMES)

    @property
    def fps(self) -> float:
        return float(self._reader.get_avg_fps())

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the decoded frames."""
        height, width = self._reader[0].shape[:2] if self.safe_frames else (0, 0)
        return int(width), int(height)

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        indices = [int(i) for i in indices]
        if indices and (min(indices) < 0 or max(indices) >= self.safe_frames):
            raise IndexError(f"frame indices {min(indices)}..{max(indices)} outside the {self.safe_frames} safe frames of {self.name}")
        try:
            return self._reader.get_batch(indices).asnumpy()
        except self._errors as err:
            raise UnreadableVideoError(f"cannot decode frames of {self.name}: {err}") from err


def _decord() -> tuple[Any, tuple[type[BaseException], ...]]:
    try:
        import decord
        from decord._ffi.base import DECORDError
    except ImportError as err:  # the video extra is not installed
        raise ImportError(f"reading videos needs decord: pip install 'difftok[video]' ({err})") from err
    return decord, (RuntimeError, DECORDError)


def _name(source: VideoSource) -> str:
    return "<bytes>" if isinstance(source, bytes) else str(source)


@contextlib.contextmanager
def open_video(source: VideoSource) -> Iterator[_DecordReader]:
    """A reader of ``source`` (path, encoded bytes or tar-shard member), released when the block ends.

    Raises:
        UnreadableVideoError: the file cannot be opened as a video.
    """
    decord, errors = _decord()
    if isinstance(source, TarMember):
        source = source.read_bytes()
    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        reader = decord.VideoReader(handle, ctx=decord.cpu(0), num_threads=1)
    except errors as err:
        raise UnreadableVideoError(f"cannot open {_name(source)} as a video: {err}") from err
    wrapped = _DecordReader(reader, _name(source), errors)
    try:
        yield wrapped
    finally:
        with contextlib.suppress(*errors):
            reader.seek(0)  # releases decoder buffers before the reader goes (decord leaks otherwise, #197)
        del wrapped._reader, reader


def video_info(source: VideoSource) -> VideoInfo:
    """Frame rate, safe frame count and size of a video (opens it; raises :class:`UnreadableVideoError`)."""
    with open_video(source) as reader:
        width, height = reader.size
        return VideoInfo(fps=reader.fps, frames=reader.safe_frames, width=width, height=height)


def video_info_bytes(data: bytes) -> dict[str, Any]:
    """:func:`video_info` of encoded bytes as a dict (the shard writer's ``metadata`` hook)."""
    return video_info(data).to_dict()


def check_video_bytes(data: bytes, mode: str = "decode") -> None:
    """Raise unless ``data`` is a readable video: ``header`` opens it, ``decode`` also reads the last safe frame."""
    with open_video(data) as reader:
        if reader.safe_frames < 1:
            raise UnreadableVideoError("the video has no readable frames")
        if mode == "decode":
            reader.frames([reader.safe_frames - 1])
