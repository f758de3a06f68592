"""Per-axis shape rule: latent/data sizes, causal axes, error texts, nearest upsampling, and a 3-D
tokenizer whose time axis is compressed causally (T = 1 + 4k frames -> 1 + k latent frames)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core import (
    DECODERS,
    ENCODERS,
    CheckpointMismatchError,
    ComponentConfig,
    DiffusersVAE,
    InputError,
    NoiseSyncConfig,
    ShapeRule,
    build_autoencoder,
    from_pretrained,
    save_pretrained,
    upsample_nearest,
)
from core.builder import AutoencoderConfig
from core.distill import distillation_losses, make_student, student_parameters

VIDEO = ShapeRule(factors=(4, 8, 8), causal=(True, False, False))


# ------------------------------------------------------------------------------------------ the rule
def test_isotropic_rule_is_the_old_integer_arithmetic():
    rule = ShapeRule.isotropic(8, 2)
    assert rule.factors == (8, 8) and rule.causal == (False, False) and rule.is_isotropic and rule.dims == 2
    assert rule.latent((256, 192)) == (32, 24) and rule.data((32, 24)) == (256, 192)
    assert not ShapeRule((4, 8)).is_isotropic and not ShapeRule((4, 4), (True, False)).is_isotropic


def test_causal_and_mixed_factors_round_trip():
    assert VIDEO.latent((17, 64, 32)) == (5, 8, 4) and VIDEO.data((5, 8, 4)) == (17, 64, 32)
    assert VIDEO.latent((1, 8, 8)) == (1, 1, 1)  # a single frame (an image) is its own latent frame
    for latent in [(1, 1, 1), (2, 3, 1), (7, 2, 5)]:
        assert VIDEO.latent(VIDEO.data(latent)) == latent
    for frames in (1, 5, 9, 13):
        data = (frames, 16, 24)
        assert VIDEO.data(VIDEO.latent(data)) == data
    one_d = ShapeRule((3,), (True,))
    assert one_d.latent((10,)) == (4,) and one_d.data((4,)) == (10,)


def test_problem_names_the_nearest_valid_sizes():
    assert VIDEO.problem((17, 64, 32)) is None
    causal = VIDEO.problem((16, 64, 32))
    assert "axis 0 (causal): size 16 is not 1 + 4k: use 13 or 17" in causal and "e.g. to (13, 64, 32)" in causal
    plain = VIDEO.problem((17, 30, 32))
    assert "axis 1: size 30 is not a multiple of 8: use 24 or 32" in plain and "axis 0 (causal):" not in plain
    assert "size 5 is not a multiple of 8: use 8" in VIDEO.problem((17, 5, 8))  # 0 is never offered
    assert "size 0 is not 1 + 4k: use 1" in VIDEO.problem((0, 8, 8))
    both = VIDEO.problem((16, 30, 32))
    assert "axis 0 (causal):" in both and "axis 1:" in both and both.startswith("size (16, 30, 32) does not fit factors (4, 8, 8) with axis 0 causal")
    with pytest.raises(ValueError, match=r"1 \+ 4k: use 13 or 17"):
        VIDEO.latent((16, 64, 32))
    with pytest.raises(ValueError, match="covers 3 axes"):
        VIDEO.latent((64, 32))


def test_rule_validation_and_plain_dict():
    with pytest.raises(ValueError, match="one integer >= 1"):
        ShapeRule((8, 0))
    with pytest.raises(ValueError, match="2 factors but 1 causal"):
        ShapeRule((8, 8), (True,))
    assert ShapeRule.from_dict(VIDEO.to_dict()) == VIDEO
    assert json.loads(json.dumps(VIDEO.to_dict())) == {"factors": [4, 8, 8], "causal": [True, False, False]}
    assert ShapeRule.from_dict({"factors": [8, 8]}) == ShapeRule.isotropic(8, 2)
    with pytest.raises(ValueError, match="needs 'factors'"):
        ShapeRule.from_dict({"factor": 8})


def test_upsample_nearest_repeats_each_latent_element_f_times_per_axis():
    z = torch.randn(2, 3, 4, 5)
    assert torch.equal(upsample_nearest(z, ShapeRule.isotropic(8, 2)), z.repeat_interleave(8, 2).repeat_interleave(8, 3))
    assert torch.equal(upsample_nearest(z, ShapeRule((2, 4))), z.repeat_interleave(2, 2).repeat_interleave(4, 3))
    z3 = torch.randn(1, 2, 2, 3, 2)
    assert torch.equal(upsample_nearest(z3, ShapeRule.isotropic(2, 3)), F.interpolate(z3, scale_factor=2.0, mode="nearest"))


def test_upsample_nearest_maps_causal_latent_frames_to_their_data_frames():
    f = 4
    z = torch.arange(3.0).reshape(1, 1, 3, 1, 1)  # latent frame j holds the value j
    up = upsample_nearest(z, ShapeRule((f, 2, 2), (True, False, False)))
    assert up.shape == (1, 1, 1 + 2 * f, 2, 2)
    frames = up[0, 0, :, 0, 0].tolist()
    assert frames == [0.0] + [1.0] * f + [2.0] * f  # frame 0 alone; latent j >= 1 -> data 1+(j-1)f .. jf
    with pytest.raises(ValueError, match="3 axes"):
        upsample_nearest(torch.zeros(1, 1, 3, 3), VIDEO)


# ------------------------------------------------------------------------------------------ a causal video tokenizer
class CausalConv3d(nn.Module):
    """3-wide conv whose time axis only looks back (front padding), so frame 0 never sees later frames."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv3d(c_in, c_out, 3, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        pads = [(0, 1) if s == 2 else (1, 1) for s in self.stride[1:]]  # (H, W): as the ConvEncoder's downsampling
        return self.conv(F.pad(x, (*pads[1], *pads[0], 2, 0)))


