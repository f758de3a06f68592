"""DiffusionAutoencoder: modality agnostic training, decoding, bad inputs, serialisation."""

from __future__ import annotations

import json

import pytest
import torch

from core import (
    CheckpointMismatchError,
    ComponentConfig,
    InputError,
    LossTermConfig,
    build_autoencoder,
    from_pretrained,
    save_pretrained,
)
from core.latent.noise_sync import NoiseSyncConfig
from tests.conftest import tiny_config


def real_signal(photos: torch.Tensor, spatial_dims: int, size: int) -> torch.Tensor:
    """Real data of 1, 2 or 3 spatial dims cut from photographs (4, 3, 32, 32), 2 channels kept:
    1-D rows, 2-D crops, 3-D "videos" of a crop panning one pixel per frame."""
    photos = photos[:, :2]
    if spatial_dims == 1:
        return photos[:, :, 5, :size]
    if spatial_dims == 2:
        return photos[:, :, :size, :size]
    return torch.stack([photos[:, :, i : i + size, i : i + size] for i in range(size)], dim=2)


@pytest.mark.parametrize("spatial_dims,size", [(1, 32), (2, 16), (3, 8)])
def test_tiny_1d_2d_3d_train_three_steps_and_decode(spatial_dims, size, photo_batch):
    torch.manual_seed(0)
    cfg = tiny_config(spatial_dims=spatial_dims, in_channels=2, latent_channels=3, modality="toy", noise_sync=NoiseSyncConfig(p=0.5))
    ae = build_autoencoder(cfg)
    opt = torch.optim.AdamW(ae.parameters(), lr=1e-3)
    x = real_signal(photo_batch, spatial_dims, size)
    assert x.shape == (4, 2, *([size] * spatial_dims))
    enc_before = [p.detach().clone() for p in ae.encoder.parameters()]
    losses = []
    for _ in range(3):
        out = ae.training_losses(x)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(enc_before, ae.encoder.parameters())), "encoder received no gradient"
    z = ae.encode(x).latent_dist.mode()
    assert z.shape == ae.latent_shape(x.shape) == (4, 3, *([size // 4] * spatial_dims))
    rec = ae.decode(z, 3, generator=torch.Generator().manual_seed(0))
    assert rec.sample.shape == x.shape and rec.num_function_evals == 3 and torch.isfinite(rec.sample).all()


def test_training_losses_keys_and_kl_weight():
    cfg = tiny_config(regularizer=ComponentConfig("kl"), regularizer_weight=1e-6, sigma_min=0.0,
                      time_sampler=ComponentConfig("logit_normal"), loss_terms={"x0_l1": LossTermConfig(weight=0.5)})
    ae = build_autoencoder(cfg)
    out = ae.training_losses(torch.rand(2, 3, 16, 16) * 2 - 1, generator=torch.Generator().manual_seed(0))
    assert {"loss", "fm", "regularizer", "x0_l1", "t", "fm_per_sample"} <= set(out)
    expected = out["fm"] + 1e-6 * out["regularizer"] + 0.5 * out["x0_l1"]
    torch.testing.assert_close(out["loss"], expected)
    assert out["regularizer"] > 0
    assert ae.encoder.out_channels == 8 and ae.latent_channels == 4


def test_decode_is_deterministic_given_generator():
    ae = build_autoencoder(tiny_config()).eval()
    z = torch.randn(2, 4, 4, 4)
    a = ae.decode(z, 4, generator=torch.Generator().manual_seed(7)).sample
    b = ae.decode(z, 4, generator=torch.Generator().manual_seed(7)).sample
    c = ae.decode(z, 4, generator=torch.Generator().manual_seed(8)).sample
    assert torch.equal(a, b) and not torch.equal(a, c)
    heun = ae.decode(z, 2, generator=torch.Generator().manual_seed(7), solver="heun")
    assert heun.num_function_evals == 4


def test_bad_inputs_raise_clear_errors():
    ae = build_autoencoder(tiny_config())
    with pytest.raises(InputError, match="expected 3 channels, got 1"):
        ae.encode(torch.zeros(1, 1, 16, 16))
    with pytest.raises(InputError, match=r"size 18 is not a multiple of 4: use 16 or 20.*crop or pad, e.g. to \(16, 12\)"):
        ae.encode(torch.zeros(1, 3, 18, 14))
    bad = torch.zeros(1, 3, 16, 16)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN or Inf"):
        ae.encode(bad)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="NaN or Inf"):
        ae.training_losses(bad)
    with pytest.raises(InputError, match="add a batch dim"):
        ae.encode(torch.zeros(3, 16, 16))
    with pytest.raises(InputError, match="latents"):
        ae.decode(torch.zeros(1, 5, 4, 4))


def test_save_from_pretrained_roundtrip_identical(tmp_path):
    torch.manual_seed(0)
    ae = build_autoencoder(tiny_config()).eval()
    ae.latent_stats = type(ae.latent_stats)(shift=0.25, scale=2.0)
    path = save_pretrained(ae, str(tmp_path / "tok"))
    meta = json.loads((path / "config.json").read_text())
    assert meta["modality"] == "image" and meta["latent"]["channels"] == 4 and meta["latent"]["downsample_factor"] == 4
    assert meta["latent"]["shift"] == 0.25 and meta["latent"]["scale"] == 2.0
    loaded = from_pretrained(str(path))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    za, zb = ae.encode(x).latent_dist.mode(), loaded.encode(x).latent_dist.mode()
    assert torch.equal(za, zb)
    ra = ae.decode(za, 3, generator=torch.Generator().manual_seed(1)).sample
    rb = loaded.decode(zb, 3, generator=torch.Generator().manual_seed(1)).sample
    assert torch.equal(ra, rb)
    assert loaded.latent_stats.scale == 2.0
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]


def test_from_pretrained_wrong_modality_or_architecture(tmp_path):
    ae = build_autoencoder(tiny_config())
    path = save_pretrained(ae, str(tmp_path / "tok"))
    with pytest.raises(CheckpointMismatchError, match="'image' tokenizer but a 'audio' one was requested"):
        from_pretrained(path, modality="audio")
    meta = json.loads((path / "config.json").read_text())
    meta["autoencoder"]["decoder"]["kwargs"]["stage_channels"] = [8, 16, 32]
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        from_pretrained(path)


def test_from_pretrained_never_unpickles(tmp_path):
    ae = build_autoencoder(tiny_config())
    path = save_pretrained(ae, str(tmp_path / "tok"))
    torch.save(ae.state_dict(), path / "model.safetensors")  # a pickle in disguise
    with pytest.raises(Exception) as info:
        from_pretrained(path)
    assert not isinstance(info.value, CheckpointMismatchError)  # rejected by the safetensors parser


def test_unknown_config_keys_rejected():
    from core.builder import config_from_dict

    with pytest.raises(ValueError, match="unknown autoencoder config keys"):
        config_from_dict({"modality": "image", "decodr": {}})
