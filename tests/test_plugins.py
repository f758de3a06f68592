"""Third-party modality plugins: discovered through entry points; the example modality uses every core tool."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core.builder import AutoencoderConfig, ComponentConfig
from core.data.folder_shards import ShardSettings, convert_folder_to_shards
from core.eval.command import evaluate_checkpoint
from core.eval.selection import SourceData
from core.generation.config import GeneratorConfig
from core.generation.pretrained import load_generator
from core.latent.cache_stream import load_all_latents
from core.pretrained import from_pretrained
from core.registry import MODALITIES, load_plugins
from core.training.config import DataConfig, ExperimentConfig, OptimConfig, TrainerConfig
from core.training.generator_config import GeneratorExperimentConfig, GeneratorSampleConfig
from core.training.generator_run import train_generator
from core.training.run import train
from recipes.report import read_loss_curve

EXAMPLE_ENTRY_POINT = "signal = tests.example_signal:register"


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """Announce ``tests/example_signal`` through the entry-point group, as ``pip install`` of a plugin would."""
    site = tmp_path / "site"
    dist = site / "example_signal_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: example-signal-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[difftok.modalities]\n{EXAMPLE_ENTRY_POINT}\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    MODALITIES.remove("signal")


def tokenizer_config(run: Path, data: DataConfig, **trainer: object) -> ExperimentConfig:
    return ExperimentConfig(
        name="signal", output_dir=str(run), seed=0,
        model=AutoencoderConfig(
            modality="signal", spatial_dims=1, in_channels=1, latent_channels=2,
            encoder=ComponentConfig("conv_encoder", {"base_channels": 8, "channels_mult": [1, 2, 2], "num_res_blocks": 1, "num_groups": 4}),
            decoder=ComponentConfig("unet_decoder", {"stage_channels": [8, 16, 16], "down_blocks": 1, "mid_blocks": 1, "up_blocks": 2,
                                                     "pe_dim": 16, "t_dim": 32, "num_groups": 4}),
        ),
        data=data, optim=OptimConfig(lr=2e-3),
        trainer=TrainerConfig(accelerator="cpu", log_every_n_steps=1, progress_bar=False, preview_count=2, preview_steps=2, **trainer),
    )


def test_example_modality_runs_every_core_tool(installed_plugin, tmp_path, one_thread):
    """Real files -> shards -> streamed training with in-training SNR -> offline evaluation (SNR + spectral
    FID) -> latent statistics -> latent cache -> a latent DiT trained on the cache, all from core."""
    from tests.example_signal import SIGNAL_SHARDS, export_demo_signals, open_signal

    assert "signal" in load_plugins(force=True) and "signal" in MODALITIES.list()  # found through the entry point

    # real files: rows of scikit-image photographs, one class folder per photograph, plus a damaged file
    root = export_demo_signals(str(tmp_path / "signals"))
    (root / "train" / "camera" / "row_999.npy").write_bytes(b"\x93NUMPY truncated")
    train_files = sorted((root / "train").rglob("*.npy"))
    assert len(train_files) == 49 and open_signal(train_files[0]).shape == (1, 256)

    shards = convert_folder_to_shards(root / "train", tmp_path / "shards", SIGNAL_SHARDS, ShardSettings(shard_size=16), progress=False)
    assert (shards.num_samples, shards.num_skipped, len(shards.shards)) == (48, 1, 3)
    assert shards.classes == ["camera", "coins", "moon"]

    # the tokenizer streams the shards; held-out signals come from val/ and are scored by the plugin's metric
    data = DataConfig(shards=str(tmp_path / "shards"), root=str(root), size=64, batch_size=8, num_workers=0,
                      options={"eval_length": 128, "shuffle_buffer": 16})
    result = train(tokenizer_config(tmp_path / "tok", data, max_steps=40, checkpoint_every_n_steps=40, preview_every_n_steps=40,
                                    eval_every_n_steps=20, eval_steps=[1, 4]))
    assert result.global_step == 40 and result.previews[0].suffix == ".npz"
    steps, fm = read_loss_curve(result.metrics_csv, "train/fm")
    assert sum(fm[-10:]) < sum(fm[:10])  # it learns
    _, snr = read_loss_curve(result.metrics_csv, "eval/snr_db_steps4")
    assert len(snr) == 2 and all(math.isfinite(v) for v in snr)

    tok = from_pretrained(result.export_dir, modality="signal")
    assert tok.encode(torch.zeros(1, 1, 256)).latent_dist.mode().shape == (1, 2, 64)

    # offline evaluation through the core command with the plugin's metric, quantisation and features
    report = evaluate_checkpoint(SignalEvalSettingsFor(result.export_dir, root / "val", tmp_path / "eval"))
    assert report["data"]["num_signals"] == 12 and report["protocol"]["quantisation"] == "16-bit integers"
    assert set(report["metrics"]["steps_2"]) == {"snr_db", "rfid"} and (tmp_path / "eval" / "reconstructions.npz").is_file()

    # latent statistics and the latent cache through modality=signal
    from recipes.cache_latents import main as cache_main
    from recipes.latent_stats import main as stats_main

    stats = stats_main(["modality=signal", f"tokenizer={result.export_dir}", f"data.root={root / 'train'}", f"out={tmp_path / 'stats'}",
                        "length=128", "batch_size=16", "num_workers=0", "progress=false", "device=cpu"])
    assert stats["num_signals"] == 48 and stats["data"]["unreadable"] == 1 and stats["scale"] > 0
    summary = cache_main(["modality=signal", f"tokenizer={tmp_path / 'stats'}", f"data.shards={tmp_path / 'shards'}",
                          f"out={tmp_path / 'cache'}", "length=128", "batch_size=16", "samples_per_shard=20", "num_workers=0",
                          "progress=false", "device=cpu"])
    assert summary["count"] == 48 and summary["latent_shape"] == [2, 32]
    cached = load_all_latents(tmp_path / "cache")
    assert sorted(set(cached.labels.tolist())) == [0, 1, 2]

    # a latent DiT on the cached 1-D latents; its preview samples are decoded and written by the plugin
    generator_run = train_generator(GeneratorExperimentConfig(
        name="signal_dit", output_dir=str(tmp_path / "dit"), tokenizer=str(tmp_path / "stats"), latents=str(tmp_path / "cache"),
        generator=GeneratorConfig(net=ComponentConfig("dit_tiny_2"), num_classes=3, sample_steps=4),
        data=DataConfig(batch_size=8, num_workers=0), optim=OptimConfig(name="adamw", lr=1e-3, weight_decay=0.0),
        trainer=TrainerConfig(max_steps=6, accelerator="cpu", log_every_n_steps=1, checkpoint_every_n_steps=6, preview_every_n_steps=0,
                              progress_bar=False),
        sample=GeneratorSampleConfig(count=3, steps=3, decode_steps=2),
    ))
    assert generator_run.global_step == 6
    generator = load_generator(generator_run.export_dir)
    assert list(generator.config.latent_size) == [32] and generator.config.latent_scale == pytest.approx(stats["scale"])
    samples = np.load(next((tmp_path / "dit").rglob("*.npz")))["samples"]
    assert samples.shape == (3, 1, 128) and np.isfinite(samples).all()


def SignalEvalSettingsFor(checkpoint: Path, root: Path, out: Path):
    from tests.example_signal import SignalEvalSettings

    return SignalEvalSettings(checkpoint=str(checkpoint), data=SourceData(root=str(root)), length=128, steps=[1, 2], batch_size=4,
                              out=str(out), device="cpu", num_workers=0, progress=False)


def test_broken_plugin_warns_without_breaking_core(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[difftok.modalities]\nbroken = does_not_exist_anywhere:register\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.warns(UserWarning, match="plugin 'broken'"):
        load_plugins(force=True)
    assert "image" in MODALITIES.list()
