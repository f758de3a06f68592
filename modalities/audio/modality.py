"""The ``audio`` modality: waveforms ``(B, C, L)`` in [-1, 1] (mono 16 kHz by default).

Hooks: soundfile + torchaudio data (:mod:`modalities.audio.data`: folders, shards, bundled speech),
WAV + mel-spectrogram previews, SI-SDR / L1 / PESQ / STOI metrics on 16-bit-PCM-rounded reconstructions
(what a saved WAV gives back), the offline tools' clip settings. There is no ``feature_extractor``: no
audio Fréchet embedding (VGGish, CLAP, PANNs) is available without a weights download, so the offline
evaluation reports no FAD and says so.
"""

from __future__ import annotations

from typing import Any

from core.modality import Modality, ToolSettings, datamodule_eval_split
from core.registry import MODALITIES
from modalities.audio.data import AudioDataModule
from modalities.audio.eval_suite import (AudioCacheLatentsSettings, AudioEvalSettings, AudioLatentStatsSettings, audio_cache_inputs,
                                         select_audio_samples)
from modalities.audio.metrics import audio_metric_suite
from modalities.audio.preview import PCM16, write_audio_grid, write_audio_preview, write_audio_samples

__all__ = ["audio", "make_audio_datamodule"]


def make_audio_datamodule(cfg: Any, seed: int, batch_size: int) -> AudioDataModule:
    """Datamodule factory used by ``core.training.train``."""
    return AudioDataModule(cfg, seed=seed, batch_size=batch_size)



@MODALITIES.register("audio")
def audio() -> Modality:
    """Waveforms, 1 spatial dim (time), [-1, 1]."""
    return Modality(
        name="audio",
        spatial_dims=1,
        channels=1,
        make_datamodule=make_audio_datamodule,
        write_preview=write_audio_preview,
        write_samples=write_audio_samples,
        preview_suffix=".png",
        description="waveforms (B, C, L) in [-1, 1], mono 16 kHz by default (data.options.sample_rate / channels)",
        held_out_dataset=datamodule_eval_split,
        reconstruction_metrics=audio_metric_suite,
        quantization=PCM16,
        feature_extractor=None,
        write_grid=write_audio_grid,
        select_eval_samples=select_audio_samples,
        cache_inputs=audio_cache_inputs,
        tool_settings=ToolSettings(evaluate=AudioEvalSettings, latent_stats=AudioLatentStatsSettings,
                                   cache_latents=AudioCacheLatentsSettings),
    )