class TinyCausalVideoEncoder(nn.Module):
    """Factors (4, 8, 8), time causal: ``T = 1 + 4k`` frames -> ``1 + k`` latent frames."""

    def __init__(self, spatial_dims: int = 3, in_channels: int = 3, out_channels: int = 4, width: int = 8) -> None:
        super().__init__()
        assert spatial_dims == 3
        self.spatial_dims, self.in_channels, self.out_channels = 3, in_channels, out_channels
        self.shape_rule = VIDEO
        self.net = nn.Sequential(
            CausalConv3d(in_channels, width, (1, 1, 1)), nn.SiLU(),
            CausalConv3d(width, width, (2, 2, 2)), nn.SiLU(),
            CausalConv3d(width, width, (2, 2, 2)), nn.SiLU(),
            CausalConv3d(width, out_channels, (1, 2, 2)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@pytest.fixture
def video_config():
    ENCODERS.add("test_causal_video", TinyCausalVideoEncoder)
    yield AutoencoderConfig(
        modality="toy_video", spatial_dims=3, in_channels=3, latent_channels=4,
        encoder=ComponentConfig("test_causal_video"),
        # one stage: no x2 poolings, so the odd 1 + 4k frame counts pass through the UNet
        decoder=ComponentConfig("unet_decoder", {"stage_channels": [16], "down_blocks": 1, "mid_blocks": 1, "up_blocks": 2,
                                                 "pe_dim": 16, "t_dim": 32, "num_groups": 4}),
        regularizer=ComponentConfig("kl"), regularizer_weight=1e-6,  # per position (a LayerNorm over T would mix frames)
        time_sampler=ComponentConfig("logit_normal"),
        noise_sync=NoiseSyncConfig(p=0.5),
    )
    ENCODERS.remove("test_causal_video")


def moving_clip(frames: int = 9, size: int = 16) -> Tensor:
    """(2, 3, T, H, W) in [-1, 1]: a bright square moving one pixel per frame over a gradient."""
    t, y, x = torch.meshgrid(torch.arange(frames), torch.arange(size), torch.arange(size), indexing="ij")
    square = ((x - t).abs() < 3) & ((y - size // 2).abs() < 3)
    base = torch.stack([x / size, y / size, square.float()]) * 2 - 1  # (3, T, H, W)
    return torch.stack([base, base.flip(-1)])


def test_causal_video_tokenizer_trains_noise_syncs_distils_and_decodes(video_config, tmp_path):
    torch.manual_seed(0)
    ae = build_autoencoder(video_config)
    assert ae.shape_rule == VIDEO and ae.decoder.shape_rule == VIDEO and ae.noise_sync.p == 0.5
    x = moving_clip(frames=9)
    assert ae.latent_shape(x.shape) == (2, 4, 3, 2, 2) and ae.data_shape((2, 4, 3, 2, 2)) == x.shape
    with pytest.raises(InputError, match=r"axis 0 \(causal\): size 8 is not 1 \+ 4k: use 5 or 9"):
        ae.encode(x[:, :, :8])
    with pytest.raises(ValueError, match="no single downsample factor"):
        ae.downsample_factor

    opt = torch.optim.AdamW(ae.parameters(), lr=2e-3)
    losses, generator = [], torch.Generator().manual_seed(0)
    for _ in range(8):
        out = ae.training_losses(x, generator=generator)
        opt.zero_grad()
        out["loss"].backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ae.encoder.parameters())
        opt.step()
        losses.append(out["loss"].item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) < sum(losses[:3]), losses

    z = ae.encode(x).latent_dist.mode()
    assert z.shape == (2, 4, 3, 2, 2)
    # causality: changing frames after 0 leaves latent frame 0 unchanged
    later = x.clone()
    later[:, :, 1:] = -later[:, :, 1:]
    assert torch.allclose(ae.encode(later).latent_dist.mode()[:, :, 0], z[:, :, 0])
    rec = ae.decode(z, 2, generator=torch.Generator().manual_seed(0)).sample
    assert rec.shape == (2, 3, 9, 16, 16) and torch.isfinite(rec).all()
    assert ae.decode(z[:, :, :1], 2).sample.shape == (2, 3, 1, 16, 16)  # one latent frame -> one frame

    student = make_student(ae)
    opt = torch.optim.AdamW(student_parameters(student), lr=1e-3)
    out = distillation_losses(student, ae, x, generator=torch.Generator().manual_seed(1))
    opt.zero_grad()
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.decoder.parameters())
    opt.step()
    assert student.decode(z, 1).sample.shape == (2, 3, 9, 16, 16)

    path = save_pretrained(ae, tmp_path / "video")
    latent = json.loads((path / "config.json").read_text())["latent"]
    assert latent["shape_rule"] == {"factors": [4, 8, 8], "causal": [True, False, False]} and "downsample_factor" not in latent
    loaded = from_pretrained(path)
    assert loaded.shape_rule == VIDEO and torch.equal(loaded.encode(x).latent_dist.mode(), z)
    meta = json.loads((path / "config.json").read_text())
    meta["latent"]["shape_rule"]["causal"] = [False, False, False]
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointMismatchError, match="records the shape rule"):
        from_pretrained(path)


def test_non_isotropic_rules_are_refused_where_one_factor_is_assumed(video_config):
    ae = build_autoencoder(video_config)
    with pytest.raises(ValueError, match="DiffusersVAE needs the same non-causal factor on every axis.*vae_scale_factor"):
        DiffusersVAE(ae)

    def one_factor_decoder(spatial_dims: int, in_channels: int, latent_channels: int, upsample_factor: int) -> nn.Module:
        raise AssertionError("the builder must refuse before building")

    DECODERS.add("test_one_factor_decoder", one_factor_decoder)
    try:
        video_config.decoder = ComponentConfig("test_one_factor_decoder")
        with pytest.raises(ValueError, match="takes one upsample_factor.*accepts shape_rule"):
            build_autoencoder(video_config)
    finally:
        DECODERS.remove("test_one_factor_decoder")


def test_unet_decoder_rule_arguments():
    from core.nets import UNetDecoder

    small = {"stage_channels": (8, 8), "down_blocks": 1, "mid_blocks": 1, "up_blocks": 2, "pe_dim": 8, "t_dim": 16, "num_groups": 4}
    assert UNetDecoder(**small).shape_rule == ShapeRule.isotropic(8, 2)  # default unchanged
    assert UNetDecoder(upsample_factor=4, **small).upsample_factor == 4
    with pytest.raises(ValueError, match="contradicts shape_rule"):
        UNetDecoder(upsample_factor=4, shape_rule=ShapeRule.isotropic(8, 2), **small)
    decoder = UNetDecoder(spatial_dims=3, shape_rule=VIDEO, **small)
    with pytest.raises(ValueError, match="2 stages needs data sizes that are multiples of 2"):
        decoder(torch.zeros(1, 3, 9, 16, 16), torch.zeros(1), torch.zeros(1, 4, 3, 2, 2))
