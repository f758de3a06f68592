"""Reading audio and bringing it to the model's format: decode, resample, channel policy, level.

Decoding is ``soundfile`` (libsndfile: WAV / FLAC / OGG / MP3, from paths and from bytes). Never
``torchaudio.load``: since torchaudio 2.9 it needs torchcodec and FFmpeg shared libraries. Resampling
is ``torchaudio.functional.resample`` (windowed sinc), or ``scipy.signal.resample_poly`` when torchaudio
cannot be imported. Only this plugin imports soundfile / torchaudio, and only inside functions.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from core.data.sources import TarMember

__all__ = ["AudioSource", "Waveform", "UnreadableAudioError", "read_audio", "audio_info", "resample", "match_channels",
           "rms_dbfs", "normalise_level", "write_wav"]

log = logging.getLogger("difftok.audio")

AudioSource = Union[str, Path, TarMember, bytes]


class UnreadableAudioError(OSError):
    """libsndfile could not decode the data (an ``OSError``, so core's skip-and-count paths catch it)."""


@dataclass(frozen=True)
class Waveform:
    """Decoded audio: ``samples`` ``(C, N)`` float32 at ``sample_rate`` Hz."""

    samples: Tensor
    sample_rate: int

    @property
    def frames(self) -> int:
        """Samples per channel."""
        return int(self.samples.shape[-1])

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate


def _file_like(source: AudioSource) -> str | io.BytesIO:
    if isinstance(source, TarMember):
        return io.BytesIO(source.read_bytes())
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    return str(source)


def read_audio(source: AudioSource) -> Waveform:
    """Decode a file, tar-shard member or encoded bytes to a :class:`Waveform` (every channel kept).

    Raises:
        UnreadableAudioError: the data is not decodable audio (libsndfile's errors are ``RuntimeError``s,
            which core's skip paths would not catch, so they are re-raised as this ``OSError``).
    """
    import soundfile

    try:
        array, rate = soundfile.read(_file_like(source), dtype="float32", always_2d=True)
    except (RuntimeError, TypeError) as err:  # LibsndfileError / SoundFileError subclass RuntimeError
        raise UnreadableAudioError(f"cannot decode audio {source if not isinstance(source, bytes) else '<bytes>'}: {err}") from err
    return Waveform(torch.from_numpy(np.ascontiguousarray(array.T)), int(rate))


def audio_info(data: bytes) -> dict[str, int]:
    """``{"sr", "channels", "frames"}`` of encoded audio bytes from the header (no full decode)."""
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(data))
    except RuntimeError as err:
        raise UnreadableAudioError(f"cannot read the audio header: {err}") from err
    return {"sr": int(info.samplerate), "channels": int(info.channels), "frames": int(info.frames)}


def resample(samples: Tensor, orig_rate: int, target_rate: int) -> Tensor:
    """``(C, N)`` at ``orig_rate`` -> ``(C, ceil(N * target / orig))`` at ``target_rate`` (identity when equal)."""
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {target_rate}")
    if orig_rate == target_rate:
        return samples
    try:
        from torchaudio.functional import resample as sinc_resample
    except (ImportError, OSError, RuntimeError) as err:  # missing, or a binary built against another torch
        _log_once(f"torchaudio unavailable ({type(err).__name__}); resampling with scipy.signal.resample_poly")
        from scipy.signal import resample_poly

        gcd = math.gcd(orig_rate, target_rate)
        out = resample_poly(samples.numpy(), target_rate // gcd, orig_rate // gcd, axis=-1)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
    return sinc_resample(samples, orig_rate, target_rate)


@functools.lru_cache(maxsize=None)
def _log_once(message: str) -> None:
    """Log ``message`` the first time only (a conversion applied to every file is worth one line, not one per file)."""
    log.info(message)


def match_channels(samples: Tensor, channels: int) -> Tensor:
    """Apply the channel policy to ``(C, N)``: mono models get the mean of all channels; a model with more
    channels than the file gets a mono file duplicated; extra channels beyond the model's are dropped.

    Each kind of conversion is logged once per process.
    """
    have = samples.shape[0]
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if have == channels:
        return samples
    if channels == 1:
        _log_once(f"mixing {have}-channel audio down to mono (mean of the channels)")
        return samples.mean(dim=0, keepdim=True)
    if have == 1:
        _log_once(f"duplicating mono audio to {channels} channels")
        return samples.expand(channels, -1).clone()
    if have > channels:
        _log_once(f"keeping the first {channels} of {have} channels")
        return samples[:channels]
    raise ValueError(f"cannot map {have}-channel audio to {channels} channels; give mono or >= {channels}-channel files")


def rms_dbfs(samples: Tensor) -> float:
    """RMS level of ``samples`` in dB relative to full scale (a full-scale sine is -3 dBFS); -inf for silence."""
    rms = float(samples.double().square().mean().sqrt())
    return 20 * math.log10(rms) if rms > 0 else float("-inf")


def normalise_level(samples: Tensor, level_db: float, gain_db: float = 0.0, rng: random.Random | None = None) -> Tensor:
    """Scale to an RMS of ``level_db`` dBFS, plus a gain drawn uniformly in ``[-gain_db, +gain_db]`` when ``rng``
    is given (training), then clamp to [-1, 1]. Digital silence is returned unscaled."""
    level = rms_dbfs(samples)
    if not math.isfinite(level) or level < -120:  # silence: no gain can give it a level
        return samples.clamp(-1, 1)
    target = level_db + (rng.uniform(-gain_db, gain_db) if rng is not None and gain_db > 0 else 0.0)
    return (samples * 10 ** ((target - level) / 20)).clamp(-1, 1)


def write_wav(samples: Tensor, path: str | Path, sample_rate: int) -> Path:
    """Write ``(C, N)`` in [-1, 1] as a 16-bit PCM WAV file; returns its path."""
    import soundfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples.detach().float().clamp(-1, 1).T.cpu().numpy(), sample_rate, subtype="PCM_16")
    return path
