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
from pathlib import Path
from typing import Any, Optional

from torch import Tensor

from core.data.sources import SampleRef as ImageRef, expand_shards, folder_class_names, list_shard_members
from core.data.subset import stratified_subset
from core.eval.command import EvalSettings
from core.eval.samples import EvalSamples, SampleRequest
from modalities.image.data import SHARD_IMAGE_EXTENSIONS, ImageTransform, list_images, open_image
from modalities.image.demo import export_demo_dataset

__all__ = ["EvalData", "ImageEvalSettings", "CenterCropLoader", "select_eval_images", "select_image_samples"]


@dataclass
class EvalData:
    """Evaluation images: shards (when set) or a folder or the bundled demo photographs."""

    root: Optional[str] = None
    shards: Optional[str] = None
    demo: bool = False


@dataclass
class ImageEvalSettings(EvalSettings):
    """Settings of one image evaluation run (``python -m recipes.image.evaluate``)."""

    modality: str = "image"
    data: EvalData = field(default_factory=EvalData)
    num_images: int = 5000  # <= 0: every image
    resolution: int = 256
    lpips_vgg_weights: Optional[str] = None

    def sample_request(self) -> SampleRequest:
        return SampleRequest(self.data, self.num_images, self.seed, self.resolution)


class CenterCropLoader:
    """``ref -> (3, size, size)`` in [-1, 1]: shorter side to ``size`` (Lanczos), center crop (picklable for workers)."""

    def __init__(self, size: int) -> None:
        self.size, self.transform = size, ImageTransform(size, size, train=False)

    def __call__(self, ref: ImageRef) -> Tensor:
        return self.transform(open_image(ref), rng=None)  # type: ignore[arg-type]  # eval: no randomness

    def describe(self) -> str:
        return f"shorter side to {self.size} (Lanczos), center crop {self.size}"


def select_eval_images(data: EvalData, num_images: int, seed: int, size: int = 256) -> EvalSamples:
    """List every available image with its class, then take the seeded stratified subset."""
    if data.shards:
        members = list_shard_members(expand_shards(data.shards), SHARD_IMAGE_EXTENSIONS)
        refs, labels, source, location = list(members), [m.label for m in members], "shards", str(data.shards)
    elif data.demo or data.root:
        root = export_demo_dataset() if data.demo else Path(data.root)  # type: ignore[arg-type]
        files = list_images(root)
        refs, labels = list(files), folder_class_names(files, root)
        source, location = ("demo" if data.demo else "folder"), str(Path(root).resolve())
    else:
        raise ValueError("no evaluation images: set data.root=FOLDER, data.shards=PATTERN or data.demo=true")
    count = len(refs) if num_images <= 0 else num_images
    chosen = stratified_subset(labels, count, seed)
    loader = CenterCropLoader(size)
    report: dict[str, Any] = {
        "source": source, "location": location, "num_available": len(refs), "num_classes": len(set(labels)),
        "num_images_requested": num_images, "subset": "seeded class-stratified round-robin (subset.txt)", "subset_seed": seed,
    }
    return EvalSamples([refs[i] for i in chosen], [labels[i] for i in chosen], loader, report,
                       {"eval_transform": loader.describe()}, unit="image")


def select_image_samples(request: SampleRequest) -> EvalSamples:
    """The image modality's ``select_eval_samples`` hook."""
    return select_eval_images(request.data, request.count, request.seed, request.size)
