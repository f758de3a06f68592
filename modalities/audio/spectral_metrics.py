"""MR-STFT and multi-scale mel distances as core :class:`~core.eval.protocol.ReconstructionMetric` s.

Each accumulator keeps the per-clip distances of every batch and reports their mean (lower is
better), so the result does not depend on how clips were batched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from modalities.audio.spectral import DAC_STFT_WINDOWS, mrstft_distance, multiscale_mel_distance

__all__ = ["PerClipDistance", "MRSTFTDistanceMetric", "MelDistanceMetric"]


class PerClipDistance:
    """Mean over clips of ``distance(reference, reconstruction) -> (B,)``, reported as ``{name: value}``."""

    def __init__(self, name: str, distance: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.name, self.distance = name, distance
        self._values: list[Tensor] = []

    def update(self, reference: Tensor, reconstruction: Tensor) -> None:
        """Add a batch of ``(B, C, L)`` originals and reconstructions."""
        with torch.no_grad():
            self._values.append(self.distance(reconstruction, reference).detach().double().cpu())

    def compute(self) -> dict[str, float]:
        """``{name: mean per-clip distance}``; NaN before any update."""
        if not self._values:
            return {self.name: float("nan")}
        return {self.name: float(torch.cat(self._values).mean())}


class MRSTFTDistanceMetric(PerClipDistance):
    """DAC's MR-STFT distance (windows 2048 / 512), key ``mrstft``."""

    def __init__(self) -> None:
        super().__init__("mrstft", lambda x, y: mrstft_distance(x, y, DAC_STFT_WINDOWS))


class MelDistanceMetric(PerClipDistance):
    """DAC's multi-scale mel distance at ``sample_rate``, key ``mel_distance``."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__("mel_distance", lambda x, y: multiscale_mel_distance(x, y, sample_rate))
