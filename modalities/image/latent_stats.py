"""Image settings of the latent-statistics command (the loop: :mod:`core.latent.stats_command`).

The images are a seeded class-stratified subset (:func:`~modalities.image.eval_suite.select_eval_images`)
with the eval transform (shorter side to ``size``, center crop).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.eval.samples import SampleRequest
from core.latent.stats_command import LatentStatsSettings
from core.eval.selection import SourceData

__all__ = ["ImageLatentStatsSettings"]


@dataclass
class ImageLatentStatsSettings(LatentStatsSettings):
    """Settings of ``python -m recipes.image.latent_stats`` (all recorded in ``latent_stats.json``)."""

    modality: str = "image"
    data: SourceData = field(default_factory=SourceData)
    num_images: int = 1000  # <= 0: every image
    size: int = 256

    def sample_request(self) -> SampleRequest:
        return SampleRequest(self.data, self.num_images, self.seed, self.size)
