"""Audio tokenizer sizes, shapes, the strided causal encoder, spectral terms and one CPU train step per variant."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from core.autoencoder import InputError
from core.builder import build_autoencoder
from core.distill import DistillationConfig, make_student
from core.nets import UNetDecoder
from core.registry import DECODERS, ENCODERS, LOSS_TERMS
from core.training.config import OptimConfig
from core.training.module import TokenizerModule
from core.windowed import encode_any_length, reconstruct_any_length
from modalities.audio.models import AUDIO_SIZES, audio_config, audio_size
from modalities.audio.models.strided_encoder import StridedConv1dEncoder
from modalities.audio.spectral import mel_filterbank, mrstft_distance, multiscale_mel_distance
from modalities.audio.spectral_metrics import MelDistanceMetric, MRSTFTDistanceMetric

pytestmark = pytest.mark.usefixtures("one_thread")

# (encoder, decoder) parameters for mono input, counted exactly (spec audio.md §3.2: 0.63M/2.60M,
# 4.39M/23.23M, 21.6M/128.0M); b44k is counted on the meta device (150M parameters never allocated)
EXACT_PARAMS = {
    "tiny": (632_768, 2_598_865),
    "s": (4_393_568, 23_230_177),
    "b44k": (21_551_040, 127_950_305),
    "s50hz": (4_620_080, 14_797_057),
    "tiny_hop16": (111_224, 483_473),
}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_every_registered_size_has_an_exact_parameter_count():
    assert set(EXACT_PARAMS) == set(AUDIO_SIZES)
    for name, (enc_params, dec_params) in EXACT_PARAMS.items():
        row = audio_size(name)
        with torch.device("meta"):
            encoder = ENCODERS.create(f"audio_{name}", in_channels=1)
            decoder = DECODERS.create(f"audio_{name}", in_channels=1)
        assert (count(encoder), count(decoder)) == (enc_params, dec_params), name
        assert row.params_m == (round(enc_params / 1e6, 2), round(dec_params / 1e6, 2)), name


def test_sizes_have_the_spec_rates_and_hops():
    expected = {"tiny": (16000, 256, 62.5, 16), "s": (16000, 256, 62.5, 16), "b44k": (44100, 2048, 44100 / 2048, 64),
                "s50hz": (16000, 320, 50.0, 16), "tiny_hop16": (16000, 16, 1000.0, 4)}
    for name, (rate, hop, frame_rate, cz) in expected.items():
        row = audio_size(name)
        assert (row.sample_rate, row.hop, row.frame_rate, row.latent_channels) == (rate, hop, frame_rate, cz)
        assert row.crop_samples % row.hop == 0
    assert audio_config("b44k").in_channels == 2 and audio_size("audio_b44k").crop_samples == 65536
    with pytest.raises(KeyError, match="audio_tiny"):
        audio_size("huge")


def test_shapes_and_hop_error_names_the_nearest_valid_length():
    tok = build_autoencoder(audio_config("tiny")).eval()
    x = torch.randn(2, 1, 256 * 8).clamp(-1, 1)
    z = tok.encode(x).latent_dist.mode()
    assert z.shape == (2, 16, 8)
    assert tok.decode(z, 1).sample.shape == x.shape
    with pytest.raises(InputError, match="use 1024 or 1280"):
        tok.encode(torch.zeros(1, 1, 1100))
    with pytest.raises(InputError, match="channels"):
        tok.encode(torch.zeros(1, 2, 1024))


def test_any_length_helpers_pad_on_the_right_and_trim():
    tok = build_autoencoder(audio_config("tiny")).eval()
    x = torch.randn(1, 1, 1100).clamp(-1, 1)
    z = encode_any_length(tok, x)
    assert z.shape == (1, 16, 5)  # ceil(1100 / 256)
    padded = torch.nn.functional.pad(x, (0, 1280 - 1100))
    torch.testing.assert_close(z, tok.encode(padded).latent_dist.mode())
    g = torch.Generator().manual_seed(0)
    assert reconstruct_any_length(tok, x, 1, generator=g).shape == x.shape


def test_layernorm_frames_latents_are_standardised_per_frame_and_kl_is_an_option():
    tok = build_autoencoder(audio_config("tiny")).eval()
    x = torch.randn(3, 1, 256 * 12) * 0.3
    z = tok.encode(x).latent_dist.mode()  # (3, 16, 12)
    torch.testing.assert_close(z.mean(dim=1), torch.zeros(3, 12), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(dim=1, unbiased=False), torch.ones(3, 12), atol=1e-3, rtol=0)
    kl = build_autoencoder(audio_config("tiny", latent="kl")).eval()
    assert kl.encoder.out_channels == 32 and kl.latent_channels == 16 and kl.regularizer_weight == 1e-6
    assert kl.training_losses(x)["regularizer"] > 0


def test_strided_encoder_hop_and_causal_chunks_equal_the_full_encoding():
    torch.manual_seed(0)
    enc = StridedConv1dEncoder(in_channels=1, out_channels=8, base_channels=8, strides=(2, 4, 5, 8), causal=True).eval()
    assert enc.downsample_factor == 320
    x = torch.randn(1, 1, 320 * 30)
    with torch.no_grad():
        full = enc(x)
        assert full.shape == (1, 8, 30)
        margin = -(-enc.receptive_field // 320) * 320  # left context covering the receptive field, in whole frames
        for start in (0, 320 * 7, 320 * 20):
            lo = max(start - margin, 0)
            chunk = enc(x[..., lo : start + 320 * 10])
            torch.testing.assert_close(chunk[..., (start - lo) // 320 :], full[..., start // 320 : start // 320 + 10],
                                       atol=1e-5, rtol=0)
        # the same chunk without left context differs: the test can see missing context
        assert (enc(x[..., 320 * 20 : 320 * 30]) - full[..., 20:]).abs().max() > 1e-3
        noncausal = StridedConv1dEncoder(in_channels=1, out_channels=8, base_channels=8, causal=False).eval()
        assert noncausal(x).shape == (1, 8, 30)
    with pytest.raises(ValueError, match="strides"):
        StridedConv1dEncoder(strides=(2, 0))


def test_unet_decoder_resample_factors_reach_the_latent_rate_and_default_is_unchanged():
    dec = UNetDecoder(spatial_dims=1, in_channels=1, latent_channels=4, upsample_factor=40, stage_channels=(8, 8, 8, 8),
                      down_blocks=1, mid_blocks=1, up_blocks=2, pe_dim=8, t_dim=16, num_groups=4, resample_factors=(2, 4, 5))
    assert dec.size_multiple == 40
    out = dec(torch.randn(2, 1, 400), torch.rand(2) * 1000, torch.randn(2, 4, 10))
    assert out.shape == (2, 1, 400)
    default = UNetDecoder(spatial_dims=1, stage_channels=(8, 8, 8), num_groups=4, pe_dim=8, t_dim=16)
    assert default.resample_factors == (2, 2) and default.size_multiple == 4
    with pytest.raises(ValueError, match="one integer >= 1 per stage boundary"):
        UNetDecoder(spatial_dims=1, stage_channels=(8, 8, 8), resample_factors=(2,))
    tok = build_autoencoder(audio_config("s50hz")).eval()
    z = tok.encode(torch.randn(1, 1, 320 * 4) * 0.3).latent_dist.mode()
    assert z.shape == (1, 16, 4) and tok.decode(z, 1).sample.shape == (1, 1, 1280)


def test_spectral_distances_are_zero_for_equal_clips_and_grow_with_distortion():
    torch.manual_seed(0)
    t = torch.arange(16000) / 16000
    clean = (0.5 * torch.sin(2 * torch.pi * 440 * t)).reshape(1, 1, -1).repeat(2, 1, 1)
    noisy = clean + torch.stack([0.01 * torch.randn(1, 16000), 0.1 * torch.randn(1, 16000)])
    for distance in (mrstft_distance, lambda a, b: multiscale_mel_distance(a, b, 16000)):
        assert torch.allclose(distance(clean, clean), torch.zeros(2))
        d = distance(noisy, clean)
        assert d.shape == (2,) and 0 < d[0] < d[1]
    metric = MRSTFTDistanceMetric()
    metric.update(clean, noisy[:1].expand(2, -1, -1))
    mel = MelDistanceMetric(16000)
    mel.update(clean, noisy)
    assert metric.compute()["mrstft"] > 0 and mel.compute()["mel_distance"] == pytest.approx(
        float(multiscale_mel_distance(noisy, clean, 16000).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        mrstft_distance(clean, clean[..., :100])


def test_mel_filterbank_matches_torchaudio_htk():
    functional = pytest.importorskip("torchaudio.functional")
    for n_fft, n_mels, rate in ((2048, 320, 16000), (512, 80, 44100)):
        ours = mel_filterbank(n_fft, n_mels, rate)
        ref = functional.melscale_fbanks(n_fft // 2 + 1, 0.0, rate / 2, n_mels, rate, norm=None, mel_scale="htk")
        torch.testing.assert_close(ours, ref.float(), atol=1e-4, rtol=0)  # torchaudio builds it in fp32


def _train_one_step(model, *, teacher=None):
    module = TokenizerModule(model, OptimConfig(lr=1e-3), teacher=teacher,
                             distill=DistillationConfig(teacher_steps=2) if teacher is not None else None)
    x = (0.3 * torch.randn(4, 1, 4096)).clamp(-1, 1)  # synthetic 0.256 s clips at 16 kHz
    trainer = L.Trainer(max_steps=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    trainer.fit(module, DataLoader(TensorDataset(x), batch_size=2))
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert trainer.global_step == 1 and all(torch.isfinite(torch.tensor(v)) for v in logged.values())
    assert any(not torch.equal(before[k], v) for k, v in model.decoder.state_dict().items())
    return logged


@pytest.mark.parametrize("variant", ["plain", "noise_sync", "mrstft_mel"])
def test_one_cpu_train_step_per_variant(variant):
    torch.manual_seed(0)
    cfg = audio_config("tiny", noise_sync=variant == "noise_sync",
                       mrstft_weight=1.0 if variant == "mrstft_mel" else 0.0, mel_weight=1.0 if variant == "mrstft_mel" else 0.0)
    model = build_autoencoder(cfg)
    assert (model.noise_sync is not None) == (variant == "noise_sync")
    logged = _train_one_step(model)
    if variant == "mrstft_mel":
        assert logged["train/mrstft"] > 0 and logged["train/mel_l1"] > 0
        assert set(LOSS_TERMS.list("m*")) >= {"mrstft", "mel_l1"}


def test_one_cpu_distillation_step():
    torch.manual_seed(0)
    teacher = build_autoencoder(audio_config("tiny", mrstft_weight=0.5))
    student = make_student(teacher)
    logged = _train_one_step(student, teacher=teacher)
    assert logged["train/distill_mse"] > 0 and "train/mrstft" in logged


def test_audio_decode_benchmark_smoke(tmp_path):
    pytest.importorskip("diffusers")
    import json

    from benchmarks.audio_decode_throughput import main

    out = tmp_path / "adt.json"
    result = main(["--sizes", "tiny", "--seconds", "0.1", "--steps", "1,2", "--repeats", "1", "--warmup", "0",
                   "--json", str(out), "--threads", "1"])
    assert json.loads(out.read_text()) == result
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"audio_tiny 1-step", "audio_tiny 2-step", "Oobleck hop 256"}
    assert rows["Oobleck hop 256"]["ratio_vs_oobleck"] == 1.0 and rows["audio_tiny 1-step"]["realtime_factor"] > 0
    assert rows["audio_tiny 1-step"]["params_M"] == 2.60 and rows["audio_tiny 1-step"]["clip_s"] == 0.096  # 6 frames of 256
    assert rows["audio_tiny 2-step"]["gflops_per_clip"] == pytest.approx(2 * rows["audio_tiny 1-step"]["gflops_per_clip"], rel=0.01)
