"""The audio counterparts of LPIPS: spectral loss terms on the one-step estimate ``x̂0``.

Registered in ``LOSS_TERMS`` as ``mrstft`` (multi-resolution STFT magnitude + log-magnitude,
windows 2048 / 512 / 128) and ``mel_l1`` (DAC's multi-scale log-mel L1); both compare
``inputs.x0_hat`` with ``inputs.reference`` (the clean audio in training, the teacher's sample in
distillation), averaged over the batch. No weights, nothing frozen, nothing checkpointed.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from core.loss_terms import LossInputs, LossTerm
from core.registry import LOSS_TERMS
from modalities.audio.spectral import DAC_MEL_BANDS, DAC_MEL_WINDOWS, MRSTFT_LOSS_WINDOWS, mrstft_distance, multiscale_mel_distance

__all__ = ["MRSTFTLoss", "MelL1Loss", "mrstft", "mel_l1"]


class MRSTFTLoss(LossTerm):
    """Mean :func:`~modalities.audio.spectral.mrstft_distance` between ``x̂0`` and the reference."""

    def __init__(self, window_lengths: Sequence[int] = MRSTFT_LOSS_WINDOWS) -> None:
        super().__init__()
        self.window_lengths = tuple(int(w) for w in window_lengths)

    def forward(self, inputs: LossInputs) -> Tensor:
        return mrstft_distance(inputs.x0_hat, inputs.reference, self.window_lengths).mean()


class MelL1Loss(LossTerm):
    """Mean :func:`~modalities.audio.spectral.multiscale_mel_distance` between ``x̂0`` and the reference."""

    def __init__(self, sample_rate: int, window_lengths: Sequence[int] = DAC_MEL_WINDOWS, n_mels: Sequence[int] = DAC_MEL_BANDS) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.window_lengths, self.n_mels = tuple(int(w) for w in window_lengths), tuple(int(m) for m in n_mels)

    def forward(self, inputs: LossInputs) -> Tensor:
        return multiscale_mel_distance(inputs.x0_hat, inputs.reference, self.sample_rate, self.window_lengths, self.n_mels).mean()


@LOSS_TERMS.register("mrstft")
def mrstft(window_lengths: Sequence[int] = MRSTFT_LOSS_WINDOWS) -> MRSTFTLoss:
    """Multi-resolution STFT (magnitude + log-magnitude) L1 on the one-step estimate."""
    return MRSTFTLoss(window_lengths)


@LOSS_TERMS.register("mel_l1")
def mel_l1(sample_rate: int = 16000, window_lengths: Sequence[int] = DAC_MEL_WINDOWS,
           n_mels: Sequence[int] = DAC_MEL_BANDS) -> MelL1Loss:
    """Multi-scale log-mel L1 (DAC windows) on the one-step estimate; ``sample_rate`` is the model rate."""
    return MelL1Loss(sample_rate, window_lengths, n_mels)
