"""Classifier-free-guided Euler sampling of latents (DiTo §5: 200 steps, guidance 2.0).

Guidance mixes the conditional and unconditional velocities over all latent channels:
``u = u_null + w (u_cond - u_null)``. ``batched=True`` evaluates both in one forward of a doubled
batch; ``batched=False`` uses two passes (the official code's way). Both give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from core.generation.objective import LatentGenerator
from core.samplers.grids import time_grid
from core.samplers.solvers import initial_noise, solve

if TYPE_CHECKING:
    from core.autoencoder import DiffusionAutoencoder

__all__ = ["GeneratedLatents", "guided_velocity", "sample_latents", "sample_and_decode"]


@dataclass
class GeneratedLatents:
    """Sampled generator-space latents and the number of network forwards per sample."""

    latents: Tensor  # (B, C_z, *S)
    num_function_evals: int


def guided_velocity(model: LatentGenerator, z_t: Tensor, t: Tensor, labels: Tensor, cfg_scale: float, *, batched: bool = True) -> Tensor:
    """Velocity with classifier-free guidance ``cfg_scale`` (1.0: plain conditional velocity)."""
    if cfg_scale == 1.0:
        return model.velocity(z_t, t, labels)
    null = torch.full_like(labels, model.null_class)
    if batched:
        u = model.velocity(torch.cat([z_t, z_t]), torch.cat([t, t]), torch.cat([labels, null]))  # (2B, C_z, *S)
        u_cond, u_null = u.chunk(2)
    else:
        u_cond = model.velocity(z_t, t, labels)
        u_null = model.velocity(z_t, t, null)
    return u_null + cfg_scale * (u_cond - u_null)


@torch.no_grad()
def sample_latents(
    model: LatentGenerator,
    labels: Tensor,
    latent_shape: tuple[int, ...],
    *,
    num_steps: int = 200,
    cfg_scale: float = 2.0,
    batched_cfg: bool = True,
    grid: str = "uniform",
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> GeneratedLatents:
    """Integrate the generator's flow from noise (t = 1) to latents (t = 0) with Euler steps.

    Args:
        model: the trained generator (use its EMA weights).
        labels: ``(B,)`` class indices; the null class gives unconditional samples.
        latent_shape: ``(C_z, *S)`` of one latent.
        num_steps: Euler steps (DiTo: 200).
        cfg_scale: classifier-free guidance scale (DiTo: 2.0; 1.0 disables guidance).
        batched_cfg: conditional and unconditional velocities in one doubled batch.
        grid: time grid (``"uniform"`` as in DiTo).
        generator: seeds the initial noise.
        noise: explicit initial noise ``(B, C_z, *S)`` (overrides ``generator``).

    Returns:
        generator-space latents; map them to the tokenizer with its ``denormalize_latents``.
    """
    labels = labels.long()
    device = labels.device
    dtype = next(model.parameters()).dtype
    shape = (labels.shape[0], *latent_shape)
    if noise is not None and tuple(noise.shape) != shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {shape}")
    x_init = noise if noise is not None else initial_noise(shape, generator=generator, device=device, dtype=dtype)
    cond = model.conditioning_labels(labels, drop=False, allow_null=True)
    times = time_grid(num_steps, grid, device=device)
    out = solve("euler", lambda z, t, y: guided_velocity(model, z, t, y, cfg_scale, batched=batched_cfg), x_init, times, cond)
    passes = 1 if cfg_scale == 1.0 else 2
    return GeneratedLatents(latents=out.sample, num_function_evals=out.num_function_evals * passes)


@torch.no_grad()
def sample_and_decode(
    model: LatentGenerator,
    tokenizer: "DiffusionAutoencoder",
    labels: Tensor,
    *,
    latent_noise: Tensor,
    data_noise: Tensor,
    num_steps: int | None = None,
    cfg_scale: float | None = None,
    decode_steps: int | None = None,
) -> Tensor:
    """Generate data for ``labels``: CFG Euler latents, mapped back with the statistics the generator was
    trained with (``config.latent_stats``), decoded by ``tokenizer``, clamped to the data range [-1, 1].

    Args:
        latent_noise: initial generator noise ``(B, C_z, *S)``.
        data_noise: initial decoder noise ``(B, *tokenizer.data_shape((C_z, *S)))``.
        num_steps, cfg_scale: default to the generator config's (DiTo: 200, 2.0).
        decode_steps: default to the tokenizer's (DiTo: 50).
    """
    config = model.config
    latents = sample_latents(
        model, labels, config.latent_shape(), num_steps=num_steps or config.sample_steps,
        cfg_scale=config.cfg_scale if cfg_scale is None else cfg_scale, noise=latent_noise,
    ).latents
    z = config.latent_stats.denormalize(latents)
    return tokenizer.decode(z, decode_steps, noise=data_noise).sample.clamp(-1.0, 1.0)
