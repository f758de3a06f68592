"""Latent-generator objective and CFG sampler (core.generation), independent of the DiT network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.flow.path import FlowPath
from core.generation.objective import LatentGenerator
from core.generation.sampling import guided_velocity, sample_latents


class PointMassNet(nn.Module):
    """The exact velocity of a flow whose data distribution is one point ``centre[label]`` (sigma_min = 0).

    With ``x_t = (1 - t) c + t eps``: ``eps = (x_t - (1 - t) c) / t`` and ``u = c - eps``, so Euler
    integration from t = 1 lands exactly on ``c`` (the paths are straight lines).
    """

    spatial_dims, in_channels = 2, 2

    def __init__(self, centres: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("centres", centres)  # (num_classes + 1, C, H, W); last = null class
        self.scale = nn.Parameter(torch.ones(()))  # gives the model a parameter (dtype probe, grads)
        self.num_classes = centres.shape[0] - 1
        self.null_class = self.num_classes

    def forward(self, x_t: torch.Tensor, t_net: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        t = (t_net / 1000.0).view(-1, 1, 1, 1)
        c = self.centres[labels]
        eps = (x_t - (1 - t) * c) / t
        return self.scale * (c - eps)


def point_mass_model(num_classes: int = 3, drop: float = 0.1) -> LatentGenerator:
    centres = torch.randn(num_classes + 1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    return LatentGenerator(PointMassNet(centres), path=FlowPath(sigma_min=0.0), label_drop_prob=drop)


def test_euler_sampling_lands_on_the_class_point_and_cfg_extrapolates():
    model = point_mass_model().eval()
    labels = torch.tensor([0, 1, 2, 3])  # 3 = null class
    noise = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    plain = sample_latents(model, labels, (2, 4, 4), num_steps=5, cfg_scale=1.0, noise=noise)
    torch.testing.assert_close(plain.latents, model.net.centres[labels], atol=1e-5, rtol=1e-5)
    assert plain.num_function_evals == 5
    guided = sample_latents(model, labels[:3], (2, 4, 4), num_steps=7, cfg_scale=2.0, noise=noise[:3])
    null = model.net.centres[3]
    torch.testing.assert_close(guided.latents, null + 2.0 * (model.net.centres[:3] - null), atol=1e-4, rtol=1e-4)
    assert guided.num_function_evals == 14  # conditional + unconditional per step


def test_batched_cfg_equals_two_passes():
    torch.manual_seed(0)
    net = PointMassNet(torch.randn(5, 2, 4, 4))
    model = LatentGenerator(net, path=FlowPath(sigma_min=0.0)).eval()
    z_t, t, labels = torch.randn(3, 2, 4, 4), torch.rand(3) * 0.9 + 0.05, torch.tensor([0, 2, 4])
    batched = guided_velocity(model, z_t, t, labels, 3.5, batched=True)
    two_pass = guided_velocity(model, z_t, t, labels, 3.5, batched=False)
    torch.testing.assert_close(batched, two_pass)
    cond, uncond = model.velocity(z_t, t, labels), model.velocity(z_t, t, torch.full_like(labels, 4))
    torch.testing.assert_close(two_pass, uncond + 3.5 * (cond - uncond))
    torch.testing.assert_close(guided_velocity(model, z_t, t, labels, 1.0), cond)


def test_sampling_is_reproducible_from_noise_seed():
    model = point_mass_model().eval()
    model.net.scale.data.fill_(0.7)  # off the exact solution, so the trajectory depends on the noise
    labels = torch.tensor([0, 1])
    a = sample_latents(model, labels, (2, 4, 4), num_steps=4, generator=torch.Generator().manual_seed(3)).latents
    b = sample_latents(model, labels, (2, 4, 4), num_steps=4, generator=torch.Generator().manual_seed(3)).latents
    c = sample_latents(model, labels, (2, 4, 4), num_steps=4, generator=torch.Generator().manual_seed(4)).latents
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    with pytest.raises(ValueError, match="noise has shape"):
        sample_latents(model, labels, (2, 4, 4), noise=torch.zeros(2, 2, 4, 5))


def test_label_drop_rate_null_mapping_and_range_check():
    model = point_mass_model(num_classes=3, drop=0.25)
    labels = torch.zeros(40_000, dtype=torch.long)
    dropped = model.conditioning_labels(labels, drop=True, generator=torch.Generator().manual_seed(0))
    rate = (dropped == model.null_class).float().mean().item()
    assert abs(rate - 0.25) < 0.01
    assert set(dropped.unique().tolist()) == {0, 3}
    assert torch.equal(model.conditioning_labels(labels[:5], drop=False), labels[:5])
    assert model.conditioning_labels(torch.tensor([-1, 2]), drop=False).tolist() == [3, 2]  # unlabelled -> null
    with pytest.raises(ValueError, match="num_classes"):
        model.conditioning_labels(torch.tensor([3]), drop=False)  # the null index is not a data label


def test_training_losses_match_the_flow_matching_formula():
    torch.manual_seed(0)
    model = point_mass_model(drop=0.0).train()
    model.net.scale.data.fill_(0.5)
    z, labels = torch.randn(6, 2, 4, 4), torch.tensor([0, 1, 2, 0, 1, -1])
    seed = 123
    losses = model.training_losses(z, labels, generator=torch.Generator().manual_seed(seed))
    # independent recomputation with the same draws: t ~ U[0,1] (B,), then eps
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(6, generator=g)
    eps = torch.randn(z.shape, generator=g)
    tb = t.view(-1, 1, 1, 1)
    z_t = (1 - tb) * z + tb * eps
    u = model.net(z_t, 1000 * t, torch.tensor([0, 1, 2, 0, 1, 3]))
    expected = (u - (z - eps)).square().flatten(1).mean(1)
    torch.testing.assert_close(losses["t"], t)
    torch.testing.assert_close(losses["fm_per_sample"], expected)
    torch.testing.assert_close(losses["loss"], expected.mean())
    losses["loss"].backward()
    assert model.net.scale.grad is not None and model.net.scale.grad.abs() > 0
    with pytest.raises(ValueError, match="expected latents"):
        model.training_losses(torch.randn(2, 3, 4, 4), torch.tensor([0, 1]))
