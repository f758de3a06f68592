"""``DiffusersVAE`` against diffusers itself: retrieve_latents, latent scaling conventions, a real pipeline."""

from __future__ import annotations

import pytest
import torch

from core.builder import ComponentConfig, build_autoencoder
from core.interop import DiffusersVAE
from core.latent.distribution import LatentDist
from core.latent.stats import LatentStats
from tests.conftest import tiny_config

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def kl_tok():
    """A tiny f4 KL tokenizer (3 -> 4 latent channels) with non-trivial stats."""
    torch.manual_seed(0)
    tok = build_autoencoder(tiny_config(regularizer=ComponentConfig("kl"))).eval()
    tok.latent_stats = LatentStats(shift=0.2, scale=1.7)
    return tok


def test_retrieve_latents_equals_native(kl_tok, photo_batch):
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

    x = photo_batch[:2, :, :16, :16]
    vae, native = DiffusersVAE(kl_tok), kl_tok.encode(x).latent_dist
    sampled = retrieve_latents(vae.encode(x), generator=_gen(5), sample_mode="sample")
    assert torch.equal(sampled, native.sample(_gen(5))) and not torch.allclose(sampled, native.mode())
    assert torch.equal(retrieve_latents(vae.encode(x), sample_mode="argmax"), native.mode())


def test_latent_scaling_conventions(kl_tok, photo_batch):
    x = photo_batch[:2, :, :16, :16]
    vae = DiffusersVAE(kl_tok)
    z = vae.encode(x).latent_dist.mode()
    # FLUX/SD3: (z - shift_factor) * scaling_factor in, z / scaling_factor + shift_factor out
    flux = (z - vae.config.shift_factor) * vae.config.scaling_factor
    torch.testing.assert_close(flux, kl_tok.normalize_latents(z))
    torch.testing.assert_close(flux / vae.config.scaling_factor + vae.config.shift_factor, z)
    # SD/SDXL/DiT ignore the shift: equal to normalize_latents once the shift is 0
    kl_tok.latent_stats = LatentStats(shift=0.0, scale=1.7)
    torch.testing.assert_close(z * vae.config.scaling_factor, kl_tok.normalize_latents(z))
    assert vae.config["scaling_factor"] == vae.config.scaling_factor == pytest.approx(1 / 1.7)
    # SD decode call pattern == native decode of the denormalised latents
    latents = kl_tok.normalize_latents(z)
    image = vae.decode(latents / vae.config.scaling_factor, return_dict=False, generator=_gen(1), num_inference_steps=2)[0]
    native = kl_tok.decode(kl_tok.denormalize_latents(latents), 2, generator=_gen(1)).sample
    torch.testing.assert_close(image, native)  # x / (1/s) vs x * s: rounding-level differences only


@pytest.mark.parametrize("spatial_dims,levels", [(1, 3), (2, 3), (2, 4), (3, 3)])
def test_vae_scale_factor_and_config(spatial_dims, levels):
    mult = [1, 2, 2, 2][:levels]
    cfg = tiny_config(spatial_dims=spatial_dims, in_channels=2, latent_channels=3, modality="toy")
    cfg.encoder.kwargs["channels_mult"] = mult
    cfg.decoder.kwargs["stage_channels"] = [8, 16, 16, 16][:levels]
    tok = build_autoencoder(cfg)
    vae = DiffusersVAE(tok, num_inference_steps=3, sample_size=64)
    c = vae.config
    assert 2 ** (len(c.block_out_channels) - 1) == tok.downsample_factor == 2 ** (levels - 1)
    assert (c.latent_channels, c.in_channels, c.out_channels, c.spatial_dims, c.sample_size) == (3, 2, 2, spatial_dims, 64)
    assert (c.force_upcast, c.num_inference_steps, c.shift_factor, c.scaling_factor) == (False, 3, 0.0, 1.0)
    assert getattr(c, "latents_mean", "absent") is None and getattr(c, "no_such_key", "absent") == "absent"
    with pytest.raises(TypeError, match="read-only"):
        c.scaling_factor = 2.0
    assert vae.dtype == torch.float32 and vae.device.type == "cpu"


