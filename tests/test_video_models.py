"""Video networks: shape rule and its errors, causal prefix property, sizes, any-T decode, inflation."""

from __future__ import annotations

import pytest
import torch

import modalities.video  # noqa: F401  (registers the video networks)
from core.autoencoder import InputError
from core.builder import AutoencoderConfig, ComponentConfig, build_autoencoder
from core.loss_terms import LossInputs
from core.pretrained import save_pretrained
from core.registry import DECODERS, ENCODERS, LOSS_TERMS
from core.training.init_weights import load_weights_into
from modalities.image.dito import dito_config
from modalities.image.lpips import LPIPSLoss
from modalities.video.models import CausalVideoEncoder, video_dito_config


def tiny_video(temporal_factor: int = 4, **decoder_kwargs):
    torch.manual_seed(0)
    cfg = video_dito_config("tiny", temporal_factor=temporal_factor)
    cfg.decoder.kwargs.update(decoder_kwargs)
    return build_autoencoder(cfg).eval()


@pytest.mark.parametrize("frames, latent_frames", [(1, 1), (5, 2), (9, 3), (17, 5)])
def test_latent_shapes_follow_the_causal_frame_rule(frames, latent_frames):
    tok = tiny_video()
    assert tok.latent_shape((2, 3, frames, 32, 48)) == (2, 16, latent_frames, 4, 6)
    assert tok.data_shape((2, 16, latent_frames, 4, 6)) == (2, 3, frames, 32, 48)
    assert tok.encode(torch.zeros(1, 3, frames, 16, 16)).latent_dist.mode().shape == (1, 16, latent_frames, 2, 2)


def test_bad_sizes_raise_one_error_naming_the_nearest_valid_sizes():
    tok = tiny_video()
    with pytest.raises(InputError, match=r"size 16 is not 1 \+ 4k: use 13 or 17"):
        tok.encode(torch.zeros(1, 3, 16, 32, 32))
    with pytest.raises(InputError, match=r"size 30 is not a multiple of 8: use 24 or 32"):
        tok.encode(torch.zeros(1, 3, 17, 30, 32))
    compact = tiny_video(temporal_factor=8)
    with pytest.raises(InputError, match=r"size 13 is not 1 \+ 8k: use 9 or 17"):
        compact.encode(torch.zeros(1, 3, 13, 32, 32))
    with pytest.raises(ValueError, match="temporal_factor must be a power of two"):
        CausalVideoEncoder(base_channels=8, channels_mult=(1, 2), temporal_factor=4)


@pytest.mark.parametrize("temporal_factor", [4, 8])
def test_encoder_is_causal_prefix_of_the_clip_encodes_exactly(temporal_factor):
    tok = tiny_video(temporal_factor)
    x = torch.rand(2, 3, 1 + 2 * temporal_factor, 32, 32) * 2 - 1
    with torch.no_grad():
        full = tok.encode(x).latent_dist.mode()
        first = tok.encode(x[:, :, :1]).latent_dist.mode()
        two = tok.encode(x[:, :, : 1 + temporal_factor]).latent_dist.mode()
    assert full.shape[2] == 3
    torch.testing.assert_close(first, full[:, :, :1], atol=1e-5, rtol=0)
    torch.testing.assert_close(two, full[:, :, :2], atol=1e-5, rtol=0)
    # and a later frame does change later latents (the property is not vacuous)
    x2 = x.clone()
    x2[:, :, -1] += 1
    with torch.no_grad():
        changed = tok.encode(x2).latent_dist.mode()
    assert torch.equal(changed[:, :, :2], full[:, :, :2]) and not torch.allclose(changed[:, :, 2], full[:, :, 2])


# parameter counts of this implementation; spec §3.6 (prototype): encoder tiny/s/b 0.39M/1.93M/45.1M,
# decoder tiny/s/b 0.98M/8.82M/197.1M (the decoders match; see docs/video.md for the encoder gap)
DECODER_PARAMS = {"tiny": 977_697, "s": 8_822_465, "b": 197_078_817, "l": 415_666_593, "xl": 767_910_305}
ENCODER_PARAMS = {"tiny": 371_360, "s": 1_900_944, "b": 44_660_144}


