"""Tiled diffusion decoding (core.tiling): one shared noise, tile-by-tile velocities, blended in data space."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.builder import build_autoencoder
from core.nets.layers import conv_nd
from core.shapes import ShapeRule
from core.tiling import LatentTiling, blend_window, plan_axis, resolve_tiles, tiled_velocity
from tests.conftest import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


class LocalToyDecoder(nn.Module):
    """Two 3-wide convs on concat(x_t, z↑, t): a receptive field of ±2 data samples and no global
    statistics, so a tiled decode whose overlap is at least 4 × 2 data samples equals the untiled one."""

    def __init__(self, dims: int, channels: int, latent_channels: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.conv1 = conv_nd(dims, channels + latent_channels + 1, 8, 3, padding=1)
        self.conv2 = conv_nd(dims, 8, channels, 3, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        z_up = z.repeat_interleave(self.factor, dim=2)
        for axis in range(3, z.ndim):
            z_up = z_up.repeat_interleave(self.factor, dim=axis)
        t_map = (t / 1000).view(-1, *(1,) * (x_t.ndim - 1)).expand(x_t.shape[0], 1, *x_t.shape[2:])
        return self.conv2(torch.tanh(self.conv1(torch.cat([x_t, z_up, t_map], dim=1))))


def toy_tokenizer(dims: int):
    torch.manual_seed(dims)
    tok = build_autoencoder(tiny_config(spatial_dims=dims)).eval()
    tok.decoder = LocalToyDecoder(dims, tok.in_channels, tok.latent_channels, tok.downsample_factor)
    return tok


LATENTS = {1: (2, 4, 23), 2: (2, 4, 11, 9), 3: (1, 4, 6, 7, 5)}


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("solver,steps", [("euler", 1), ("heun", 3)])
def test_tiled_equals_untiled_for_a_local_decoder(dims, solver, steps):
    """Overlap 4 latents = 16 data samples: the blend only uses tile values 4+ samples from a tile's
    inner edge, beyond the decoder's ±2 receptive field, so tiled == untiled to fp32 rounding."""
    tok = toy_tokenizer(dims)
    z = torch.randn(LATENTS[dims])
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(tok.data_shape(tuple(z.shape)), generator=g)
    full = tok.decode(z, steps, solver=solver, noise=noise).sample
    tiled = tok.decode(z, steps, solver=solver, noise=noise, tile=5, overlap=4).sample
    torch.testing.assert_close(tiled, full, atol=1e-5, rtol=1e-5)
    # the same with the noise drawn from a generator: one full-size draw, sliced per tile
    same_seed = tok.decode(z, steps, solver=solver, generator=torch.Generator().manual_seed(0), tile=5, overlap=4).sample
    torch.testing.assert_close(same_seed, full, atol=1e-5, rtol=1e-5)


def test_blending_every_step_is_what_keeps_multi_step_tiles_exact():
    """Why tiles share one state per step: decoding each tile independently from its noise slice and
    blending only the result is exact for 1 step, but with 8 steps each tile's wrong border values
    walk inward by the receptive field per step and reach the blended region; blending the velocity
    every step stays exact with the same tiles."""
    tok = toy_tokenizer(2)
    z = torch.randn(LATENTS[2])
    noise = torch.randn(tok.data_shape(tuple(z.shape)))
    tiling = LatentTiling(tok, tuple(z.shape), 5, 2)  # 8 data samples of overlap: 2 of margin = the receptive field
    for steps, independent_exact in ((1, True), (8, False)):
        full = tok.decode(z, steps, noise=noise).sample
        per_step = tok.decode(z, steps, noise=noise, tile=5, overlap=2).sample
        independent = tiling.blend(lambda n, zt: tok.decode(zt, steps, noise=n).sample, noise, z)
        torch.testing.assert_close(per_step, full, atol=1e-5, rtol=1e-5)
        assert ((independent - full).abs().max() < 1e-5) == independent_exact


def test_seams_show_without_enough_overlap():
    """The equality above is not vacuous: with no overlap the tile borders are wrong."""
    tok = toy_tokenizer(2)
    z = torch.randn(LATENTS[2])
    noise = torch.randn(tok.data_shape(tuple(z.shape)))
    full = tok.decode(z, 1, noise=noise).sample
    seams = tok.decode(z, 1, noise=noise, tile=4, overlap=0).sample
    assert (seams - full).abs().max() > 1e-3


