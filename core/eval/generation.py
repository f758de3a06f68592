"""The generation-evaluation loop (gFID-style) for any modality's feature extractor.

Samples class-balanced latents with a latent generator, decodes them with the tokenizer, quantises
them like saved files and compares their features with those of reference samples through the
Fréchet distance. Every sample's latent and decode noise is seeded by (seed, sample index), so the
result does not depend on the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from core.eval.frechet import FeatureBank
from core.eval.protocol import FeatureExtractor, Quantization
from core.eval.runtime import per_sample_noise
from core.eval.samples import EvalSamples, LoadedSamples, sample_loader
from core.generation.sampling import sample_and_decode

__all__ = ["class_balanced_labels", "reference_features", "GeneratedFeatures", "generated_features"]


def class_balanced_labels(count: int, num_classes: int) -> Tensor:
    """``i mod num_classes`` for ``i < count``: every class equally often (the null class never)."""
    return torch.arange(count) % max(1, num_classes)


def reference_features(samples: EvalSamples, extractor: FeatureExtractor, *, batch_size: int, num_workers: int = 0,
                       device: torch.device | str = "cpu") -> Tensor:
    """Features ``(N, D)`` float64 of the readable reference samples."""
    bank = FeatureBank()
    for batch in sample_loader(LoadedSamples(samples.refs, samples.load), batch_size, num_workers):
        if batch["x"] is not None:
            bank.update(extractor(batch["x"].to(device)))
    return bank.features()


@dataclass
class GeneratedFeatures:
    """Features of the generated samples and the first few samples themselves (quantised)."""

    features: Tensor
    previews: list[Tensor] = field(default_factory=list)


@torch.no_grad()
def generated_features(
    generator: Any,
    tokenizer: Any,
    extractor: FeatureExtractor,
    *,
    num_samples: int,
    batch_size: int,
    seed: int,
    num_steps: int,
    cfg_scale: float,
    decode_steps: int | None = None,
    quantization: Quantization | None = None,
    preview_count: int = 0,
    on_batch: Callable[[Tensor, Tensor], None] | None = None,
    device: torch.device | str = "cpu",
) -> GeneratedFeatures:
    """Generate ``num_samples`` class-balanced samples and extract their features.

    Args:
        generator: latent generator (:class:`~core.generation.sampling` conventions), on ``device``.
        tokenizer: the autoencoder decoding its latents, on ``device``.
        extractor: the modality's feature extractor.
        num_samples: samples to generate (labels ``i mod num_classes``).
        batch_size: samples per batch (results do not depend on it).
        seed: latent noise seeded by (seed, i), decode noise by (seed + 1, i).
        num_steps: generator sampling steps; ``cfg_scale``: classifier-free guidance; ``decode_steps``: tokenizer steps.
        quantization: applied to the samples before features and previews.
        preview_count: keep this many samples.
        on_batch: ``(quantised samples, indices)`` after each batch (saving files, progress).
        device: where the sampling runs.
    """
    config = generator.config
    labels = class_balanced_labels(num_samples, config.num_classes)
    latent_shape = config.latent_shape()
    bank, previews = FeatureBank(), []
    for begin in range(0, num_samples, batch_size):
        index = torch.arange(begin, min(begin + batch_size, num_samples))
        samples = sample_and_decode(
            generator, tokenizer, labels[index].to(device),
            latent_noise=per_sample_noise(latent_shape, seed, index).to(device),
            data_noise=per_sample_noise(tokenizer.data_shape(latent_shape), seed + 1, index).to(device),
            num_steps=num_steps, cfg_scale=cfg_scale, decode_steps=decode_steps,
        )
        if quantization is not None:
            samples = quantization(samples)
        bank.update(extractor(samples))
        previews.extend(samples[: max(0, preview_count - len(previews))].cpu())
        if on_batch is not None:
            on_batch(samples, index)
    return GeneratedFeatures(bank.features(), previews)
