"""Audio data: typed options, the crop/level transform and the audio :class:`~core.data.datamodule.DataSpec`.

Every clip is decoded with soundfile (:mod:`modalities.audio.io`), resampled to
``data.options.sample_rate``, given ``data.options.channels`` by the channel policy, cropped and
RMS-normalised to ``level_db`` dBFS, then clamped to [-1, 1]:

- training: a random crop of ``crop_seconds`` and a random gain of +-``gain_db`` dB;
- evaluation / previews: the centre crop of ``eval_seconds`` (default ``crop_seconds``), no random gain.
  A fixed crop (not the whole file) keeps batches rectangular and the score independent of file lengths.

Crop lengths in samples are rounded DOWN to a multiple of ``data.options.hop`` when it is set (give the
tokenizer's hop, e.g. 256 for ``audio_tiny``), because the encoder needs ``L % hop == 0``.

Files shorter than ``min_seconds`` (default: the crop) after decoding are skipped and counted as
``too_short``, separately from unreadable ones (the decoded length is what counts: a truncated WAV can
decode silently short). Files at least ``min_seconds`` but shorter than the crop are padded on the right
with silence. Everything else (folders, shards, demo, holdout, skip-and-count, streaming) is core's
:class:`~core.data.datamodule.SampleDataModule`.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from core.data.datamodule import DataSpec, SampleDataModule
from core.data.options import SampleDataOptions, parse_options
from core.data.skips import TooShortError  # a decoded clip shorter than the minimum: counted as too_short
from core.data.sources import SampleRef
from modalities.audio.demo import export_demo_dataset
from modalities.audio.io import AudioSource, Waveform, log, match_channels, normalise_level, read_audio, resample

__all__ = ["AUDIO_EXTENSIONS", "SHARD_AUDIO_EXTENSIONS", "TooShortError", "AudioDataOptions", "ClipFormat", "AudioTransform",
           "AudioClipLoader", "check_audio", "check_audio_bytes", "AUDIO_DATA", "AudioDataModule"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
SHARD_AUDIO_EXTENSIONS = ("flac", "wav", "ogg", "mp3")


@dataclass(frozen=True)
class AudioDataOptions(SampleDataOptions):
    """``data.options`` of the audio modality.

    Attributes:
        sample_rate: the model's rate in Hz; every file is resampled to it.
        channels: the model's channels (1 mono, 2 stereo); see :func:`~modalities.audio.io.match_channels`.
        crop_seconds: training crop length.
        min_seconds: shortest decoded file used (0: ``crop_seconds``); shorter ones are skipped as ``too_short``.
        level_db: RMS level of every crop in dBFS.
        gain_db: training crops get a further uniform gain in ``[-gain_db, +gain_db]`` dB.
        hop: the tokenizer's hop; crop lengths are rounded down to a multiple of it (0: not rounded).
        eval_seconds: evaluation / preview centre-crop length (0: ``crop_seconds``).
    """

    sample_rate: int = 16000
    channels: int = 1
    crop_seconds: float = 1.024
    min_seconds: float = 0.0
    level_db: float = -20.0
    gain_db: float = 6.0
    hop: int = 0
    eval_seconds: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sample_rate <= 0 or self.channels < 1:
            raise ValueError(f"data.options.sample_rate={self.sample_rate} / channels={self.channels} must be positive")
        if self.crop_seconds <= 0 or self.min_seconds < 0 or self.eval_seconds < 0 or self.gain_db < 0 or self.hop < 0:
            raise ValueError("data.options.crop_seconds must be > 0 and min_seconds / eval_seconds / gain_db / hop >= 0")
        for name in ("crop_seconds", "eval_seconds"):
            seconds = getattr(self, name)
            if seconds and self.crop_length(seconds) < 1:
                raise ValueError(f"data.options.{name}={seconds} is shorter than one hop ({self.hop} samples at "
                                 f"{self.sample_rate} Hz); use at least {self.hop / self.sample_rate:.4f} s")

    def crop_length(self, seconds: float) -> int:
        """``seconds`` in samples at the model rate, rounded down to a multiple of ``hop``."""
        length = round(seconds * self.sample_rate)
        return length - length % self.hop if self.hop else length

    def min_length_seconds(self) -> float:
        """The shortest decoded duration used."""
        return self.min_seconds or self.crop_seconds


@dataclass(frozen=True)
class ClipFormat:
    """What one model-ready clip is: rate, channels, length in samples and RMS level."""

    sample_rate: int
    channels: int
    length: int
    level_db: float = -20.0

    def conform(self, wave: Waveform) -> Waveform:
        """``wave`` at this rate and channel count (resampled / mixed as needed)."""
        samples = match_channels(resample(wave.samples, wave.sample_rate, self.sample_rate), self.channels)
        return Waveform(samples, self.sample_rate)

    def describe(self) -> str:
        return (f"resample to {self.sample_rate} Hz, {self.channels} channel(s), centre crop {self.length} samples "
                f"({self.length / self.sample_rate:.3f} s), RMS to {self.level_db:g} dBFS, clamp [-1, 1]")


@dataclass(frozen=True)
class AudioTransform:
    """Conform, crop (random in training, centred otherwise), level-normalise: ``Waveform -> (C, length)``.

    Attributes:
        clip: target rate / channels / crop length / level.
        min_length: shortest conformed clip used, in samples (shorter: :class:`TooShortError`).
        gain_db: random gain range of training crops.
        train: random crop position and gain.
    """

    clip: ClipFormat
    min_length: int
    gain_db: float = 0.0
    train: bool = True

    def for_cache(self, wave: Waveform) -> Waveform:
        """What an in-memory cache keeps: the clip resampled and channel-mapped (the slow part)."""
        return self.clip.conform(wave)

    def __call__(self, wave: Waveform, rng: random.Random | None) -> Tensor:
        wave = self.clip.conform(wave)
        samples, length = wave.samples, self.clip.length
        if wave.frames < self.min_length:
            raise TooShortError(f"{wave.frames} samples ({wave.seconds:.3f} s) at {wave.sample_rate} Hz after decoding; "
                                f"need {self.min_length} (data.options.min_seconds / crop_seconds)")
        if wave.frames < length:  # between min_seconds and the crop: silence on the right
            samples = torch.nn.functional.pad(samples, (0, length - wave.frames))
        start = rng.randint(0, samples.shape[-1] - length) if self.train and rng is not None else (samples.shape[-1] - length) // 2
        crop = samples[:, start : start + length]
        return normalise_level(crop, self.clip.level_db, self.gain_db, rng if self.train else None).contiguous()


@dataclass(frozen=True)
class AudioClipLoader:
    """``ref -> (C, length)``: the evaluation transform of one file (picklable for DataLoader workers)."""

    transform: AudioTransform

    def __call__(self, ref: AudioSource) -> Tensor:
        return self.transform(read_audio(ref), None)

    def describe(self) -> str:
        return self.transform.clip.describe() + f"; shorter than {self.transform.min_length} samples: skipped"


def check_audio(ref: SampleRef, min_seconds: float = 0.0) -> None:
    """Raise unless ``ref`` decodes fully (:class:`~modalities.audio.io.UnreadableAudioError`) to at least
    ``min_seconds`` (:class:`TooShortError`)."""
    wave = read_audio(ref)
    if wave.seconds < min_seconds:
        raise TooShortError(f"{wave.frames} frames = {wave.seconds:.3f} s after decoding, shorter than {min_seconds} s")


def check_audio_bytes(data: bytes, mode: str = "decode") -> None:
    """Shard-writer check: ``decode`` decodes fully, ``header`` reads the header only."""
    from modalities.audio.io import audio_info

    read_audio(data) if mode == "decode" else audio_info(data)


def audio_train_transform(options: AudioDataOptions, cfg: Any) -> AudioTransform:
    """The training :class:`AudioTransform` of ``options`` (``cfg``: the data config, unused: lengths are in seconds)."""
    clip = ClipFormat(options.sample_rate, options.channels, options.crop_length(options.crop_seconds), options.level_db)
    return AudioTransform(clip, round(options.min_length_seconds() * options.sample_rate), options.gain_db, train=True)


def audio_eval_transform(options: AudioDataOptions, cfg: Any) -> AudioTransform:
    """The evaluation (centre-crop, no gain) :class:`AudioTransform`."""
    seconds = options.eval_seconds or options.crop_seconds
    clip = ClipFormat(options.sample_rate, options.channels, options.crop_length(seconds), options.level_db)
    return AudioTransform(clip, round(min(options.min_length_seconds(), seconds) * options.sample_rate), train=False)


AUDIO_DATA = DataSpec(
    noun="clip", extensions=AUDIO_EXTENSIONS, shard_extensions=SHARD_AUDIO_EXTENSIONS, open_ref=read_audio, open_bytes=read_audio,
    check=check_audio, options_type=AudioDataOptions, train_transform=audio_train_transform, eval_transform=audio_eval_transform,
    export_demo=export_demo_dataset, logger=log,
)


class AudioDataModule(SampleDataModule):
    """Folder / demo / shard audio: :class:`~core.data.datamodule.SampleDataModule` with :data:`AUDIO_DATA`.

    The setup scan decodes every file and drops (and counts, in ``skip_counts``) unreadable and
    too-short ones; ``data.options`` are :class:`AudioDataOptions`.
    """

    def __init__(self, cfg: Any, seed: int = 0, batch_size: int | None = None) -> None:
        options = parse_options(AudioDataOptions, cfg.options)
        spec = dataclasses.replace(AUDIO_DATA, check=functools.partial(check_audio, min_seconds=options.min_length_seconds()))
        super().__init__(cfg, spec, seed, batch_size)