def test_tiles_along_a_subset_of_axes_and_memory_is_bounded_by_the_tile():
    tok = toy_tokenizer(3)
    z = torch.randn(LATENTS[3])
    noise = torch.randn(tok.data_shape(tuple(z.shape)))
    shapes = []
    hook = tok.decoder.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    try:
        tiled = tok.decode(z, 1, noise=noise, tile=(None, 5, 3), overlap=(None, 4, 2)).sample
    finally:
        hook.remove()
    f = tok.downsample_factor
    assert set(shapes) == {(1, 3, 6 * f, 5 * f, 3 * f)}  # axis 0 whole; every call sees one tile
    assert len(shapes) == 3 * 3  # 7 latents in tiles of 5 step 1 -> 3 tiles; 5 in tiles of 3 step 1 -> 3
    torch.testing.assert_close(tiled, tok.decode(z, 1, noise=noise).sample, atol=1e-5, rtol=1e-5)


def test_plan_and_blend_windows():
    axis = plan_axis(23, 8, 2)
    assert axis.starts == (0, 6, 12, 15) and axis.stops == (8, 14, 20, 23)  # last tile moved back to end at 23
    assert axis.overlaps(0) == (0, 2) and axis.overlaps(3) == (5, 0)
    assert plan_axis(7, 8, 2).starts == (0,)
    w_a, w_b = blend_window(16, 0, 8), blend_window(16, 8, 0)
    assert w_a[:8].eq(1).all() and w_a[-2:].eq(0).all() and w_b[:2].eq(0).all()
    torch.testing.assert_close(w_a[8:] + w_b[:8], torch.ones(8))  # neighbours' ramps sum to 1


def test_bad_tile_arguments_name_the_fix():
    tok = toy_tokenizer(2)
    with pytest.raises(ValueError, match="0 <= overlap < tile"):
        resolve_tiles(tok, 4, 4)
    with pytest.raises(ValueError, match="one entry per axis"):
        resolve_tiles(tok, (4, 4, 4))
    tok.shape_rule = ShapeRule(tok.shape_rule.factors, causal=(True, False))  # a causal first axis, as video time
    with pytest.raises(ValueError, match="causal: its windows must overlap by >= 1"):
        resolve_tiles(tok, (4, 4), (0, 1))
    assert resolve_tiles(tok, (None, 4)) == [(None, 0), (4, 1)]
    assert resolve_tiles(tok, (2, 2)) == [(2, 1), (2, 0)]  # causal axes default to >= 1 latent of overlap


@pytest.mark.parametrize("family", ["dito", "ssdd"])
def test_tiled_real_tiny_decoders_stay_close(family):
    """Real decoders have global operations (GroupNorm statistics; SSDD's ±7-token attention and
    ResBlocks reach far), so tiled != untiled exactly; with one-tile-wide overlaps the blended decode
    stays within the stated tolerance of the untiled one: mean |Δ| < 0.05 of the output std
    (measured 0.019 for DiTo tiny, 0.010 for SSDD tiny, 192×160 images, tiles of 16 latents, overlap 8)."""
    torch.manual_seed(0)
    if family == "dito":
        from modalities.image.dito import dito_config

        tok = build_autoencoder(dito_config("tiny")).eval()
    else:
        from modalities.image.ssdd import ssdd_config

        tok = build_autoencoder(ssdd_config("tiny", lpips_weight=0, repa_weight=0)).eval()
    with torch.no_grad():  # untrained decoders output ~0: give the last layers weight so the test sees content
        for module in tok.decoder.modules():
            if isinstance(module, nn.Conv2d) and not module.weight.abs().sum():
                module.weight.normal_(0, 0.02)
    z_shape = tok.latent_shape((1, 3, 192, 160))
    z = torch.randn(z_shape)
    noise = torch.randn(tok.data_shape(z_shape), generator=torch.Generator().manual_seed(1))
    full = tok.decode(z, 1, noise=noise).sample
    tiled = tok.decode(z, 1, noise=noise, tile=16, overlap=8).sample
    rel = ((tiled - full).abs().mean() / full.std()).item()
    assert rel < 0.05, rel
    assert (tiled - full).abs().max() > 0  # it did tile (not a silent untiled decode)
