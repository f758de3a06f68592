"""Audio data path: decode, resample, channel policy, level, crops, skip counts, folder / shards / demo, make_shards."""

from __future__ import annotations

import io
import json
import logging
import random
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy
import soundfile
import torch

from core.data.folder_shards import ShardSettings, read_shard_index
from core.data.skips import skip_kind
from core.training.config import DataConfig
from modalities.audio import io as audio_io
from modalities.audio.data import (AudioDataModule, AudioDataOptions, AudioTransform, ClipFormat, TooShortError,
                                   audio_eval_transform, audio_train_transform, check_audio)
from modalities.audio.demo import bundled_speech_files, export_demo_dataset
from modalities.audio.io import UnreadableAudioError, Waveform, match_channels, normalise_level, read_audio, resample, rms_dbfs
from modalities.audio.shards import convert_audio_folder_to_shards

SCIPY_WAVS = Path(scipy.__file__).parent / "io" / "tests" / "data"
# libsndfile cannot open these five (36/45/53/64-bit PCM, incomplete chunk, no data before EOF)
UNOPENABLE = ("test-8000Hz-le-3ch-5S-36bit.wav", "test-8000Hz-le-3ch-5S-45bit.wav", "test-8000Hz-le-3ch-5S-53bit.wav",
              "test-8000Hz-le-3ch-5S-64bit.wav", "test-44100Hz-le-1ch-4bytes-incomplete-chunk.wav")
NO_DATA = "test-44100Hz-le-1ch-4bytes-early-eof-no-data.wav"
EARLY_EOF = "test-44100Hz-le-1ch-4bytes-early-eof.wav"  # header promises more; decodes silently to 236 frames


@pytest.fixture(scope="module")
def speech() -> Waveform:
    """CMU ARCTIC a0007 (pysptk's bundled wav): 16 kHz mono, 4.00 s of real speech."""
    return read_audio(bundled_speech_files()["arctic_a0007"])


def _sine(rate: int, seconds: float, freq: float, channels: int = 1) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return np.repeat((0.5 * np.sin(2 * np.pi * freq * t))[:, None], channels, axis=1).astype(np.float32)


