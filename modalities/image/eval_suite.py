"""Which images the offline tools evaluate, and the image settings of the evaluation command.

Protocol (DiTo/SSDD style; the loop itself is :mod:`core.eval.command`, every choice recorded in ``metrics.json``):

- images: a seeded, class-stratified subset of N images (:func:`~core.data.subset.stratified_subset`)
  of a folder, webdataset shards or the bundled demo photographs;
- eval transform: shorter side to ``resolution`` (Lanczos), center crop ``resolution``;
- reconstruction: latent mode, per-image initial noise seeded by (seed, image index) so results do not
  depend on the batch size, ``steps`` solver steps (several step counts reuse the same noise);
- reconstructions are quantised to 8 bits before every metric;
- metrics (:mod:`modalities.image.metrics`): rFID (offline Inception, :mod:`modalities.image.fid`), PSNR as the
  mean of per-image PSNRs (DiTo) AND from the dataset-level MSE (SSDD), SSIM, LPIPS-VGG when weights are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from torch import Tensor

from core.data.sources import SampleRef
from core.eval.command import EvalSettings
from core.eval.samples import EvalSamples, SampleRequest
from core.eval.selection import SourceData, select_samples
from modalities.image.data import IMAGE_DATA, ImageTransform, open_image

__all__ = ["ImageEvalSettings", "CenterCropLoader", "select_eval_images", "select_image_samples"]


@dataclass
class ImageEvalSettings(EvalSettings):
    """Settings of one image evaluation run (``python -m recipes.image.evaluate``)."""

    modality: str = "image"
    data: SourceData = field(default_factory=SourceData)
    num_images: int = 5000  # <= 0: every image
    resolution: int = 256
    lpips_vgg_weights: Optional[str] = None

    def sample_request(self) -> SampleRequest:
        return SampleRequest(self.data, self.num_images, self.seed, self.resolution)


class CenterCropLoader:
    """``ref -> (3, size, size)`` in [-1, 1]: shorter side to ``size`` (Lanczos), center crop (picklable for workers)."""

    def __init__(self, size: int) -> None:
        self.size, self.transform = size, ImageTransform(size, size, train=False)

    def __call__(self, ref: SampleRef) -> Tensor:
        return self.transform(open_image(ref), rng=None)  # type: ignore[arg-type]  # eval: no randomness

    def describe(self) -> str:
        return f"shorter side to {self.size} (Lanczos), center crop {self.size}"


def select_eval_images(data: SourceData, num_images: int, seed: int, size: int = 256) -> EvalSamples:
    """The seeded class-stratified subset of ``num_images`` images, center-cropped to ``size``."""
    loader = CenterCropLoader(size)
    return select_samples(IMAGE_DATA, data, num_images, seed, loader, loader.describe())


def select_image_samples(request: SampleRequest) -> EvalSamples:
    """The image modality's ``select_eval_samples`` hook."""
    return select_eval_images(request.data, request.count, request.seed, request.size)
