"""Video metrics on known inputs, the I3D rFVD path with a TorchScript stand-in, and the PNG/GIF previews."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from core.eval.frechet import frechet_distance
from modalities.image.metrics import reconstruction_metrics
from modalities.image.preview import from_uint8
from modalities.video.fvd import I3D_NOTE, I3DFeatures, i3d_preprocess
from modalities.video.metrics import frames_of, video_metric_suite, video_reconstruction_metrics
from modalities.video.preview import save_clip_grid, write_video_preview


def _clips(seed: int = 0, shape=(2, 3, 5, 16, 16)) -> torch.Tensor:
    """uint8-valued clips in [20, 200] (room for shifts without clipping)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(20, 200, shape, generator=generator)


def test_identical_clips_score_perfectly():
    x = from_uint8(_clips())
    values = video_reconstruction_metrics(x, x.clone())
    assert values["psnr_per_frame"] > 100 and values["psnr_frame0"] > 100  # capped at MSE 1e-10, not inf
    assert values["ssim"] == pytest.approx(1.0, abs=1e-6) and values["temporal_l1"] == 0.0
    assert values["num_frames"] == 10


def test_shifted_clip_gives_the_expected_values():
    ref = _clips()
    offset, drift = 4, 3  # every pixel + 4 levels, plus 3 more levels per frame
    time = torch.arange(5).view(1, 1, 5, 1, 1)
    rec = ref + offset + drift * time
    values = video_reconstruction_metrics(from_uint8(ref), from_uint8(rec))
    assert values["psnr_frame0"] == pytest.approx(10 * math.log10(255**2 / offset**2), rel=1e-6)
    per_frame = [10 * math.log10(255**2 / (offset + drift * t) ** 2) for t in range(5)]
    assert values["psnr_per_frame"] == pytest.approx(sum(per_frame) / 5, rel=1e-6)
    assert values["temporal_l1"] == pytest.approx(drift / 255, rel=1e-9)  # |Δx̂ - Δx| = drift everywhere
    static = video_reconstruction_metrics(from_uint8(ref), from_uint8(ref + offset))
    assert static["temporal_l1"] == 0.0  # a constant error does not flicker


def test_per_frame_metrics_are_the_image_metrics_on_frames():
    ref, rec = from_uint8(_clips(1)), from_uint8(_clips(2))
    video = video_reconstruction_metrics(ref, rec)
    image = reconstruction_metrics(frames_of(ref), frames_of(rec))
    assert video["psnr_per_frame"] == pytest.approx(image["psnr_mean_per_image"], rel=1e-12)
    assert video["ssim"] == pytest.approx(image["ssim"], rel=1e-12) and video["psnr_dataset"] == image["psnr_dataset"]
    assert frames_of(ref)[6].equal(ref[1, :, 1])  # clip-major frame order


def test_suite_notes_and_training_keys():
    class Settings:
        lpips_vgg_weights = None
        i3d = None
        fid = True

    offline = video_metric_suite(Settings(), torch.device("cpu"))
    assert offline.features is None and offline.features_note == I3D_NOTE and any("per-frame LPIPS skipped" in n for n in offline.notes)
    training = video_metric_suite(None, torch.device("cpu"))
    metrics = training.make()
    x = from_uint8(_clips())
    for metric in metrics:
        metric.update(x, x)
    keys = set().union(*(m.compute() for m in metrics))
    assert {"psnr", "ssim", "psnr_frame0", "temporal_l1"} <= keys and not training.notes


class StandInI3D(torch.nn.Module):
    """Random linear features with the I3D TorchScript call signature (the real weights are not here)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3 * 4 * 4, 400)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False) -> torch.Tensor:
        assert not rescale and not resize and return_features
        pooled = torch.nn.functional.adaptive_avg_pool3d(x, (1, 4, 4)).flatten(1)  # (B, 48)
        return self.proj(pooled)


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("i3d") / "i3d_standin.pt"
    torch.jit.save(torch.jit.script(StandInI3D()), str(path))
    return path


def test_i3d_preprocessing():
    x = torch.rand(2, 3, 5, 48, 64) * 2 - 1
    out = i3d_preprocess(x)
    assert out.shape == (2, 3, 5, 224, 224) and out.min() >= -1 and out.max() <= 1
    # frame t of clip b is the resized, center-cropped frame t of clip b
    frame = torch.nn.functional.interpolate(x[1, :, 3][None], size=(224, 299), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out[1, :, 3], frame[:, :, 37:261].clamp(-1, 1))


def test_i3d_features_and_frechet_distance(i3d_file):
    features = I3DFeatures(i3d_file)
    assert features.metric_name == "rfvd" and features.info["i3d_sha256"] == hashlib.sha256(i3d_file.read_bytes()).hexdigest()
    clips = torch.rand(6, 3, 5, 32, 32) * 2 - 1
    real = features(clips)
    assert real.shape == (6, 400)
    assert frechet_distance(real, features(clips.clone())) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(real, features(-clips)) > 1e-3
    with pytest.raises(FileNotFoundError, match="i3d=.*does not exist"):
        I3DFeatures(i3d_file.parent / "missing.pt")
    (i3d_file.parent / "garbage.pt").write_bytes(b"not torchscript")
    with pytest.raises(ValueError, match="not a TorchScript file"):
        I3DFeatures(i3d_file.parent / "garbage.pt")


def test_previews_write_frame_strips_and_a_gif(tmp_path):
    clips = from_uint8(_clips(shape=(2, 3, 4, 8, 8)))
    png = save_clip_grid([torch.stack([c, c, -c]) for c in clips], tmp_path / "grid.png")
    assert Image.open(png).size == (4 * 10 + 2, 6 * 10 + 2)  # 4 frames across; 2 clips x 3 versions down
    gif = Image.open(png.with_suffix(".gif"))
    assert gif.n_frames == 4 and gif.size == (3 * 10 + 2, 2 * 10 + 2)
    preview = write_video_preview(clips, clips, tmp_path / "preview.png")
    assert Image.open(preview).size == (4 * 10 + 2, 4 * 10 + 2) and preview.with_suffix(".gif").is_file()
    with pytest.raises(ValueError, match=r"\(N, 3, T, H, W\)"):
        save_clip_grid([clips[0]], tmp_path / "bad.png")
