"""Latent generators: models trained on tokenizer latents (DiTo §6's class-conditional latent DiT).

Modality agnostic: a generator sees ``(B, C_z, *latent_spatial)`` tensors and class labels, never
pixels. ``objective.py`` holds the flow-matching training objective, ``sampling.py`` the
classifier-free-guided Euler sampler, ``config.py`` the config/builder and ``pretrained.py`` the
``config.json`` + safetensors export.
"""

from core.generation.config import GeneratorConfig, build_generator
from core.generation.objective import LatentGenerator
from core.generation.pretrained import load_generator, save_generator
from core.generation.sampling import GeneratedLatents, guided_velocity, sample_latents

__all__ = [
    "GeneratorConfig",
    "build_generator",
    "LatentGenerator",
    "GeneratedLatents",
    "guided_velocity",
    "sample_latents",
    "save_generator",
    "load_generator",
]
