"""The audio modality end to end: registration, ``recipes.audio.evaluate`` on the bundled speech with the real
``audio_tiny`` tokenizer (hop 256, random weights), ``latent_stats`` / ``cache_latents`` with ``modality=audio``,
and the in-training hooks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.builder import build_autoencoder
from core.modality import get_modality
from core.pretrained import save_pretrained
from core.autoencoder import InputError
from core.training.config import DataConfig
from modalities.audio.models import audio_config

HOP = 256  # audio_tiny's samples per latent frame
COMMON = [f"hop={HOP}", "num_workers=0", "progress=false"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_autoencoder(audio_config("tiny"))
    assert model.downsample_factor == HOP
    path = tmp_path_factory.mktemp("audio_tok") / "export"
    save_pretrained(model, path)
    return path


def test_audio_modality_sets_every_hook_but_fad():
    modality = get_modality("audio")
    assert (modality.spatial_dims, modality.channels, modality.preview_suffix) == (1, 1, ".png")
    hooks = ("make_datamodule", "write_preview", "write_samples", "held_out_dataset", "reconstruction_metrics", "quantization",
             "write_grid", "select_eval_samples", "cache_inputs")
    assert all(getattr(modality, name) is not None for name in hooks)
    assert modality.feature_extractor is None
    tools = modality.tool_settings
    assert all(schema is not None for schema in (tools.evaluate, tools.latent_stats, tools.cache_latents))


def test_evaluate_command_on_bundled_speech(tokenizer, tmp_path, capsys):
    from modalities.audio.metrics import SiSdr
    from modalities.audio.preview import PCM16
    from modalities.audio.spectral_metrics import MelDistanceMetric
    from recipes.audio.evaluate import main

    out = tmp_path / "eval"
    report = main([f"checkpoint={tokenizer}", "data.demo=true", "steps=[1,2]", f"out={out}", "batch_size=1", "save_arrays=true",
                   "fid=true", *COMMON])
    printed = capsys.readouterr().out
    assert "SI-SDR dB" in printed and "PESQ-WB" in printed
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["data"]["num_clips"] == 2 and saved["data"]["source"] == "demo" and saved["data"]["unreadable"] == 0
    for key in ("steps_1", "steps_2"):
        assert set(saved["metrics"][key]) >= {"si_sdr", "waveform_l1", "pesq_wb", "stoi", "mel_distance", "mrstft"}
        assert saved["metrics"][key]["mel_distance"] > 0 and saved["metrics"][key]["mrstft"] > 0
        assert 1.0 <= saved["metrics"][key]["pesq_wb"] <= 4.7 and 0.0 <= saved["metrics"][key]["waveform_l1"] <= 2.0
    assert saved["protocol"]["quantisation"] == PCM16.description and "16384 samples" in saved["protocol"]["eval_transform"]
    assert any("FAD not computed" in note for note in saved["notes"])
    # the reported SI-SDR is the one of the stored (16-bit) reconstructions, clip by clip (the loop scores the float
    # originals, the arrays hold their 16-bit form: a 1e-5 relative difference)
    arrays = np.load(out / "arrays.npz")
    original = PCM16.load(torch.from_numpy(arrays["original"])).movedim(-1, 1)
    reconstruction = PCM16.load(torch.from_numpy(arrays["steps_1"])).movedim(-1, 1)
    assert original.shape == (2, 1, 16384)
    metric = SiSdr()
    metric.update(original, reconstruction)
    assert metric.compute()["si_sdr"] == pytest.approx(saved["metrics"]["steps_1"]["si_sdr"], rel=1e-4)
    mel = MelDistanceMetric(16000)
    mel.update(original, reconstruction)
    assert mel.compute()["mel_distance"] == pytest.approx(saved["metrics"]["steps_1"]["mel_distance"], rel=1e-3)
    assert Path(report["grid"]).name == "reconstructions.png"
    assert sorted(p.name for p in out.glob("reconstructions_*.wav")) == [f"reconstructions_{r}_{c}.wav" for r in range(2) for c in range(3)]
    assert len((out / "subset.txt").read_text().splitlines()) == 2


def test_evaluate_counts_short_and_unreadable_clips_apart(tokenizer, tmp_path):
    """A clip shorter than the evaluation crop is ``too_short``, a corrupt file ``unreadable``: a folder of short
    clips must not be reported as a folder of broken files."""
    import soundfile

    from recipes.audio.evaluate import main

    folder = tmp_path / "clips"
    folder.mkdir()
    rng = np.random.default_rng(0)
    soundfile.write(folder / "long.wav", (0.1 * rng.standard_normal(24000)).astype(np.float32), 16000)
    soundfile.write(folder / "short.wav", (0.1 * rng.standard_normal(4000)).astype(np.float32), 16000)  # 0.25 s < 1.024 s
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    out = tmp_path / "eval"
    report = main([f"checkpoint={tokenizer}", f"data.root={folder}", "steps=1", f"out={out}", "batch_size=2", "fid=false", *COMMON])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["data"]["num_clips"] == 1 and saved["data"]["unreadable"] == 1
    assert saved["data"]["skipped"] == {"too_short": 1, "unreadable": 1}
    assert "1 too-short clip(s) skipped" in saved["notes"] and "1 unreadable clip(s) skipped" in saved["notes"]
    assert report["data"]["skipped"] == saved["data"]["skipped"]


def test_evaluate_with_a_crop_off_the_hop_names_the_valid_length(tokenizer, tmp_path):
    from recipes.audio.evaluate import main

    with pytest.raises(InputError, match="use 16128 or 16384"):
        main([f"checkpoint={tokenizer}", "data.demo=true", "steps=1", f"out={tmp_path}", "hop=1", "seconds=1.0237",
              "num_workers=0", "progress=false"])


def test_latent_stats_and_cache_latents_with_modality_audio(tokenizer, tmp_path):
    from recipes.cache_latents import main as cache_latents
    from recipes.latent_stats import main as latent_stats

    stats = latent_stats(["modality=audio", f"tokenizer={tokenizer}", "data.demo=true", f"out={tmp_path / 'stats'}", *COMMON])
    assert stats["scale"] > 0 and (tmp_path / "stats" / "latent_stats.json").exists()
    summary = cache_latents(["modality=audio", f"tokenizer={tokenizer}", "data.demo=true", "data.split=val",
                             f"out={tmp_path / 'cache'}", *COMMON])
    assert summary["count"] == 1 and summary["latent_shape"] == [16, 16384 // HOP] and summary["skipped"] == 0


def test_in_training_hooks_score_held_out_clips(tmp_path):
    modality = get_modality("audio")
    datamodule = modality.make_datamodule(DataConfig(root=str(tmp_path / "demo"), demo=True, batch_size=2, num_workers=0), 0, 2)
    held_out = modality.held_out_dataset(datamodule)
    clip = held_out[0]["x"][None]
    assert clip.shape == (1, 1, 16384)
    suite = modality.reconstruction_metrics(None, torch.device("cpu"))
    accumulators = suite.make()
    for metric in accumulators:
        metric.update(clip, modality.quantization(clip))
    values = {k: v for metric in accumulators for k, v in metric.compute().items()}
    assert values["si_sdr"] > 50 and values["waveform_l1"] < 1e-4  # 16-bit rounding only


def test_lightning_trains_on_bundled_speech_with_previews_and_held_out_metrics(tmp_path):
    from core.training.config import ExperimentConfig, OptimConfig, TrainerConfig
    from core.training.run import train

    cfg = ExperimentConfig(
        name="audio", output_dir=str(tmp_path / "run"), model=audio_config("tiny"),
        data=DataConfig(root=str(tmp_path / "demo"), demo=True, batch_size=2, num_workers=0,
                        options={"crop_seconds": 0.256, "hop": HOP, "sample_rate": 8000}),
        optim=OptimConfig(lr=1e-3),
        trainer=TrainerConfig(max_steps=2, accelerator="cpu", devices=1, log_every_n_steps=1, checkpoint_every_n_steps=10,
                              preview_every_n_steps=2, eval_every_n_steps=2, progress_bar=False),
    )
    result = train(cfg)
    assert result.global_step == 2 and (result.export_dir / "model.safetensors").is_file()
    previews = sorted(Path(cfg.output_dir).rglob("*.png"))
    assert previews and list(previews[0].parent.glob(f"{previews[0].stem}_0_1.wav"))
    from modalities.audio.io import read_audio

    pair = read_audio(previews[0].parent / f"{previews[0].stem}_0_1.wav")  # the run's rate, not the 16 kHz default
    assert pair.sample_rate == 8000 and pair.samples.shape == (1, 2048)
    logged = (Path(cfg.output_dir) / "logs" / "csv" / "version_0" / "metrics.csv").read_text()
    assert "eval/si_sdr_steps1" in logged.splitlines()[0]
