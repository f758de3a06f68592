"""The offline commands with ``modality=video`` end to end on the bundled clips, with the real tiny video
tokenizer (``causal_video_f4s8`` encoder + ``video_dito_tiny`` decoder: 9-frame clips -> 3 latent frames),
and the training run on the demo data path with mixed image/video batches.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

pytest.importorskip("decord")

from core.autoencoder import InputError  # noqa: E402
from core.builder import build_autoencoder  # noqa: E402
from core.pretrained import save_pretrained  # noqa: E402
from modalities.video.models import video_dito_config  # noqa: E402
from tests.test_video_metrics import i3d_file  # noqa: E402,F401  (the I3D TorchScript stand-in fixture)

CLIP = ["resolution=16", "num_frames=9", "frame_stride=2"]


@pytest.fixture(scope="module")
def video_tokenizer(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_autoencoder(video_dito_config("tiny"), with_loss_terms=False)
    assert (model.encoder.__class__.__name__, model.decoder.__class__.__name__) == ("CausalVideoEncoder", "VideoUNetDecoder")
    return save_pretrained(model, tmp_path_factory.mktemp("video_tok") / "export")


@pytest.fixture(autouse=True)
def _demo_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DIFFTOK_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _common(tokenizer: Path, out: Path) -> list[str]:
    return [f"checkpoint={tokenizer}", "data.demo=true", "num_videos=0", "steps=[1,2]", "batch_size=2", "device=cpu", "num_workers=0",
            "progress=false", f"out={out}", "save_arrays=true", *CLIP]


def test_evaluate_command_on_the_bundled_clips(video_tokenizer, tmp_path, capsys):
    from recipes.video.evaluate import main

    out = tmp_path / "eval"
    report = main(_common(video_tokenizer, out))
    assert report == json.loads((out / "metrics.json").read_text())
    assert report["data"]["num_videos"] == 3 and report["data"]["source"] == "demo" and report["modality"] == "video"
    for n in (1, 2):
        metrics = report["metrics"][f"steps_{n}"]
        assert {"psnr_per_frame", "psnr_dataset", "ssim", "psnr_frame0", "temporal_l1"} <= set(metrics)
        assert metrics["num_frames"] == 3 * 9 and "rfvd" not in metrics and 0 < metrics["psnr_per_frame"] < 60
    assert any("rFVD skipped: pass i3d=PATH" in note for note in report["notes"]) and not report["fid"]["computed"]
    assert not any("rFID skipped" in note for note in report["notes"])  # one note on the missing Fréchet distance
    assert "9 frames at stride 2" in report["protocol"]["eval_transform"]
    arrays = __import__("numpy").load(out / "arrays.npz")
    assert arrays["original"].shape == (3, 9, 16, 16, 3)  # (clip, T, H, W, RGB): channels last
    grid = Image.open(out / "reconstructions.png")
    assert grid.size == (9 * 18 + 2, 3 * 3 * 18 + 2)  # 9 frames across; 3 clips x (original, steps 1, steps 2) down
    assert Image.open(out / "reconstructions.gif").n_frames == 9
    assert "PSNR frame0" in capsys.readouterr().out


def test_evaluate_with_an_i3d_file_reports_rfvd(video_tokenizer, i3d_file, tmp_path):
    from recipes.video.evaluate import main

    report = main(_common(video_tokenizer, tmp_path / "eval") + [f"i3d={i3d_file}", "steps=1"])
    assert report["metrics"]["steps_1"]["rfvd"] > 0 and report["fid"]["computed"]
    assert report["fid"]["i3d_sha256"] and report["fid"]["num_videos"] == 3
    assert not any("rFVD skipped" in note for note in report["notes"])


def test_evaluate_names_the_frame_rule_of_the_tokenizer(video_tokenizer, tmp_path):
    from recipes.video.evaluate import main

    args = [a for a in _common(video_tokenizer, tmp_path / "eval") if not a.startswith("num_frames=")] + ["num_frames=8"]
    with pytest.raises(InputError, match=r"not 1 \+ 4k: use 5 or 9"):
        main(args)


def test_latent_stats_and_cache_latents_run_with_modality_video(video_tokenizer, tmp_path):
    from recipes.cache_latents import main as cache_main
    from recipes.latent_stats import main as stats_main

    clip = ["size=16", "num_frames=9", "frame_stride=2", "device=cpu", "num_workers=0", "progress=false", "data.demo=true"]
    stats = stats_main(["modality=video", f"tokenizer={video_tokenizer}", f"out={tmp_path / 'with_stats'}", "num_videos=0", *clip])
    assert stats["num_videos"] == 3 and (tmp_path / "with_stats" / "latent_stats.json").is_file()
    assert json.loads((tmp_path / "with_stats" / "config.json").read_text()) != json.loads((video_tokenizer / "config.json").read_text())
    summary = cache_main(["modality=video", f"tokenizer={video_tokenizer}", f"out={tmp_path / 'latents'}", "labels=none", *clip])
    assert summary["count"] == 2 and tuple(summary["latent_shape"]) == (16, 3, 2, 2)  # train/ of the demo: 2 videos


def test_training_on_the_bundled_clips_logs_video_metrics_and_previews(tmp_path, one_thread):
    from core.training.config import DataConfig, ExperimentConfig, OptimConfig, TrainerConfig
    from core.training.run import train
    from recipes.report import read_loss_curve

    # image_ratio 0.5: some batches are 1-frame clips (frame 0), through the same causal tokenizer
    data = DataConfig(demo=True, size=16, batch_size=2, num_workers=0,
                      options={"num_frames": 9, "frame_stride": 2, "temporal_factor": 4, "image_ratio": 0.5})
    trainer = TrainerConfig(max_steps=2, accelerator="cpu", devices=1, log_every_n_steps=1, checkpoint_every_n_steps=2,
                            preview_every_n_steps=2, preview_count=1, preview_steps=1, progress_bar=False, eval_every_n_steps=2,
                            eval_steps=[1])
    result = train(ExperimentConfig(name="video_tiny", seed=0, output_dir=str(tmp_path / "run"),
                                    model=video_dito_config("tiny"), data=data, optim=OptimConfig(lr=1e-3),
                                    trainer=trainer))
    assert result.global_step == 2
    for key in ("eval/psnr_steps1", "eval/psnr_frame0_steps1", "eval/temporal_l1_steps1"):
        steps, values = read_loss_curve(result.metrics_csv, key)
        assert steps == [2] and all(v >= 0 for v in values), key
    assert result.previews and all(p.suffix == ".png" and p.with_suffix(".gif").is_file() for p in result.previews)
