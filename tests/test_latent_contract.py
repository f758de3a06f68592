"""One latent contract for every tokenizer: image (DiTo, LayerNorm), 1-D and 3-D (KL) plugins.

Each tokenizer must: give latents of ``latent_shape(x.shape)`` from ``mode()``/``sample()``,
seed KL samples with a generator, decode to x's shape reproducibly per seed, map latents to
generator space and back with its stats, keep the stats through save/from_pretrained, and
return the same tensors through the diffusers adapter as through the native API.
"""

from __future__ import annotations

import pytest
import torch

from core.builder import ComponentConfig, build_autoencoder
from core.interop import DiffusersVAE
from core.latent.stats import LatentStats
from core.pretrained import from_pretrained, save_pretrained
from tests.conftest import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny convs: a second OpenMP thread only waits on a shared CPU


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image_dito() -> tuple:
    """DiTo's recipe (LayerNorm latent, ``dito_tiny`` f8 decoder) with a small f8 conv encoder."""
    from modalities.image.dito import dito_config

    cfg = dito_config("tiny")
    cfg.encoder = ComponentConfig("conv_encoder", {"base_channels": 8, "channels_mult": [1, 2, 2, 2], "num_res_blocks": 1, "num_groups": 4})
    return cfg, lambda photos: photos[:2]  # (2, 3, 32, 32) real photo crops


def _toy_1d() -> tuple:
    cfg = tiny_config(spatial_dims=1, in_channels=2, latent_channels=3, modality="toy_1d", regularizer=ComponentConfig("kl"))
    return cfg, lambda photos: photos[:2, :2, 5, :32]  # (2, 2, 32): rows of photographs


def _toy_3d() -> tuple:
    cfg = tiny_config(spatial_dims=3, in_channels=2, latent_channels=3, modality="toy_3d", regularizer=ComponentConfig("kl"))
    # (2, 2, 8, 8, 8): an 8x8 crop panning one pixel per frame
    return cfg, lambda photos: torch.stack([photos[:2, :2, i : i + 8, i : i + 8] for i in range(8)], dim=2)


@pytest.mark.parametrize("make", [_image_dito, _toy_1d, _toy_3d], ids=["image_dito", "toy_1d_kl", "toy_3d_kl"])
def test_latent_contract(make, photo_batch, tmp_path):
    torch.manual_seed(0)
    cfg, cut = make()
    tok = build_autoencoder(cfg).eval()
    x = cut(photo_batch)
    kl = cfg.regularizer.name == "kl"

    # encode: shapes, seeded sampling
    dist = tok.encode(x).latent_dist
    z, z_sample = dist.mode(), dist.sample(_gen(0))
    assert z.shape == z_sample.shape == tok.latent_shape(x.shape) == (2, cfg.latent_channels, *(s // tok.downsample_factor for s in x.shape[2:]))
    assert tok.data_shape(tuple(z.shape)) == tuple(x.shape) and tok.data_shape(tuple(z.shape[1:])) == tuple(x.shape[1:])
    if kl:
        assert not torch.allclose(z_sample, z)
        assert torch.equal(dist.sample(_gen(0)), z_sample) and not torch.equal(dist.sample(_gen(1)), z_sample)
    else:
        assert torch.equal(z_sample, z)

    # decode: shape, finite, seeded
    rec = tok.decode(z, num_steps=2, generator=_gen(3)).sample
    assert rec.shape == x.shape and torch.isfinite(rec).all()
    assert torch.equal(tok.decode(z, num_steps=2, generator=_gen(3)).sample, rec)
    assert not torch.allclose(tok.decode(z, num_steps=2, generator=_gen(4)).sample, rec)

    # normalisation: identity by default, (z - shift) / scale with stats
    assert torch.equal(tok.normalize_latents(z), z) and torch.equal(tok.denormalize_latents(z), z)
    tok.latent_stats = LatentStats(shift=0.3, scale=2.5)
    torch.testing.assert_close(tok.normalize_latents(z), (z - 0.3) / 2.5)
    torch.testing.assert_close(tok.denormalize_latents(tok.normalize_latents(z)), z)
    assert (tok.config.latent_stats.shift, tok.config.latent_stats.scale) == (0.3, 2.5)
    with pytest.raises(TypeError, match="LatentStats"):
        tok.latent_stats = {"shift": 0.0, "scale": 1.0}

    # save/from_pretrained keeps the stats (and the weights)
    loaded = from_pretrained(save_pretrained(tok, tmp_path / "tok"))
    assert loaded.latent_stats == LatentStats(shift=0.3, scale=2.5)
    torch.testing.assert_close(loaded.normalize_latents(z), tok.normalize_latents(z))
    assert torch.equal(loaded.encode(x).latent_dist.mode(), z)

    # diffusers adapter == native API
    vae = DiffusersVAE(tok)
    out = vae.encode(x).latent_dist
    assert torch.equal(out.mode(), z) and torch.equal(out.sample(_gen(0)), z_sample)
    torch.testing.assert_close((z - vae.config.shift_factor) * vae.config.scaling_factor, tok.normalize_latents(z))
    assert torch.equal(vae.decode(z, generator=_gen(3), num_inference_steps=2).sample, rec)
    assert 2 ** (len(vae.config.block_out_channels) - 1) == tok.downsample_factor