def _peak_hz(samples: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.numpy().mean(axis=0) * np.hanning(samples.shape[-1])))
    return float(np.fft.rfftfreq(samples.shape[-1], 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_resampled_to_the_model_rate_keeps_length_and_pitch(tmp_path, rate):
    path = tmp_path / f"sine_{rate}.wav"
    soundfile.write(str(path), _sine(rate, 1.0, 440.0), rate, subtype="FLOAT")
    wave = ClipFormat(16000, 1, 16000).conform(read_audio(path))
    assert wave.sample_rate == 16000 and abs(wave.frames - 16000) <= 1
    assert abs(_peak_hz(wave.samples, 16000) - 440.0) < 2.0
    assert audio_io.resample(wave.samples, 16000, 16000) is wave.samples  # same rate: untouched


def test_scipy_fallback_when_torchaudio_cannot_be_imported(monkeypatch):
    x = torch.from_numpy(_sine(44100, 0.5, 1000.0).T.copy())
    reference = resample(x, 44100, 16000)
    monkeypatch.setitem(__import__("sys").modules, "torchaudio.functional", None)  # makes the import raise ImportError
    fallback = resample(x, 44100, 16000)
    assert fallback.shape == reference.shape and fallback.dtype == torch.float32
    assert abs(_peak_hz(fallback, 16000) - 1000.0) < 3.0
    core = slice(200, -200)  # the filters differ only near the ends
    assert torch.allclose(fallback[:, core], reference[:, core], atol=2e-2)


def test_channel_policy_mixes_down_and_duplicates_and_logs_once(caplog):
    audio_io._log_once.cache_clear()
    stereo = torch.stack([torch.ones(8), -0.5 * torch.ones(8)])
    with caplog.at_level(logging.INFO, logger="difftok.audio"):
        mono = match_channels(stereo, 1)
        match_channels(stereo, 1)
    assert mono.shape == (1, 8) and torch.allclose(mono, torch.full((1, 8), 0.25))
    assert caplog.text.count("mixing 2-channel audio down to mono") == 1
    duplicated = match_channels(mono, 2)
    assert duplicated.shape == (2, 8) and torch.equal(duplicated[0], duplicated[1])
    assert match_channels(torch.zeros(5, 4), 2).shape == (2, 4)
    with pytest.raises(ValueError, match="cannot map 2-channel audio to 3"):
        match_channels(stereo, 3)


def test_stereo_file_to_mono_model_and_mono_file_to_stereo_model(tmp_path):
    left, right = _sine(16000, 1.1, 300.0), _sine(16000, 1.1, 700.0)
    soundfile.write(str(tmp_path / "stereo.wav"), np.concatenate([left, right], axis=1), 16000, subtype="FLOAT")
    soundfile.write(str(tmp_path / "mono.flac"), left, 16000)
    mono = ClipFormat(16000, 1, 16000).conform(read_audio(tmp_path / "stereo.wav"))
    assert torch.allclose(mono.samples[0], torch.from_numpy((left[:, 0] + right[:, 0]) / 2), atol=1e-6)
    stereo = audio_eval_transform(AudioDataOptions(channels=2, crop_seconds=1.0), None)(read_audio(tmp_path / "mono.flac"), None)
    assert stereo.shape == (2, 16000) and torch.equal(stereo[0], stereo[1])


def test_level_normalisation_eval_exact_train_within_gain(speech):
    options = AudioDataOptions()
    clip = audio_eval_transform(options, None)(speech, None)
    assert abs(rms_dbfs(clip) - options.level_db) < 0.05 and clip.abs().max() <= 1.0
    train = audio_train_transform(options, None)
    levels = [rms_dbfs(train(speech, random.Random(seed))) for seed in range(20)]
    assert all(-26.05 < level < -13.95 for level in levels) and max(levels) - min(levels) > 3  # +-6 dB drawn
    loud = normalise_level(torch.ones(1, 100) * 0.01, level_db=0.0)  # 0 dBFS RMS of a constant: full scale, clamped
    assert loud.abs().max() <= 1.0
    silence = torch.zeros(1, 64)
    assert torch.equal(normalise_level(silence, -20.0), silence)


def test_crops_are_random_in_training_centred_in_eval_and_rounded_to_the_hop(speech):
    options = AudioDataOptions(crop_seconds=0.5, hop=256, gain_db=0.0)
    assert options.crop_length(0.5) == 7936  # 8000 rounded down to 31 * 256
    train = audio_train_transform(options, None)
    crops = [train(speech, random.Random(seed)) for seed in range(3)]
    assert all(c.shape == (1, 7936) for c in crops) and not torch.equal(crops[0], crops[1])
    evaluated = audio_eval_transform(options, None)
    assert torch.equal(evaluated(speech, None), evaluated(speech, None))
    start = (64000 - 7936) // 2
    expected = normalise_level(speech.samples[:, start : start + 7936], options.level_db)
    assert torch.allclose(evaluated(speech, None), expected)
    from core.data.options import parse_options

    assert parse_options(AudioDataOptions, {"crop_seconds": "0.5", "hop": "256"}).crop_length(0.5) == 7936  # command-line strings
    with pytest.raises(ValueError, match="shorter than one hop"):
        AudioDataOptions(crop_seconds=0.01, hop=256)
    with pytest.raises(ValueError, match="unknown data.options key"):
        AudioDataModule(DataConfig(demo=True, options={"sampling_rate": 16000}))


def test_short_clips_skipped_as_too_short_or_padded_above_min_seconds(speech):
    short = Waveform(speech.samples[:, :8000], 16000)  # 0.5 s
    with pytest.raises(TooShortError, match="need 16384") as caught:
        audio_train_transform(AudioDataOptions(), None)(short, random.Random(0))
    assert skip_kind(caught.value) == "too_short" and skip_kind(OSError("x")) == "unreadable"
    padded = audio_train_transform(AudioDataOptions(min_seconds=0.25, gain_db=0.0), None)(short, random.Random(0))
    assert padded.shape == (1, 16384) and torch.count_nonzero(padded[:, 8000:]) == 0


def test_corrupt_and_early_eof_files_raise_the_right_errors():
    for name in UNOPENABLE + (NO_DATA,):
        with pytest.raises(UnreadableAudioError):
            read_audio(SCIPY_WAVS / name)
    assert read_audio(SCIPY_WAVS / EARLY_EOF).frames == 236  # no error: only the length check catches it
    with pytest.raises(TooShortError):
        check_audio(SCIPY_WAVS / EARLY_EOF, min_seconds=0.1)
    with pytest.raises(UnreadableAudioError):
        read_audio(b"RIFF\x00\x00not audio")


def _speech_folder(root: Path, speech: Waveform, count: int = 3) -> Path:
    """``count`` 1.5 s speech clips (16 kHz mono WAV / FLAC) under ``root/train``."""
    (root / "train").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        part = speech.samples[:, i * 16000 : i * 16000 + 24000].T.numpy()
        soundfile.write(str(root / "train" / f"clip{i}.{'flac' if i % 2 else 'wav'}"), part, 16000)
    return root / "train"


def test_corrupt_and_short_files_counted_separately_in_folders(tmp_path, speech):
    train = _speech_folder(tmp_path, speech)
    for name in UNOPENABLE + (NO_DATA, EARLY_EOF):
        shutil.copy(SCIPY_WAVS / name, train / name)
    soundfile.write(str(train / "half_second.wav"), speech.samples[:, :8000].T.numpy(), 16000)
    cfg = DataConfig(root=str(train), batch_size=2, num_workers=0, holdout=0)
    dm = AudioDataModule(cfg)
    assert dict(dm.skip_counts) == {"unreadable": 6, "too_short": 2}
    assert len(dm.train_files) == 3
    # without the setup scan the dataset meets the bad files while drawing, and counts them the same way
    unscanned = AudioDataModule(DataConfig(root=str(train), batch_size=2, num_workers=0, options={"verify": False}))
    dataset = unscanned.train_dataset()
    for i in range(len(dataset.files)):
        assert dataset[i]["x"].shape == (1, 16384)
    assert dict(dataset.skips.counts) == {"unreadable": 6, "too_short": 2}


def test_demo_folder_and_stereo_44k_batches(tmp_path, speech):
    demo = AudioDataModule(DataConfig(root=str(tmp_path / "demo"), demo=True, batch_size=2, num_workers=0))
    assert [p.parent.name for p in demo.train_files] == ["train"] and [p.parent.name for p in demo.val_files] == ["val"]
    assert next(iter(demo.train_dataloader()))["x"].shape == (2, 1, 16384)
    assert demo.preview_batch(4).shape == (1, 1, 16384)
    folder = tmp_path / "music"
    folder.mkdir()
    for i in range(2):
        soundfile.write(str(folder / f"tone{i}.wav"), _sine(48000, 2.0, 220.0 * (i + 1), channels=2), 48000)
    options = {"sample_rate": 44100, "channels": 2, "crop_seconds": 1.4861, "hop": 2048}  # 65537 samples -> 32 hops
    batch = next(iter(AudioDataModule(DataConfig(root=str(folder), batch_size=2, num_workers=0, options=options)).train_dataloader()))
    assert batch["x"].shape == (2, 2, 65536) and batch["x"].abs().max() <= 1.0


def test_demo_export_splits_real_speech(tmp_path):
    root = export_demo_dataset(tmp_path)
    head, tail = read_audio(root / "train" / "arctic_a0007_head.wav"), read_audio(root / "val" / "arctic_a0007_tail.wav")
    assert (head.sample_rate, head.frames, tail.frames) == (16000, 40000, 24000)
    assert export_demo_dataset(tmp_path) == root  # idempotent


def _members(shard: Path) -> dict[str, bytes]:
    with tarfile.open(shard) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_shards_store_original_bytes_with_json_and_stream_batches(tmp_path, speech):
    train = _speech_folder(tmp_path / "src", speech, count=4)
    shutil.copy(SCIPY_WAVS / UNOPENABLE[0], train / "broken.wav")
    shutil.copy(SCIPY_WAVS / EARLY_EOF, train / "early_eof.wav")
    result = convert_audio_folder_to_shards(train, tmp_path / "shards", ShardSettings(shard_size=2, seed=0), progress=False)
    assert result.num_samples == 5 and result.num_skipped == 1  # early-EOF is readable: kept, filtered by length later
    members = {k: v for shard in result.shards for k, v in _members(shard).items()}
    clip1 = next(k for k in members if k.endswith("clip1.flac"))
    assert members[clip1] == (train / "clip1.flac").read_bytes()
    assert json.loads(members[clip1.replace(".flac", ".json")]) == {"sr": 16000, "channels": 1, "frames": 24000}
    cfg = DataConfig(shards=str(tmp_path / "shards"), batch_size=2, num_workers=0, options={"shuffle_buffer": 0})
    dm = AudioDataModule(cfg)
    stream = dm.train_dataset()
    batch = next(iter(torch.utils.data.DataLoader(stream, batch_size=2)))
    assert batch["x"].shape == (2, 1, 16384)
    items = list(stream)  # one epoch: index.json says 5 samples
    assert all(item["x"].shape == (1, 16384) for item in items)


def test_shard_stream_counts_too_short_members(tmp_path, speech):
    from core.data.datamodule import ShardSampleDecoder
    from core.data.stream import DecodeStage
    from modalities.audio.data import AUDIO_DATA

    def encoded(samples: torch.Tensor) -> bytes:
        buffer = io.BytesIO()
        soundfile.write(buffer, samples.T.numpy(), 16000, format="FLAC")
        return buffer.getvalue()

    decoder = ShardSampleDecoder(read_audio, AUDIO_DATA.shard_extensions, audio_train_transform(AudioDataOptions(), None))
    stage = DecodeStage(decoder, shuffle_buffer=0)
    samples = [{"__key__": "long", "flac": encoded(speech.samples[:, :20000])}, {"__key__": "short", "flac": encoded(speech.samples[:, :4000])},
               {"__key__": "bad", "wav": b"RIFF....WAVEjunk"}]
    assert [item["key"] for item in stage(samples)] == ["long"]
    assert dict(stage.skips.counts) == {"too_short": 1, "unreadable": 1}


def test_make_shards_command_resumes(tmp_path, speech, capsys):
    from recipes.audio.make_shards import main

    train = _speech_folder(tmp_path / "src", speech, count=3)
    out = tmp_path / "shards"
    args = [f"root={train}", f"out={out}", "shard_size=1", "workers=0", "progress=false"]
    main(args)
    original = (out / "shard-000002.tar").read_bytes()
    index = read_shard_index(out)
    index["shards"], index["complete"] = index["shards"][:1], False  # as if killed while writing shard 1
    (out / "index.json").write_text(json.dumps(index))
    for name in ("shard-000001.tar", "shard-000002.tar"):
        (out / name).unlink()
    main(args)
    assert "1 shard(s) reused" in capsys.readouterr().out
    assert (out / "shard-000002.tar").read_bytes() == original
    with pytest.raises(FileExistsError, match="different settings"):
        main([f"root={train}", f"out={out}", "shard_size=2", "workers=0", "progress=false"])
