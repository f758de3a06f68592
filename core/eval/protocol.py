"""What a modality hands the evaluation loops: metric accumulators, a feature extractor, a quantisation.

Core never knows what PSNR or Inception is; it only calls these small interfaces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["ReconstructionMetric", "FeatureExtractor", "MetricSuite", "Quantization"]


@runtime_checkable
class ReconstructionMetric(Protocol):
    """Accumulates one metric over a dataset, batch by batch."""

    def update(self, reference: Tensor, reconstruction: Tensor) -> None:
        """Add a batch: originals and (quantised) reconstructions, both ``(B, C, *spatial)`` in [-1, 1]."""

    def compute(self) -> dict[str, float]:
        """``{name: value}`` over everything added so far."""


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps samples ``(B, C, *spatial)`` in [-1, 1] to features ``(B, num_features)`` for Fréchet distances.

    Attributes:
        num_features: feature dimension (fewer samples than this gives rank-deficient covariances).
        info: JSON-ready description written to reports (weights file, preprocessing, ...).
    """

    num_features: int
    info: dict[str, Any]

    def __call__(self, samples: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class MetricSuite:
    """A modality's reconstruction metrics for one evaluation run.

    Attributes:
        make: builds a fresh list of accumulators (one list per decode step count).
        notes: remarks for the report (e.g. a metric skipped and how to enable it).
        protocol: JSON-ready definitions of the metrics, copied into the report.
        features: a feature extractor configured by this run's settings (video: the user's ``i3d=`` file),
            used by the offline command instead of ``Modality.feature_extractor``; None: the modality's.
        features_note: why ``features`` is None and how to enable it (video: pass ``i3d=``); reported instead
            of the generic "no feature extractor" note.
    """

    make: Callable[[], list[ReconstructionMetric]]
    notes: tuple[str, ...] = ()
    protocol: dict[str, str] = field(default_factory=dict)
    features: FeatureExtractor | None = None
    features_note: str | None = None


@dataclass(frozen=True)
class Quantization:
    """Rounding to the precision of the stored data format (image: 8 bits), applied before every metric.

    Attributes:
        store: ``(B, C, *spatial)`` in [-1, 1] -> the stored form (image: uint8 in [0, 255]).
        load: the stored form -> [-1, 1] float.
        description: one line for reports.
    """

    store: Callable[[Tensor], Tensor]
    load: Callable[[Tensor], Tensor]
    description: str

    def __call__(self, x: Tensor) -> Tensor:
        """``load(store(x))``: ``x`` as a saved file would give it back."""
        return self.load(self.store(x))
