"""Audio metrics on known inputs (incl. PESQ / STOI on real speech), the metric suite, PCM16 quantisation, previews."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from modalities.audio import metrics as audio_metrics
from modalities.audio.demo import bundled_speech_files
from modalities.audio.io import read_audio, resample
from modalities.audio.metrics import Pesq, SiSdr, Stoi, WaveformL1, audio_metric_suite
from modalities.audio.preview import PCM16, mel_image, write_audio_preview, write_audio_samples


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """CMU ARCTIC a0007 as a batch ``(1, 1, 64000)`` at 16 kHz."""
    return read_audio(bundled_speech_files()["arctic_a0007"]).samples[None]


def _noisy(x: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return x + noise * x.std() * 10 ** (-snr_db / 20)


def _score(metric, reference, reconstruction) -> dict[str, float]:
    metric.update(reference, reconstruction)
    return metric.compute()


def test_si_sdr_matches_the_noise_level_and_ignores_scale(speech):
    for snr in (0.0, 10.0, 20.0):
        assert _score(SiSdr(), speech, _noisy(speech, snr))["si_sdr"] == pytest.approx(snr, abs=0.3)
    assert _score(SiSdr(), speech, 0.3 * _noisy(speech, 10.0))["si_sdr"] == pytest.approx(10.0, abs=0.3)
    assert _score(SiSdr(), speech, speech)["si_sdr"] > 60


def test_waveform_l1_is_the_mean_absolute_error_per_clip_then_over_clips():
    reference = torch.zeros(2, 1, 4)
    reconstruction = torch.tensor([[[1.0, -1.0, 1.0, -1.0]], [[0.5, 0.5, 0.0, 0.0]]])
    metric = WaveformL1()
    metric.update(reference[:1], reconstruction[:1])
    metric.update(reference[1:], reconstruction[1:])
    assert metric.compute() == {"waveform_l1": pytest.approx((1.0 + 0.25) / 2)}


def test_pesq_and_stoi_on_real_speech_fall_with_noise(speech):
    clean = _score(Pesq(16000), speech, speech)["pesq_wb"]
    mild, strong = (_score(Pesq(16000), speech, _noisy(speech, snr))["pesq_wb"] for snr in (30.0, 5.0))
    assert clean > 4.5 and clean > mild > strong and strong < 1.5
    stoi_clean, stoi_mild, stoi_strong = (_score(Stoi(16000), speech, y)["stoi"] for y in (speech, _noisy(speech, 20.0), _noisy(speech, -5.0)))
    assert stoi_clean > 0.99 and stoi_clean > stoi_mild > stoi_strong and stoi_strong < 0.8


def test_pesq_resamples_other_model_rates_to_16k(speech):
    at_48k = resample(speech[0], 16000, 48000)[None]
    noisy = _noisy(speech, 15.0)
    direct = _score(Pesq(16000), speech, noisy)["pesq_wb"]
    via_48k = _score(Pesq(48000), at_48k, resample(noisy[0], 16000, 48000)[None])["pesq_wb"]
    assert via_48k == pytest.approx(direct, abs=0.15)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # pesq divides silence by 0
def test_pesq_failures_are_counted_not_averaged(speech):
    metric = Pesq(16000)
    metric.update(torch.zeros(1, 1, 16000), torch.zeros(1, 1, 16000))  # silence: pesq finds no utterance
    metric.update(speech, speech)
    values = metric.compute()
    assert values["num_pesq_wb_failed"] == 1 and values["pesq_wb"] > 4.5


def test_suite_offline_training_extra_and_missing_packages(monkeypatch):
    class Peak:
        def update(self, reference, reconstruction):
            self.value = float((reference - reconstruction).abs().max())

        def compute(self):
            return {"peak": self.value}

    settings = SimpleNamespace(sample_rate=16000, speech=True, fid=True)
    offline = audio_metric_suite(settings, torch.device("cpu"), extra=(Peak,))
    assert [type(m).__name__ for m in offline.make()] == ["SiSdr", "WaveformL1", "Peak", "MelDistanceMetric", "MRSTFTDistanceMetric",
                                                          "Pesq", "Stoi"]
    assert any("FAD not computed" in note for note in offline.notes)
    training = audio_metric_suite(None, torch.device("cpu"))
    assert [type(m).__name__ for m in training.make()] == ["SiSdr", "WaveformL1"]
    monkeypatch.setattr(audio_metrics, "_installed", lambda module: module != "pesq")
    without = audio_metric_suite(SimpleNamespace(sample_rate=16000, speech=True), torch.device("cpu"))
    assert [type(m).__name__ for m in without.make()] == ["SiSdr", "WaveformL1", "MelDistanceMetric", "MRSTFTDistanceMetric", "Stoi"]
    assert without.notes == ("pesq_wb skipped: pip install pesq (in the audio / dev extras) to compute it",)


def test_pcm16_quantisation_rounds_like_a_saved_wav():
    x = torch.linspace(-1.2, 1.2, 1001).reshape(1, 1, -1)
    stored = PCM16.store(x)
    assert stored.dtype == torch.int16 and int(stored.max()) == 32767 and int(stored.min()) == -32768
    inside = x.abs() < 32767 / 32768
    assert float((PCM16(x) - x)[inside].abs().max()) <= 0.5 / 32768 + 1e-7


def test_previews_write_a_mel_strip_and_wav_pairs(tmp_path, speech):
    originals = speech[..., :16384].repeat(2, 1, 1)
    reconstructions = _noisy(originals, 10.0).clamp(-1, 1)
    path = write_audio_preview(originals, reconstructions, tmp_path / "preview.png")
    image = np.asarray(Image.open(path))
    tile = mel_image(originals[0])
    assert tile.shape[0] == 80 and image.shape == (2 * (80 + 2) + 2, 2 * (tile.shape[1] + 2) + 2)
    again = read_audio(tmp_path / "preview_1_1.wav")
    assert again.sample_rate == 16000 and again.samples.shape == (1, 16384)
    assert torch.allclose(again.samples, PCM16(reconstructions[1]), atol=1 / 32768 + 1e-7)  # within 1 LSB
    # the noisy reconstruction's spectrogram is brighter in the quiet regions than the clean one
    assert mel_image(reconstructions[0]).astype(float).mean() > tile.astype(float).mean()
    samples_path = write_audio_samples(originals, tmp_path / "samples.png")
    assert samples_path.exists() and (tmp_path / "samples_1_0.wav").exists() and not math.isnan(float(image.mean()))


def test_previews_carry_the_runs_sample_rate(tmp_path, speech):
    """Core binds the run's data options to the audio writers: a 44.1 kHz run's WAVs say 44100 Hz (written at
    16 kHz they would play 2.76x slower), through every writer core calls; image writers take no options."""
    from core.modality import get_modality, with_data_options

    audio = get_modality("audio")
    clips = speech[..., :8192].repeat(2, 1, 1)
    options = {"sample_rate": 44100, "channels": 1}
    with_data_options(audio.write_preview, options)(clips, clips, tmp_path / "preview.png")
    with_data_options(audio.write_samples, options)(clips, tmp_path / "samples.png")
    with_data_options(audio.write_grid, options)([torch.stack([c, c]) for c in clips], tmp_path / "grid.png")
    for name in ("preview_0_1.wav", "samples_1_0.wav", "grid_0_0.wav"):
        assert read_audio(tmp_path / name).sample_rate == 44100
    with_data_options(audio.write_preview, {})(clips, clips, tmp_path / "default.png")
    assert read_audio(tmp_path / "default_0_0.wav").sample_rate == 16000  # no rate named: the speech models' 16 kHz
    image_writer = get_modality("image").write_preview
    assert with_data_options(image_writer, options) is image_writer
    for bad in (-1, 0):  # 0 must not fall back to the default silently
        with pytest.raises(ValueError, match=f"sample_rate={bad}"):
            with_data_options(audio.write_preview, {"sample_rate": bad})(clips, clips, tmp_path / "bad.png")
