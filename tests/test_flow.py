"""Flow path, time samplers, loss and solvers: math properties."""

from __future__ import annotations

import math

import pytest
import torch

from core.flow.loss import TimeBucketLoss, flow_matching_loss, per_sample_mse
from core.flow.path import FlowPath
from core.flow.time_samplers import LogitNormalTimeSampler, UniformTimeSampler, truncated_uniform
from core.samplers.grids import time_grid
from core.samplers.solvers import euler_solve, heun_solve, initial_noise, solve


def test_path_endpoints_and_target():
    path = FlowPath(sigma_min=1e-5)
    x, eps = torch.randn(4, 3, 8), torch.randn(4, 3, 8)
    s0 = path.sample(x=x, noise=eps, t=torch.zeros(4))
    s1 = path.sample(x=x, noise=eps, t=torch.ones(4))
    torch.testing.assert_close(s0.x_t, x + 1e-5 * eps)
    torch.testing.assert_close(s1.x_t, eps)
    torch.testing.assert_close(s0.target, x - (1 - 1e-5) * eps)


@pytest.mark.parametrize("sigma_min", [0.0, 1e-5, 0.1])
def test_target_is_minus_dxdt_and_x0_identity(sigma_min):
    path = FlowPath(sigma_min=sigma_min)
    x, eps = torch.randn(5, 2, 4, 4, dtype=torch.float64), torch.randn(5, 2, 4, 4, dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64)
    s = path.sample(x=x, noise=eps, t=t)
    h = 1e-6
    dxdt = (path.sample(x=x, noise=eps, t=t + h).x_t - path.sample(x=x, noise=eps, t=t - h).x_t) / (2 * h)
    torch.testing.assert_close(path.velocity_to_dxdt(s.target), dxdt, atol=1e-6, rtol=1e-6)
    x0_hat = path.data_estimate(x_t=s.x_t, t=t, u=s.target)
    # exact for sigma_min = 0; otherwise x + sigma_min * eps (documented)
    torch.testing.assert_close(x0_hat, x + sigma_min * eps, atol=1e-12, rtol=0)
    if sigma_min == 0:
        assert torch.equal(x0_hat.round(decimals=10), x.round(decimals=10))


def test_network_time_scale():
    assert FlowPath().network_time(torch.tensor([0.5])).item() == 500.0
    with pytest.raises(ValueError):
        FlowPath(sigma_min=1.5)


def test_time_samplers_statistics():
    g = torch.Generator().manual_seed(0)
    u = UniformTimeSampler()(200_000, generator=g)
    assert 0 <= u.min() and u.max() <= 1
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.var().item() - 1 / 12) < 0.002
    ln = LogitNormalTimeSampler(0.5, 0.8)(200_000, generator=g)
    logits = torch.logit(ln.double())
    assert abs(logits.mean().item() - 0.5) < 0.01 and abs(logits.std().item() - 0.8) < 0.01
    low = torch.rand(100_000, generator=g)
    t = truncated_uniform(low, generator=g)
    assert torch.all(t >= low) and torch.all(t <= 1)
    # (t - low) / (1 - low) must be U[0, 1]
    r = (t - low) / (1 - low)
    assert abs(r.mean().item() - 0.5) < 0.01
    with pytest.raises(ValueError):
        truncated_uniform(torch.tensor([1.5]))


def test_loss_fp32_mean_over_dims_then_batch():
    pred = torch.randn(3, 2, 5, 5, dtype=torch.float16)
    target = torch.randn(3, 2, 5, 5, dtype=torch.float16)
    per = per_sample_mse(pred, target)
    assert per.dtype == torch.float32 and per.shape == (3,)
    manual = torch.stack([(pred[i].float() - target[i].float()).pow(2).mean() for i in range(3)]).mean()
    torch.testing.assert_close(flow_matching_loss(pred, target), manual)


def test_time_bucket_loss_matches_manual():
    monitor = TimeBucketLoss(4)
    t = torch.tensor([0.1, 0.2, 0.6, 0.99, 1.0])
    loss = torch.tensor([1.0, 3.0, 5.0, 7.0, 9.0])
    monitor.update(t, loss)
    out = monitor.compute()
    assert out["loss_t0"].item() == 2.0
    assert math.isnan(out["loss_t1"].item())
    assert out["loss_t2"].item() == 5.0 and out["loss_t3"].item() == 8.0


def test_grids():
    g = time_grid(8, "power", power=2.0)
    expected = torch.tensor([1, 0.765625, 0.5625, 0.390625, 0.25, 0.140625, 0.0625, 0.015625, 0])
    torch.testing.assert_close(g, expected.double())
    torch.testing.assert_close(time_grid(50, "uniform"), torch.linspace(1, 0, 51, dtype=torch.float64))
    with pytest.raises(ValueError):
        time_grid(0)
    with pytest.raises(ValueError):
        time_grid(4, "cosine")


def gaussian_velocity(mean: float, std: float, sigma_min: float):
    """Exact u = E[x - (1 - sigma_min) eps | x_t] for data ~ N(mean, std^2)."""
    path = FlowPath(sigma_min=sigma_min)

    def velocity(x_t, t, cond):
        tb = t.reshape(-1, *([1] * (x_t.ndim - 1))).to(x_t.dtype)
        a, s = path.alpha(tb), path.sigma(tb)
        var = a**2 * std**2 + s**2
        resid = x_t - a * mean
        e_x = mean + a * std**2 / var * resid
        e_eps = s / var * resid
        return e_x - (1 - sigma_min) * e_eps

    return velocity


