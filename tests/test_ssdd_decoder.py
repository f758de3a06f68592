"""SSDD U-ViT decoder: sizes, parameter counts, FLOPs, shapes, init, REPA hook point, KL encoders, config."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

import modalities.image  # noqa: F401  (registers the ssdd_* decoders and kl_* encoders)
from core.builder import ComponentConfig, build_autoencoder
from core.flops import count_flops
from core.registry import DECODERS, ENCODERS
from modalities.image.ssdd import ssdd_config
from modalities.image.ssdd.transformer import TransformerBlock

MANIFESTS = Path("/work/shared/spec/official-weights")
SIZES = ["s", "b", "m", "l", "xl", "h"]
# spec table: parameters in Mi (2^20) as printed by the paper, for z_dim 4
PAPER_MI = {"s": 13.4, "b": 20.2, "m": 48.0, "l": 86.6, "xl": 153.8, "h": 345.9}
# spec table: exact parameter counts (1e6 units, 2 decimals), incl. the code-only XS
PARAMS_1E6 = {"xs": 5.00, "s": 14.06, "b": 21.14, "m": 50.28, "l": 90.76, "xl": 161.27, "h": 362.69}
MID_TRANSFORMER_1E6 = {"xs": 1.27, "s": 3.52, "b": 6.25, "m": 16.82, "l": 39.33, "xl": 69.88, "h": 157.11}


# small convolutions/attention run faster and steadier on one thread (conftest fixture)
pytestmark = pytest.mark.usefixtures("one_thread")


@functools.lru_cache(maxsize=None)
def meta_decoder(size: str) -> torch.nn.Module:
    """Shape-only f8 decoder, built once per size for this module."""
    return build_decoder(size)


def build_decoder(size: str, device: str = "meta", **kwargs):
    builder_args = {"spatial_dims": 2, "in_channels": 3, "latent_channels": 4, "upsample_factor": 8, **kwargs}
    with torch.device(device):
        return DECODERS.create(f"ssdd_{size}", **builder_args)


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("size", list(PARAMS_1E6))
def test_parameter_counts_match_the_paper(size):
    decoder = meta_decoder(size)
    n = num_params(decoder)
    assert round(n / 1e6, 2) == PARAMS_1E6[size]
    assert round(num_params(decoder.mid_block) / 1e6, 2) == MID_TRANSFORMER_1E6[size]
    if size in PAPER_MI:
        assert round(n / 2**20, 1) == PAPER_MI[size]
        manifest = json.loads((MANIFESTS / f"ssdd-f8c4-{size.upper()}.json").read_text())
        official = sum(torch.Size(shape).numel() for name, shape in manifest["state_dict"] if name.startswith("decoder."))
        assert n == official


def test_every_registered_size_instantiates_with_repa_attributes():
    names = DECODERS.list("ssdd_*")
    assert set(names) == {f"ssdd_{s}" for s in ["tiny", "xs", "s", "b", "m", "l", "xl", "h"]}
    for name in names:
        decoder = meta_decoder(name.removeprefix("ssdd_"))
        block = decoder.get_submodule(decoder.repa_module)
        assert isinstance(block, TransformerBlock)
        assert decoder.token_stride == 8
        assert decoder.repa_dim == decoder.mid_block.proj_in.out_features
        n_layers = len(decoder.mid_block.transformer_blocks)
        assert decoder.repa_module.endswith(f".{min(4, n_layers // 2)}")


def test_heads_follow_the_official_rule():
    heads = {s: meta_decoder(s).mid_block.transformer_blocks[0].attn.heads for s in ["xs", *SIZES]}
    assert heads == {"xs": 4, "s": 4, "b": 4, "m": 4, "l": 6, "xl": 8, "h": 12}


def test_ssdd_m_flops_at_256():
    decoder = meta_decoder("m")
    with torch.device("meta"):
        args = torch.randn(1, 3, 256, 256), torch.full((1,), 500.0), torch.randn(1, 4, 32, 32)
    flops = count_flops(decoder, *args)
    assert abs(flops.conv_linear / 1e9 - 524.3) < 0.1
    assert abs(flops.total / 1e9 - 538.8) < 0.1


def test_cpu_flash_attention_is_counted_once():
    q = torch.randn(2, 4, 64, 8)
    expected = 4 * 2 * 4 * 64 * 64 * 8
    assert count_flops(torch.nn.functional.scaled_dot_product_attention, q, q, q).attention == expected  # flash kernel
    mask = torch.zeros(4, 64, 64)
    assert count_flops(torch.nn.functional.scaled_dot_product_attention, q, q, q, attn_mask=mask).attention == expected


@pytest.mark.parametrize("factor, image", [(8, (32, 48)), (16, (32, 64))])
def test_tiny_decoder_shapes_f8_f16_non_square(factor, image):
    torch.manual_seed(0)
    decoder = build_decoder("tiny", "cpu", upsample_factor=factor)
    h, w = image
    x_t, z = torch.randn(2, 3, h, w), torch.randn(2, 4, h // factor, w // factor)
    seen = {}
    hook = decoder.get_submodule(decoder.repa_module).register_forward_hook(lambda m, a, out: seen.setdefault("tokens", out))
    u = decoder(x_t, torch.tensor([10.0, 900.0]), z)
    hook.remove()
    assert u.shape == x_t.shape and torch.isfinite(u).all()
    assert seen["tokens"].shape == (2, (h // 8) * (w // 8), decoder.repa_dim)
    with pytest.raises(ValueError, match="does not match"):
        decoder(x_t, torch.tensor([1.0, 2.0]), torch.randn(2, 4, 3, 3))


def test_latent_conditions_every_pixel_block():
    """Changing one latent pixel changes the output (AdaGN/AdaLN/concat paths are wired)."""
    torch.manual_seed(0)
    decoder = build_decoder("tiny", "cpu")
    for p in decoder.parameters():  # un-zero the residual outputs so every path contributes
        if p.abs().sum() == 0 and p.ndim > 1:
            torch.nn.init.normal_(p, std=0.02)
    x_t, z = torch.randn(1, 3, 32, 32), torch.randn(1, 4, 4, 4)
    z2 = z.clone()
    z2[:, :, 0, 0] += 1.0
    with torch.no_grad():
        diff = (decoder(x_t, torch.tensor([500.0]), z) - decoder(x_t, torch.tensor([500.0]), z2)).abs()
    assert diff[..., :8, :8].mean() > diff[..., 24:, 24:].mean() > 0


def test_official_initialisation():
    torch.manual_seed(0)
    decoder = build_decoder("s", "cpu")
    block = decoder.mid_block.transformer_blocks[0]
    assert decoder.down_blocks[0].resnets[0].conv2.weight.abs().sum() == 0
    assert block.ff.proj_out.weight.abs().sum() == 0
    assert block.attn.relative_bias_table.abs().sum() == 0
    assert abs(decoder.down_blocks[1].resnets[0].conv1.weight.std().item() - 0.02) < 1e-3
    w = block.attn.to_q.weight  # xavier uniform: bound sqrt(6 / (fan_in + fan_out))
    assert w.abs().max() <= (6 / (2 * w.shape[0])) ** 0.5 and w.abs().max() > 0.9 * (6 / (2 * w.shape[0])) ** 0.5
    assert all(m.bias.abs().sum() == 0 for m in decoder.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None)


def test_rejects_non_2d_and_bad_factors():
    with pytest.raises(ValueError, match="spatial_dims=2"):
        build_decoder("tiny", spatial_dims=3)
    with pytest.raises(ValueError, match="multiple of 8"):
        build_decoder("tiny", upsample_factor=4)


@pytest.mark.parametrize("name, factor, params_1e6", [("kl_f8c4", 8, 34.16), ("kl_f16c4", 16, 45.97)])
def test_kl_encoder_presets(name, factor, params_1e6):
    with torch.device("meta"):
        encoder = ENCODERS.create(name, spatial_dims=2, in_channels=3, out_channels=8)
    assert round(num_params(encoder) / 1e6, 2) == params_1e6
    assert encoder.downsample_factor == factor


def test_ssdd_config_defaults_and_switches():
    cfg = ssdd_config("m")
    assert (cfg.encoder.name, cfg.decoder.name, cfg.regularizer.name) == ("kl_f8c4", "ssdd_m", "kl")
    assert cfg.regularizer_weight == 1e-6 and cfg.sigma_min == 0.0
    assert cfg.time_sampler.name == "logit_normal" and cfg.time_sampler.kwargs == {"mean": 0.0, "std": 1.0}
    assert (cfg.sampling.num_steps, cfg.sampling.grid, cfg.sampling.power, cfg.sampling.solver) == (8, "power", 2.0, "euler")
    assert {k: v.weight for k, v in cfg.loss_terms.items()} == {"lpips": 0.5, "repa": 0.25}
    off = ssdd_config("s", encoder="f16c4", lpips_weight=0, repa_weight=0)
    assert off.loss_terms == {} and off.encoder.name == "kl_f16c4"
    with pytest.raises(ValueError, match="f8c4"):
        ssdd_config("m", encoder="f4c4")


def test_tiny_ssdd_autoencoder_trains():
    """ssdd_tiny inside a DiffusionAutoencoder built from ssdd_config (a tiny f8 encoder for speed)."""
    torch.manual_seed(0)
    cfg = ssdd_config("tiny", lpips_weight=0, repa_weight=0)
    cfg.encoder = ComponentConfig("conv_encoder", {"base_channels": 8, "channels_mult": [1, 2, 2, 2], "num_res_blocks": 1, "num_groups": 4})
    model = build_autoencoder(cfg)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    losses = model.training_losses(x, generator=torch.Generator().manual_seed(0))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and losses["regularizer"] > 0
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["decoder.conv_out.weight"].abs().sum() > 0
    assert grads["encoder.conv_in.weight"].abs().sum() > 0
    table = "decoder.mid_block.transformer_blocks.1.attn.relative_bias_table"
    assert grads[table] is not None
    sample = model.decode(model.encode(x).latent_dist.mode(), num_steps=2).sample
    assert sample.shape == x.shape


def test_f16_adaln_repeats_each_latent_over_2x2_tokens():
    from modalities.image.ssdd.attention import WindowLayout
    from modalities.image.ssdd.transformer import SpatialAdaLayerNorm

    torch.manual_seed(0)
    norm = SpatialAdaLayerNorm(8, 6)
    hl, wl = 3, 2
    h, ctx = torch.randn(2, (2 * hl) * (2 * wl), 8), torch.randn(2, hl * wl, 6)
    layout = WindowLayout.build(2 * hl, 2 * wl, 7, "sdpa", h.device)
    shift, scale = norm.linear(ctx).chunk(2, dim=-1)  # (B, hl·wl, 8)

    def nearest(m):  # (B, hl·wl, C) -> (B, 4·hl·wl, C), each latent over its 2×2 tokens
        grid = m.view(2, hl, wl, 8).repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
        return grid.reshape(2, -1, 8)

    expected = torch.nn.functional.layer_norm(h, (8,)) * (1 + nearest(scale)) + nearest(shift)
    torch.testing.assert_close(norm(h, ctx, layout, (hl, wl)), expected)


def test_timestep_features_are_diffusers_flip_sin_to_cos():
    from modalities.image.ssdd.resblocks import TimestepEmbedding

    t = torch.tensor([0.0, 500.0])
    freqs = 10000.0 ** (-torch.arange(4) / 4)  # half = 4, frequency shift 0
    expected = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=1)
    torch.testing.assert_close(TimestepEmbedding(8, 32).features(t), expected)