@pytest.mark.parametrize("size", list(DECODER_PARAMS))
def test_parameter_counts_of_every_registered_size(size):
    with torch.device("meta"):  # l / xl would take seconds to initialise for real
        decoder = DECODERS.create(f"video_dito_{size}")
        encoder_size = size if size in ENCODER_PARAMS else "b"
        encoders = [ENCODERS.create(name, size=encoder_size) for name in ("causal_video_f4s8", "causal_video_f8s8")]
    assert sum(p.numel() for p in decoder.parameters()) == DECODER_PARAMS[size]
    assert all(sum(p.numel() for p in e.parameters()) == ENCODER_PARAMS[encoder_size] for e in encoders)


@pytest.mark.parametrize("frames", [1, 17])
def test_decode_any_valid_frame_count(frames):
    tok = tiny_video(temporal_attention=True)
    z = torch.randn(1, 16, 1 + (frames - 1) // 4, 2, 2)
    out = tok.decode(z, 2, generator=torch.Generator().manual_seed(0)).sample
    assert out.shape == (1, 3, frames, 16, 16) and torch.isfinite(out).all()


def _image_dito_tiny():
    """DiTo tiny with a small image conv encoder of the video tiny encoder's layout (with mid attention)."""
    cfg = dito_config("tiny")
    cfg.latent_channels = 16
    cfg.encoder = ComponentConfig("conv_encoder", {"base_channels": 16, "channels_mult": [1, 2, 2, 4], "num_res_blocks": 1,
                                                   "num_groups": 8, "mid_attention": True})
    torch.manual_seed(1)
    model = build_autoencoder(cfg)
    with torch.no_grad():  # move away from init so equality is not an accident of zero/identity tensors
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def _video_like(image_model) -> AutoencoderConfig:
    cfg = video_dito_config("tiny", regularizer="layernorm_frames")
    cfg.encoder.kwargs.update({"mid_attention": True})
    cfg.decoder.kwargs.update({"stage_channels": [8, 16, 24, 24], "down_blocks": 3, "mid_blocks": 2, "up_blocks": 4,
                               "pe_dim": 32, "t_dim": 64, "num_groups": 8, "temporal_attention": True})
    return cfg


def test_inflation_from_an_image_dito_export_equals_the_image_model_frame_by_frame(tmp_path):
    image = _image_dito_tiny()
    export = save_pretrained(image, tmp_path / "image")
    video = build_autoencoder(_video_like(image)).eval()
    load_weights_into(video, str(export))
    torch.manual_seed(2)
    frames = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        z_video = video.encode(frames[:, :, :1]).latent_dist.mode()
        z_image = image.encode(frames[:, :, 0]).latent_dist.mode()
        torch.testing.assert_close(z_video[:, :, 0], z_image, atol=1e-5, rtol=1e-4)
        x_t = torch.randn(2, 3, 5, 32, 32)
        z_clip = torch.randn(2, 16, 2, 4, 4)
        u_video = video.velocity(x_t, t, z_clip)
        for frame in range(5):  # a 5-frame clip, per frame, at init: latent frame of data frame k is ceil(k/4)
            latent = z_clip[:, :, 0 if frame == 0 else 1]
            torch.testing.assert_close(u_video[:, :, frame], image.velocity(x_t[:, :, frame], t, latent), atol=1e-5, rtol=1e-4)
    fresh = build_autoencoder(_video_like(image)).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh.velocity(x_t, t, z_clip), u_video, atol=1e-3)  # the load did something


def test_inflation_refuses_an_export_of_another_architecture(tmp_path):
    export = save_pretrained(_image_dito_tiny(), tmp_path / "image")
    video = tiny_video()  # tiny video widths, not the image tiny's
    with pytest.raises(Exception, match="does not fit"):
        load_weights_into(video, str(export))


def test_lpips_frames_is_the_image_lpips_of_every_frame():
    term = LOSS_TERMS.create("lpips_frames", allow_random_weights=True).eval()
    image = LPIPSLoss(term.lpips)  # the image plugin's term on the same (random, frozen) network
    x, y = torch.rand(2, 3, 3, 32, 32), torch.rand(2, 3, 3, 32, 32)
    inputs = LossInputs(x=y, reference=y, x_t=x, t=torch.zeros(2), prediction=x, x0_hat=x, z=x)
    frames = [image(LossInputs(x=y[:, :, i], reference=y[:, :, i], x_t=x[:, :, i], t=torch.zeros(2), prediction=x[:, :, i],
                               x0_hat=x[:, :, i], z=x[:, :, i])) for i in range(3)]
    torch.testing.assert_close(term(inputs), torch.stack(frames).mean(), atol=1e-6, rtol=1e-5)
