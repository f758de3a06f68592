"""Audio previews: WAV files of originals / reconstructions plus one PNG of their log-mel spectrograms.

A preview ``path`` (``.png``) gets the spectrogram strip, and every clip a WAV next to it named
``<stem>_<row>_<column>.wav`` (column 0: the original, then each reconstruction). Spectrograms are
``torchaudio.transforms.MelSpectrogram`` (1024-point FFT, hop 256, 80 mels) in dB, 80 dB range, low
frequencies at the bottom; white lines separate the tiles. The 16-bit PCM quantisation used before
every metric is defined here too: it is the precision of the WAVs written here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from core.eval.protocol import Quantization
from modalities.audio.io import write_wav

__all__ = ["PREVIEW_SAMPLE_RATE", "PCM16", "preview_sample_rate", "mel_image", "write_audio_grid", "write_audio_preview",
           "write_audio_samples"]

PREVIEW_SAMPLE_RATE = 16000  # the speech models' rate: used when a run's data options name none
_FULL_SCALE = 32768.0  # libsndfile's int16 <-> float scale (reads back q / 32768; it writes with floor, within 1 LSB)


def _to_pcm16(x: Tensor) -> Tensor:
    return (x.detach().float() * _FULL_SCALE).round().clamp(-32768, 32767).to(torch.int16)


def _from_pcm16(q: Tensor) -> Tensor:
    return q.float() / _FULL_SCALE


PCM16 = Quantization(store=_to_pcm16, load=_from_pcm16,
                     description="16-bit PCM (round(x * 32768), clipped to int16) before all metrics: a 16-bit WAV's precision")


def preview_sample_rate(options: Mapping[str, Any] | None) -> int:
    """The rate of a run's clips: ``sample_rate`` of its data options (training) or settings (offline tools).

    The tensors carry no rate; a WAV written at the wrong one plays at the wrong speed and pitch.
    """
    rate = (options or {}).get("sample_rate")
    if rate is None:
        return PREVIEW_SAMPLE_RATE
    if int(rate) <= 0:
        raise ValueError(f"sample_rate={rate} must be positive")
    return int(rate)


def mel_image(samples: Tensor, sample_rate: int = PREVIEW_SAMPLE_RATE, n_mels: int = 80, top_db: float = 80.0) -> np.ndarray:
    """``(C, N)`` or ``(N,)`` -> uint8 ``(n_mels, frames)`` image of the mono mix's log-mel spectrogram."""
    from torchaudio.transforms import MelSpectrogram

    mono = samples.detach().float().cpu().reshape(-1, samples.shape[-1]).mean(dim=0)
    n_fft = min(1024, max(16, 2 ** int(np.log2(max(mono.numel(), 16)))))
    mel = MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=max(1, n_fft // 4), n_mels=n_mels)(mono)
    db = 10 * torch.log10(mel.clamp(min=1e-10))
    db = db.clamp(min=db.max() - top_db)
    scaled = (db - db.min()) / (db.max() - db.min()).clamp(min=1e-6)
    return (scaled.flip(0) * 255).round().to(torch.uint8).numpy()


def write_audio_grid(rows: list[Tensor], path: str | Path, pad: int = 2, sample_rate: int | None = None,
                     options: Mapping[str, Any] | None = None) -> Path:
    """One PNG of mel spectrograms (a row per sample, each ``(K, C, L)``) and a WAV per clip; returns the PNG's path.

    The rate is ``sample_rate``, else ``options["sample_rate"]`` (see :func:`preview_sample_rate`).
    """
    sample_rate = preview_sample_rate(options if sample_rate is None else {"sample_rate": sample_rate})
    if not rows:
        raise ValueError("write_audio_grid needs at least one row")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tiles = [[mel_image(clip, sample_rate) for clip in row] for row in rows]
    height, width = tiles[0][0].shape
    columns = max(len(r) for r in tiles)
    canvas = np.full((len(tiles) * (height + pad) + pad, columns * (width + pad) + pad), 255, dtype=np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            canvas[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    Image.fromarray(canvas).save(path)
    for r, row in enumerate(rows):
        for c, clip in enumerate(row):
            write_wav(clip, path.with_name(f"{path.stem}_{r}_{c}.wav"), sample_rate)
    return path


def write_audio_preview(originals: Tensor, reconstructions: Tensor, path: Path, options: Mapping[str, Any] | None = None) -> Path:
    """Originals and reconstructions ``(B, C, L)``: one row per clip (original, reconstruction), at the
    rate of the run's data options."""
    return write_audio_grid([torch.stack([o, r]) for o, r in zip(originals, reconstructions)], path, options=options)


def write_audio_samples(samples: Tensor, path: Path, options: Mapping[str, Any] | None = None) -> Path:
    """Generated clips ``(B, C, L)``: one row each, at the rate of the run's data options."""
    return write_audio_grid([clip[None] for clip in samples], path, options=options)
