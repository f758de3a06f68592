"""Latent regularizers, distributions, stats and noise synchronization."""

from __future__ import annotations

import pytest
import torch

from core.flow.path import FlowPath
from core.latent.distribution import LatentDist
from core.latent.noise_sync import NoiseSyncConfig, noise_sync
from core.latent.regularizers import KLLatent, LayerNormLatent
from core.latent.stats import LatentStats, compute_latent_stats
from core.registry import REGULARIZERS


@pytest.mark.parametrize("shape", [(3, 4, 32), (3, 4, 8, 8), (3, 4, 2, 4, 4)])
def test_layernorm_latent_per_sample_standardised(shape):
    raw = torch.randn(*shape) * 7 + 3
    z = REGULARIZERS.create("layernorm")(raw).mode()
    flat = z.flatten(1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(shape[0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(1, unbiased=False), torch.ones(shape[0]), atol=1e-4, rtol=0)
    assert LayerNormLatent()(raw).deterministic
    assert not any(True for _ in LayerNormLatent().parameters())  # no affine


@pytest.mark.parametrize("shape", [(3, 4, 6), (3, 4, 5, 4, 4)])
def test_layernorm_frames_standardises_each_frame_and_ignores_later_frames(shape):
    raw = torch.randn(*shape) * 7 + 3
    reg = REGULARIZERS.create("layernorm_frames")
    z = reg(raw).mode()  # (B, C, T, *S)
    per_frame = z.movedim(2, 1).flatten(2)  # (B, T, C*S)
    torch.testing.assert_close(per_frame.mean(2), torch.zeros(shape[0], shape[2]), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_frame.std(2, unbiased=False), torch.ones(shape[0], shape[2]), atol=1e-4, rtol=0)
    # A prefix of the frames normalises to the same values: no statistic spans time.
    torch.testing.assert_close(reg(raw[:, :, :2]).mode(), z[:, :, :2], atol=1e-6, rtol=0)
    # ... unlike the clip-wide DiTo LayerNorm, which this test would catch if it were used instead.
    whole = REGULARIZERS.create("layernorm")
    assert not torch.allclose(whole(raw[:, :, :2]).mode(), whole(raw).mode()[:, :, :2], atol=1e-3)
    with pytest.raises(ValueError, match="time axis"):
        reg(torch.randn(2, 4))


def test_kl_latent_matches_closed_form_and_clamps():
    reg = KLLatent()
    mean, logvar = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    dist = reg(torch.cat([mean, logvar], 1))
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)
    torch.testing.assert_close(dist.kl(), kl, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reg.penalty(dist), kl.mean(), rtol=1e-5, atol=1e-5)
    extreme = reg(torch.cat([mean, torch.full_like(logvar, 100.0)], 1))
    torch.testing.assert_close(extreme.std, torch.full_like(mean, torch.exp(torch.tensor(10.0)).item()))
    assert reg.raw_channels_per_latent == 2


def test_latent_dist_sample_and_mode():
    d = LatentDist(mean=torch.zeros(20000), std=torch.full((20000,), 2.0))
    s = d.sample(torch.Generator().manual_seed(0))
    assert abs(s.std().item() - 2.0) < 0.05 and torch.equal(d.mode(), d.mean)
    point = LatentDist(mean=torch.ones(3))
    assert torch.equal(point.sample(), point.mean) and torch.equal(point.kl(), torch.zeros(3))


def test_latent_stats_roundtrip():
    g = torch.Generator().manual_seed(0)
    data = [torch.randn(8, 4, 4, 4, generator=g) * 3 + 1 for _ in range(20)]
    stats = compute_latent_stats(lambda x: x, data)
    everything = torch.cat(data).double()
    assert stats.shift == pytest.approx(everything.mean().item(), abs=1e-9)
    assert stats.scale == pytest.approx(everything.std(unbiased=False).item(), abs=1e-9)
    assert abs(stats.shift - 1) < 0.15 and abs(stats.scale - 3) < 0.15  # near the generating values (5 sigma)
    z = torch.randn(2, 4, 4, 4)
    torch.testing.assert_close(stats.denormalize(stats.normalize(z)), z)
    with pytest.raises(ValueError):
        LatentStats(scale=0.0)
    with pytest.raises(ValueError):
        compute_latent_stats(lambda x: x, [])


def test_noise_sync_statistics():
    path, cfg = FlowPath(sigma_min=1e-5), NoiseSyncConfig(p=0.1, tau_max=1.0)
    z = torch.randn(200_000, 1, 1)
    out = noise_sync(z, path=path, config=cfg, generator=torch.Generator().manual_seed(0))
    frac = out.synced.float().mean().item()
    assert abs(frac - 0.1) < 0.005
    assert torch.all(out.t[out.synced] >= out.tau[out.synced])
    free_t = out.t[~out.synced]
    assert abs(free_t.mean().item() - 0.5) < 0.005 and abs(free_t.var().item() - 1 / 12) < 0.002
    hist = torch.histc(free_t, bins=10, min=0, max=1) / free_t.numel()
    assert torch.all((hist - 0.1).abs() < 0.01)
    # synced latents follow the FM path: z_tau = (1 - tau) z + sigma(tau) eps
    tau = out.tau[out.synced]
    eps = (out.z[out.synced].flatten() - (1 - tau) * z[out.synced].flatten()) / path.sigma(tau)
    assert abs(eps.mean().item()) < 0.02 and abs(eps.std().item() - 1) < 0.02
    assert torch.equal(out.z[~out.synced], z[~out.synced])
    # tau ~ U[0, tau_max]
    small = noise_sync(z, path=path, config=NoiseSyncConfig(p=1.0, tau_max=0.3), generator=torch.Generator().manual_seed(1))
    assert small.tau.max() <= 0.3 and abs(small.tau.mean().item() - 0.15) < 0.005


def test_noise_sync_gradient_reaches_encoder_through_synced_branch():
    encoder = torch.nn.Linear(4, 4)
    x = torch.randn(16, 4)
    z = encoder(x)[:, :, None]
    out = noise_sync(z, path=FlowPath(), config=NoiseSyncConfig(p=1.0), generator=torch.Generator().manual_seed(0))
    assert out.synced.all()
    out.z.square().sum().backward()
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0
    # the synced latent's gradient is scaled by (1 - tau): it is not detached
    z2 = torch.randn(8, 3, requires_grad=True)
    out2 = noise_sync(z2, path=FlowPath(), config=NoiseSyncConfig(p=1.0), generator=torch.Generator().manual_seed(2))
    out2.z.sum().backward()
    torch.testing.assert_close(z2.grad, (1 - out2.tau)[:, None].expand(8, 3))


def test_noise_sync_config_validation():
    with pytest.raises(ValueError):
        NoiseSyncConfig(p=1.5)
    with pytest.raises(ValueError):
        NoiseSyncConfig(tau_max=-0.1)
