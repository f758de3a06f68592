r"""Noise synchronization (DiTo §4), as a pure function.

Per sample with probability ``p``: draw :math:`\tau \sim U[0, \tau_{max}]`, noise the latent along
the same FM path, :math:`z_\tau = (1-\tau) z + (\sigma_{min} + \tau(1-\sigma_{min}))\varepsilon_z`,
and draw that sample's pixel time :math:`t \sim U[\tau, 1]`; other samples keep ``z`` and
:math:`t \sim U[0, 1]`. Gradients flow through :math:`z_\tau` into the encoder (nothing detached).
The mix is done with ``torch.where`` per sample (never by indexing with a 0/1 mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.flow.path import FlowPath, expand_time
from core.flow.time_samplers import truncated_uniform

__all__ = ["NoiseSyncConfig", "NoiseSyncOutput", "noise_sync"]


@dataclass(frozen=True)
class NoiseSyncConfig:
    """Noise-sync hyper-parameters (DiTo: p = 0.1, tau_max = 1)."""

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


def noise_sync(z: Tensor, *, path: FlowPath, config: NoiseSyncConfig, generator: torch.Generator | None = None) -> NoiseSyncOutput:
    """Apply noise synchronization to a batch of latents and draw the matching pixel times."""
    batch = z.shape[0]
    device = z.device
    tau = torch.rand(batch, device=device, generator=generator) * config.tau_max  # (B,)
    synced = torch.rand(batch, device=device, generator=generator) < config.p  # (B,)
    eps_z = torch.randn(z.shape, device=device, dtype=z.dtype, generator=generator)
    tau_b = expand_time(tau, z)
    z_tau = path.alpha(tau_b) * z + path.sigma(tau_b) * eps_z
    z_out = torch.where(expand_time(synced, z).bool(), z_tau, z)
    t_synced = truncated_uniform(tau, generator=generator)
    t_free = torch.rand(batch, device=device, generator=generator)
    t = torch.where(synced, t_synced, t_free)
    return NoiseSyncOutput(z=z_out, t=t, synced=synced, tau=tau)
