"""Which clips the offline tools use, and the audio settings of ``evaluate`` / ``latent_stats`` / ``cache_latents``.

Protocol (the loop is core's; every choice is recorded in the report):

- clips: a seeded class-stratified subset of N files of a folder, webdataset shards or the bundled speech;
- eval transform: decode (soundfile), resample to ``sample_rate``, channel policy, the centre crop of
  ``seconds`` rounded down to a multiple of ``hop`` (give the tokenizer's hop), RMS to ``level_db`` dBFS
  (no random gain), clamp; files shorter than the crop are skipped and reported as ``too_short`` (apart from unreadable ones) by the loop;
- reconstructions are rounded to 16-bit PCM before every metric;
- metrics (:mod:`modalities.audio.metrics`): SI-SDR, waveform L1, PESQ-WB, STOI. No FAD: every audio
  Fréchet embedding (VGGish, CLAP, PANNs) needs a weights download.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.eval.command import EvalSettings
from core.eval.samples import CacheInputs, EvalSamples, SampleRequest
from core.eval.selection import CacheSource, SourceData, list_cache_inputs, select_samples
from core.latent.cache_command import CacheLatentsSettings
from core.latent.stats_command import LatentStatsSettings
from modalities.audio.data import AUDIO_DATA, AudioClipLoader, AudioTransform, ClipFormat

__all__ = ["ClipSettings", "ClipSelection", "AudioEvalSettings", "AudioLatentStatsSettings", "AudioCacheLatentsSettings", "clip_loader",
           "select_audio_samples", "audio_cache_inputs"]


@dataclass
class ClipSettings:
    """The evaluation clip: model rate, channels, crop length, hop and level (mixed into each tool's settings)."""

    sample_rate: int = 16000
    channels: int = 1
    seconds: float = 1.024  # centre crop
    hop: int = 256  # the tokenizer's hop: the crop is rounded down to a multiple
    level_db: float = -20.0

    def clip_format(self) -> ClipFormat:
        length = round(self.seconds * self.sample_rate)
        length -= length % self.hop if self.hop > 0 else 0
        if length < 1:
            raise ValueError(f"seconds={self.seconds} gives no whole hop of {self.hop} samples at {self.sample_rate} Hz")
        return ClipFormat(self.sample_rate, self.channels, length, self.level_db)


def clip_loader(clip: ClipFormat) -> AudioClipLoader:
    """The evaluation loader of ``clip`` (files shorter than the crop are refused)."""
    return AudioClipLoader(AudioTransform(clip, clip.length, train=False))


@dataclass
class ClipSelection(ClipSettings):
    """:class:`ClipSettings` plus where the clips come from and how many (a seeded class-stratified subset)."""

    data: SourceData = field(default_factory=SourceData)
    num_clips: int = 200  # <= 0: every clip

    def sample_request(self) -> SampleRequest:
        return SampleRequest(self.data, self.num_clips, self.seed, self.clip_format())  # type: ignore[attr-defined]


@dataclass
class AudioEvalSettings(ClipSelection, EvalSettings):
    """Settings of one audio evaluation run (``python -m recipes.audio.evaluate``)."""

    modality: str = "audio"
    fid: bool = False  # no offline audio FAD
    speech: bool = True  # PESQ / STOI (speech measures; turn off for music)


@dataclass
class AudioLatentStatsSettings(ClipSelection, LatentStatsSettings):
    """Settings of ``python -m recipes.latent_stats modality=audio``."""

    modality: str = "audio"
    num_clips: int = 1000


@dataclass
class AudioCacheLatentsSettings(ClipSettings, CacheLatentsSettings):
    """Settings of ``python -m recipes.cache_latents modality=audio`` (``flip`` reverses time: rarely wanted)."""

    modality: str = "audio"
    data: CacheSource = field(default_factory=CacheSource)
    labels: str = "folder"  # folder | file | none


def select_audio_samples(request: SampleRequest) -> EvalSamples:
    """The audio modality's ``select_eval_samples`` hook (``request.size``: a :class:`ClipFormat`)."""
    loader = clip_loader(request.size)
    return select_samples(AUDIO_DATA, request.data, request.count, request.seed, loader, loader.describe())


def audio_cache_inputs(settings: AudioCacheLatentsSettings) -> CacheInputs:
    """The audio modality's ``cache_inputs`` hook: the clips of ``settings.data`` in the deterministic encoding order."""
    loader = clip_loader(settings.clip_format())
    return list_cache_inputs(AUDIO_DATA, settings.data, settings.labels, loader, loader.describe(), shuffle=settings.shuffle,
                             seed=settings.seed)