def test_return_dict_false_slicing_and_generators(kl_tok, photo_batch):
    x = photo_batch[:3, :, :16, :16]
    vae = DiffusersVAE(kl_tok, num_inference_steps=2)
    (dist,) = vae.encode(x, return_dict=False)
    assert isinstance(dist, LatentDist) and torch.equal(dist.mode(), kl_tok.encode(x).latent_dist.mode())
    z = dist.mode()
    (image,) = vae.decode(z, return_dict=False, generator=_gen(2))
    assert torch.equal(image, kl_tok.decode(z, 2, generator=_gen(2)).sample)
    (recon,) = vae(x, return_dict=False, generator=_gen(2))
    assert torch.equal(recon, image)
    assert vae(x, sample_posterior=True, generator=_gen(2)).sample.shape == x.shape
    # one generator per sample, as diffusers' randn_tensor: each sample decodes as if alone
    per_sample = vae.decode(z, generator=[_gen(7), _gen(8), _gen(9)]).sample
    for i, seed in enumerate((7, 8, 9)):
        torch.testing.assert_close(per_sample[i : i + 1], kl_tok.decode(z[i : i + 1], 2, generator=_gen(seed)).sample)
    with pytest.raises(ValueError, match="one per sample"):
        vae.decode(z, generator=[_gen(0)])
    # slicing: one sample at a time, same numbers
    vae.enable_slicing()
    sliced = vae.encode(x).latent_dist
    torch.testing.assert_close(sliced.mode(), dist.mode())
    torch.testing.assert_close(sliced.std, dist.std)
    torch.testing.assert_close(vae.decode(z, generator=_gen(2)).sample, image)
    vae.disable_slicing()


def test_enable_tiling_maps_onto_core_tiling(kl_tok, photo_batch):
    z = kl_tok.encode(photo_batch[:2]).latent_dist.mode()  # (2, 4, 8, 8) latents
    vae = DiffusersVAE(kl_tok, num_inference_steps=2)
    with pytest.raises(ValueError, match="0 <= overlap < tile"):
        vae.enable_tiling(tile=4, overlap=4)  # refused at once, not at the first decode
    assert not vae.use_tiling
    vae.enable_tiling(tile=5, overlap=3)
    assert vae.use_tiling
    tiled = vae.decode(z, generator=_gen(3)).sample
    torch.testing.assert_close(tiled, kl_tok.decode(z, 2, generator=_gen(3), tile=5, overlap=3).sample)
    assert not torch.equal(tiled, kl_tok.decode(z, 2, generator=_gen(3)).sample)  # it did tile
    vae.enable_slicing()  # slicing and tiling combine: same noise, same tiles
    torch.testing.assert_close(vae.decode(z, generator=_gen(3)).sample, tiled)
    vae.disable_tiling()
    torch.testing.assert_close(vae.decode(z, generator=_gen(3)).sample, kl_tok.decode(z, 2, generator=_gen(3)).sample)


def test_dit_pipeline_runs_with_the_adapter(kl_tok, monkeypatch):
    """A real diffusers pipeline (DiT, DDIM, classifier-free guidance) drives our tokenizer as its VAE."""
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    kl_tok.latent_stats = LatentStats(shift=0.0, scale=1.7)  # the DiT pipeline applies no shift
    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=1, sample_size=4, patch_size=2, norm_num_groups=4)
    vae = DiffusersVAE(kl_tok, num_inference_steps=2)
    pipe = DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae is vae and pipe.config.vae == ("core.interop.diffusers", "DiffusersVAE")
    calls = []
    native_decode = kl_tok.decode

    def recording_decode(z, num_steps=None, **kwargs):
        calls.append((tuple(z.shape), num_steps))
        return native_decode(z, num_steps, **kwargs)

    monkeypatch.setattr(kl_tok, "decode", recording_decode)
    images = pipe(class_labels=[1, 2], num_inference_steps=2, generator=_gen(0), output_type="pt").images
    assert calls == [((2, 4, 4, 4), 2)]  # pipeline latents (B, C_z, 4, 4) -> our decoder, our step count
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all()
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0
