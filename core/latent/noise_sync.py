r"""Noise synchronization (DiTo §4), as a pure function.

Per sample with probability ``p``: draw :math:`\tau \sim U[0, \tau_{max}]`, noise the latent along
the same FM path, :math:`z_\tau = (1-\tau) z + (\sigma_{min} + \tau(1-\sigma_{min}))\varepsilon_z`,
and draw that sample's pixel time :math:`t \sim U[\tau, 1]`; other samples keep ``z`` and draw
their pixel time from the tokenizer's configured time sampler (DiTo's is :math:`U[0, 1]`; an
SSDD-style logit-normal sampler stays logit-normal for them). Gradients flow through :math:`z_\tau` into the encoder (nothing detached).
The mix is done with ``torch.where`` per sample (never by indexing with a 0/1 mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.flow.path import FlowPath, expand_time
from core.flow.time_samplers import TimeSampler, UniformTimeSampler, truncated_uniform

__all__ = ["NoiseSyncConfig", "NoiseSyncOutput", "noise_sync"]


@dataclass
class NoiseSyncConfig:
    """Noise-sync hyper-parameters (DiTo: p = 0.1, tau_max = 1; p = 0 disables noise sync).

    Not frozen: it is also a Hydra/OmegaConf structured-config node (``model.noise_sync.p=0.1``),
    and OmegaConf makes frozen dataclass nodes read-only.
    """

    p: float = 0.1
    tau_max: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"noise-sync p must be in [0, 1], got {self.p}")
        if not 0.0 <= self.tau_max <= 1.0:
            raise ValueError(f"noise-sync tau_max must be in [0, 1], got {self.tau_max}")


@dataclass
class NoiseSyncOutput:
    """Result of :func:`noise_sync`."""

    z: Tensor  # (B, C_z, *latent_spatial): z_tau where synced, z elsewhere
    t: Tensor  # (B,): pixel time, >= tau where synced
    synced: Tensor  # (B,) bool
    tau: Tensor  # (B,): latent noise level (meaningful where synced)


def noise_sync(
    z: Tensor,
    *,
    path: FlowPath,
    config: NoiseSyncConfig,
    time_sampler: TimeSampler | None = None,
    generator: torch.Generator | None = None,
) -> NoiseSyncOutput:
    """Apply noise synchronization to a batch of latents and draw the matching pixel times.

    Args:
        z: latents ``(B, C_z, *latent_spatial)``.
        path: the flow path (noises ``z`` exactly like the data).
        config: ``p`` and ``tau_max``.
        time_sampler: draws the unsynced samples' times (default ``U[0, 1]``, DiTo's).
        generator: seeds every draw. The order (tau, sync mask, latent noise, synced t, unsynced t)
            is fixed, so a uniform sampler reproduces DiTo runs bit for bit.
    """
    batch = z.shape[0]
    device = z.device
    tau = torch.rand(batch, device=device, generator=generator) * config.tau_max  # (B,)
    synced = torch.rand(batch, device=device, generator=generator) < config.p  # (B,)
    eps_z = torch.randn(z.shape, device=device, dtype=z.dtype, generator=generator)
    tau_b = expand_time(tau, z)
    z_tau = path.alpha(tau_b) * z + path.sigma(tau_b) * eps_z
    z_out = torch.where(expand_time(synced, z).bool(), z_tau, z)
    t_synced = truncated_uniform(tau, generator=generator)
    t_free = (time_sampler or UniformTimeSampler())(batch, device=device, generator=generator)
    t = torch.where(synced, t_synced, t_free)
    return NoiseSyncOutput(z=z_out, t=t, synced=synced, tau=tau)