@pytest.mark.parametrize("solver,steps", [("euler", 200), ("heun", 40)])
@pytest.mark.parametrize("sigma_min", [0.0, 1e-5])
def test_solvers_recover_gaussian_moments(solver, steps, sigma_min):
    mean, std = 1.5, 0.5
    g = torch.Generator().manual_seed(0)
    x1 = initial_noise((20_000, 1), generator=g, dtype=torch.float64)
    out = solve(solver, gaussian_velocity(mean, std, sigma_min), x1, time_grid(steps, "uniform"))
    assert abs(out.sample.mean().item() - mean) < 0.02
    assert abs(out.sample.std().item() - std) < 0.02
    assert out.num_function_evals == (steps if solver == "euler" else 2 * steps)


def test_heun_beats_euler_at_equal_steps():
    mean, std = 2.0, 0.3
    v = gaussian_velocity(mean, std, 0.0)
    x1 = initial_noise((20_000, 1), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grid = time_grid(5, "uniform")
    e = euler_solve(v, x1, grid).sample
    h = heun_solve(v, x1, grid).sample
    # the exact flow maps x1 -> mean + std * x1
    exact = mean + std * x1
    assert (h - exact).abs().mean() < (e - exact).abs().mean()


def test_solver_deterministic_given_generator():
    v = gaussian_velocity(0.0, 1.0, 0.0)
    a = euler_solve(v, initial_noise((4, 2), generator=torch.Generator().manual_seed(3)), time_grid(4)).sample
    b = euler_solve(v, initial_noise((4, 2), generator=torch.Generator().manual_seed(3)), time_grid(4)).sample
    c = euler_solve(v, initial_noise((4, 2), generator=torch.Generator().manual_seed(4)), time_grid(4)).sample
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError):
        solve("rk4", v, a, time_grid(2))


def _ks_distance(samples: torch.Tensor, cdf) -> float:
    """Kolmogorov-Smirnov distance between the empirical CDF of ``samples`` and ``cdf``."""
    x, _ = samples.double().sort()
    n = x.numel()
    model = cdf(x)
    above = torch.arange(1, n + 1, dtype=torch.float64) / n - model
    below = model - torch.arange(0, n, dtype=torch.float64) / n
    return float(torch.maximum(above, below).max())


def test_noise_sync_keeps_the_configured_time_sampler_for_unsynced_samples():
    """Bug: with a logit-normal sampler, noise sync drew the unsynced samples' t from U[0, 1]."""
    from core.latent.noise_sync import NoiseSyncConfig, noise_sync

    out = noise_sync(torch.randn(20_000, 2, 2), path=FlowPath(sigma_min=0.0), config=NoiseSyncConfig(p=0.3),
                     time_sampler=LogitNormalTimeSampler(), generator=torch.Generator().manual_seed(0))
    free = out.t[~out.synced]
    logit_normal_cdf = lambda t: torch.special.ndtr(torch.logit(t))  # noqa: E731
    assert _ks_distance(free, logit_normal_cdf) < 0.02  # 1% critical value at n = 14000 is ~0.014
    assert _ks_distance(free, lambda t: t) > 0.05  # and clearly not uniform
    assert torch.all(out.t[out.synced] >= out.tau[out.synced])  # synced samples keep DiTo's t ~ U[tau, 1]
    assert 0.28 < out.synced.float().mean() < 0.32


def test_noise_sync_uniform_default_draws_like_dito():
    """The default sampler consumes the generator exactly as DiTo's rule did (bit-identical runs)."""
    from core.latent.noise_sync import NoiseSyncConfig, noise_sync

    z, path, cfg = torch.randn(64, 3, 2, 2), FlowPath(), NoiseSyncConfig(p=0.5)
    default = noise_sync(z, path=path, config=cfg, generator=torch.Generator().manual_seed(5))
    uniform = noise_sync(z, path=path, config=cfg, time_sampler=UniformTimeSampler(), generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    tau, synced = torch.rand(64, generator=g), torch.rand(64, generator=g) < 0.5
    torch.randn(z.shape, generator=g)
    t_synced = tau + (1 - tau) * torch.rand(64, generator=g)
    manual = torch.where(synced, t_synced, torch.rand(64, generator=g))
    assert torch.equal(default.t, manual) and torch.equal(uniform.t, manual) and torch.equal(default.z, uniform.z)


def test_training_losses_use_the_configured_sampler_under_noise_sync():
    from core.builder import ComponentConfig, build_autoencoder
    from core.latent.noise_sync import NoiseSyncConfig
    from tests.conftest import tiny_config

    ae = build_autoencoder(tiny_config(time_sampler=ComponentConfig("logit_normal"), noise_sync=NoiseSyncConfig(p=0.1)))
    g = torch.Generator().manual_seed(0)
    ts = torch.cat([ae.training_losses(torch.rand(64, 3, 8, 8, generator=g) * 2 - 1, generator=g)["t"] for _ in range(4)])
    # 256 draws, ~90% unsynced logit-normal: far fewer extreme times than U[0, 1] would give
    assert float(((ts < 0.05) | (ts > 0.95)).float().mean()) < 0.06
