"""STFT / mel transforms and the spectral distances of DAC (``descript-audio-codec``), in plain torch.

- :func:`mrstft_distance`: multi-resolution STFT distance, per window ``L1(|X|, |Y|) +
  L1(log10 |X|², log10 |Y|²)`` with magnitudes clamped at 1e-5, hop = window / 4, Hann window,
  summed over windows (DAC ``MultiScaleSTFTLoss``: windows 2048 / 512; the training term adds 128).
- :func:`multiscale_mel_distance`: the same on mel spectrograms at DAC's seven scales, windows
  32 … 2048 paired with 5 … 320 mel bands, log term only (DAC ``MelSpectrogramLoss`` as configured
  in ``conf/final/*.yml``: ``mag_weight 0``, ``log_weight 1``).

Both take ``(B, C, L)`` waveforms and return one distance per clip ``(B,)`` (channels averaged),
used by the ``mrstft`` / ``mel_l1`` loss terms and by the audio metric suite. The mel filterbank
is the HTK-scale triangular one (torchaudio's ``melscale_fbanks`` default), built here so the loss
does not depend on torchaudio. Everything is computed in fp32.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "DAC_STFT_WINDOWS", "MRSTFT_LOSS_WINDOWS", "DAC_MEL_WINDOWS", "DAC_MEL_BANDS", "CLAMP_EPS",
    "stft_magnitude", "mel_filterbank", "mrstft_distance", "multiscale_mel_distance",
]

DAC_STFT_WINDOWS = (2048, 512)  # DAC's MR-STFT distance (eval and loss)
MRSTFT_LOSS_WINDOWS = (2048, 512, 128)  # spec §3.4: the training term also sees 8 ms detail
DAC_MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
DAC_MEL_BANDS = (5, 10, 20, 40, 80, 160, 320)
CLAMP_EPS = 1e-5


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape or x.ndim != 3:
        raise ValueError(f"expected two waveforms of the same shape (B, C, L), got {tuple(x.shape)} and {tuple(y.shape)}")


def stft_magnitude(x: Tensor, window_length: int, hop_length: int | None = None) -> Tensor:
    """``|STFT|`` of ``(B, C, L)`` audio -> ``(B, C, window_length // 2 + 1, frames)`` (Hann, centred, zero-padded)."""
    hop = hop_length or window_length // 4
    batch, channels, length = x.shape
    window = torch.hann_window(window_length, device=x.device, dtype=torch.float32)
    spec = torch.stft(
        x.float().reshape(batch * channels, length), n_fft=window_length, hop_length=hop, window=window,
        center=True, pad_mode="constant", return_complex=True,
    )
    return spec.abs().reshape(batch, channels, *spec.shape[1:])


@functools.lru_cache(maxsize=64)
def _mel_filterbank_cpu(n_fft: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> Tensor:
    def hz_to_mel(f: Tensor) -> Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_points = torch.linspace(hz_to_mel(torch.tensor(f_min)), hz_to_mel(torch.tensor(f_max)), n_mels + 2, dtype=torch.float64)
    hz_points = 700.0 * (10.0 ** (mel_points / 2595.0) - 1.0)
    lower, centre, upper = hz_points[:-2], hz_points[1:-1], hz_points[2:]
    rising = (freqs[:, None] - lower[None]) / (centre - lower)[None]
    falling = (upper[None] - freqs[:, None]) / (upper - centre)[None]
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()  # (F, n_mels)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None) -> Tensor:
    """HTK-scale triangular filters ``(n_fft // 2 + 1, n_mels)`` (no area normalisation)."""
    return _mel_filterbank_cpu(int(n_fft), int(n_mels), int(sample_rate), float(f_min), float(f_max or sample_rate / 2))


def _log_power(magnitude: Tensor) -> Tensor:
    return 2.0 * torch.log10(magnitude.clamp(min=CLAMP_EPS))  # log10 |X|², DAC's pow = 2


def _per_clip_l1(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).abs().flatten(1).mean(dim=1)


def mrstft_distance(
    x: Tensor, y: Tensor, window_lengths: Sequence[int] = DAC_STFT_WINDOWS, *, mag_weight: float = 1.0,
    log_weight: float = 1.0,
) -> Tensor:
    """Multi-resolution STFT distance between ``(B, C, L)`` waveforms, per clip ``(B,)`` (lower is closer)."""
    _check_pair(x, y)
    total = x.new_zeros(x.shape[0], dtype=torch.float32)
    for window in window_lengths:
        mx, my = stft_magnitude(x, window), stft_magnitude(y, window)
        total = total + mag_weight * _per_clip_l1(mx, my) + log_weight * _per_clip_l1(_log_power(mx), _log_power(my))
    return total


def multiscale_mel_distance(
    x: Tensor, y: Tensor, sample_rate: int, window_lengths: Sequence[int] = DAC_MEL_WINDOWS,
    n_mels: Sequence[int] = DAC_MEL_BANDS, *, mag_weight: float = 0.0, log_weight: float = 1.0,
) -> Tensor:
    """DAC's multi-scale log-mel L1 distance between ``(B, C, L)`` waveforms at ``sample_rate``, per clip ``(B,)``."""
    _check_pair(x, y)
    if len(window_lengths) != len(n_mels):
        raise ValueError(f"give one mel band count per window: {len(window_lengths)} windows, {len(n_mels)} band counts")
    total = x.new_zeros(x.shape[0], dtype=torch.float32)
    for window, bands in zip(window_lengths, n_mels):
        fbank = mel_filterbank(window, bands, sample_rate).to(x.device)
        mx = torch.einsum("bcft,fm->bcmt", stft_magnitude(x, window), fbank)
        my = torch.einsum("bcft,fm->bcmt", stft_magnitude(y, window), fbank)
        total = total + log_weight * _per_clip_l1(_log_power(mx), _log_power(my))
        if mag_weight:
            total = total + mag_weight * _per_clip_l1(mx, my)
    return total
