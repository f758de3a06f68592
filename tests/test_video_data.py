"""Video data path: decord reader, clip sampling, skip counts (corrupt vs too short), memory, sources, shards."""

from __future__ import annotations

import json
import random
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("decord")

from core.data.skips import TooShortError  # noqa: E402
from core.training.config import DataConfig  # noqa: E402
from modalities.video.clips import VideoClipTransform, clip_indices  # noqa: E402
from modalities.video.data import MixedImageCollate, VideoDataModule, VideoDataOptions, bundled_clip  # noqa: E402
from modalities.video.reader import UNSAFE_TAIL_FRAMES, UnreadableVideoError, open_video, video_info  # noqa: E402

# carphone_pristine: 120 frames (118 safe), 176x144; bikes: 250 frames, 640x272
SHORT_FOR_STRIDE_16 = {"num_frames": 9, "frame_stride": 16}  # needs 129 frames: bikes yes, carphone no


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> Path:
    """bikes (good), carphone (too short for stride 16) and a truncated copy of bikes (corrupt)."""
    root = tmp_path_factory.mktemp("videos")
    shutil.copyfile(bundled_clip("bikes"), root / "bikes.mp4")
    shutil.copyfile(bundled_clip("carphone_pristine"), root / "carphone.mp4")
    data = bundled_clip("bikes").read_bytes()
    (root / "broken.mp4").write_bytes(data[: len(data) // 3])
    return root


def _data(root: Path | None = None, **options) -> DataConfig:
    return DataConfig(root=str(root) if root else None, size=32, batch_size=2, num_workers=0, options=options)


def test_reader_facts_and_errors(video_folder):
    info = video_info(video_folder / "carphone.mp4")
    assert (info.width, info.height) == (176, 144) and info.frames == 120 - UNSAFE_TAIL_FRAMES and info.fps == pytest.approx(29.97, abs=0.01)
    with pytest.raises(UnreadableVideoError):  # an OSError, so every skip path catches it
        with open_video(video_folder / "broken.mp4"):
            pass
    with pytest.raises(UnreadableVideoError):
        with open_video(b"not a video at all"):
            pass
    with open_video((video_folder / "carphone.mp4").read_bytes()) as reader:  # bytes (shard members) work too
        assert reader.frames([0, 5]).shape == (2, 144, 176, 3)
        with pytest.raises(IndexError, match="safe frames"):  # the decord last-frame hang is never risked
            reader.frames([reader.safe_frames])


def test_clip_indices_stay_in_the_safe_range():
    rng = random.Random(0)
    starts = set()
    for _ in range(500):
        indices = clip_indices(40, num_frames=5, frame_stride=4, rng=rng)
        assert indices == list(range(indices[0], indices[0] + 17, 4)) and indices[-1] <= 39
        starts.add(indices[0])
    assert starts == set(range(0, 40 - 17 + 1))  # start uniform in [0, n - (T-1)s - 1]
    assert clip_indices(40, 5, 4) == [0, 4, 8, 12, 16]  # evaluation: the first clip
    with pytest.raises(TooShortError, match="needs 17"):
        clip_indices(16, 5, 4, rng)


def test_clip_transform_shape_range_and_one_crop_per_clip(video_folder):
    train = VideoClipTransform(num_frames=5, frame_stride=2, size=32, resize=40, train=True)
    clip = train(video_folder / "bikes.mp4", random.Random(1))
    assert clip.shape == (3, 5, 32, 32) and clip.dtype == torch.float32 and -1 <= clip.min() and clip.max() <= 1
    evaluation = VideoClipTransform(num_frames=5, frame_stride=2, size=32, resize=40, train=False)
    first = evaluation(video_folder / "bikes.mp4", None)
    torch.testing.assert_close(first, evaluation(video_folder / "bikes.mp4", random.Random(5)))  # eval: deterministic
    # the same crop for every frame: a static region shifted in one frame would show up; compare against a
    # manual center crop of the decoded frames instead
    with open_video(video_folder / "bikes.mp4") as reader:
        frames = torch.from_numpy(reader.frames([0, 2, 4, 6, 8])).permute(0, 3, 1, 2).float()
    resized = torch.nn.functional.interpolate(frames, size=(40, 94), mode="bilinear", antialias=True, align_corners=False)
    expected = resized[..., 4:36, 31:63].div(127.5).sub(1).permute(1, 0, 2, 3)
    torch.testing.assert_close(first, expected)


def test_frame_rule_error_names_valid_counts():
    with pytest.raises(ValueError, match=r"num_frames=16 is not 1 \+ 4k .*use 13 or 17"):
        VideoDataOptions(num_frames=16)
    with pytest.raises(ValueError, match="use 17 or 25"):
        VideoDataOptions(num_frames=20, temporal_factor=8)
    with pytest.raises(ValueError, match="image_ratio"):
        VideoDataOptions(image_ratio=1.5)
    assert VideoDataOptions(num_frames=1).num_frames == 1  # an image is a 1-frame video


def test_corrupt_and_too_short_videos_are_counted_separately(video_folder):
    module = VideoDataModule(_data(video_folder, **SHORT_FOR_STRIDE_16, samples_per_epoch=2))  # setup scan
    assert [p.name for p in module.train_files] == ["bikes.mp4"]
    assert module.skip_counts == {"unreadable": 1, "too_short": 1}
    assert "TooShortError" in module.skipped[str(video_folder / "carphone.mp4")]
    # without the scan, the dataset skips them when drawn, with the same two counts
    unscanned = VideoDataModule(_data(video_folder, **SHORT_FOR_STRIDE_16, verify=False))
    dataset = unscanned.train_dataset()
    assert len(unscanned.train_files) == 3
    for index in range(3):
        assert dataset[index]["x"].shape == (3, 9, 32, 32) and dataset[index]["key"] == "bikes"
    assert dataset.skips.counts == {"unreadable": 1, "too_short": 1}


def test_reader_memory_stays_flat_over_many_clips(video_folder):
    transform = VideoClipTransform(num_frames=5, frame_stride=2, size=32, resize=40, train=True)
    rng = random.Random(0)
    video = video_folder / "carphone.mp4"

    def rss_mb() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * 4096 / 2**20

    for _ in range(20):  # warm-up: allocator pools, decoder libraries
        transform(video, rng)
    before = rss_mb()
    for _ in range(200):
        transform(video, rng)
    assert rss_mb() - before < 50, f"RSS grew {rss_mb() - before:.1f} MB over 200 clip reads (reader leak?)"


def test_demo_folder_and_shard_sources_give_clips(video_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFTOK_CACHE", str(tmp_path / "cache"))
    demo = VideoDataModule(DataConfig(demo=True, size=32, batch_size=2, num_workers=0, options={"num_frames": 5}))
    assert sorted(p.name for p in demo.train_files) == ["bigbuckbunny.mp4", "bikes.mp4"]
    assert [p.name for p in demo.val_files] == ["carphone_pristine.mp4"]
    assert next(iter(demo.train_dataloader()))["x"].shape == (2, 3, 5, 32, 32)
    assert demo.preview_batch(4).shape == (1, 3, 5, 32, 32)

    good = tmp_path / "good"
    good.mkdir()
    for name in ("bikes.mp4", "carphone.mp4"):
        shutil.copyfile(video_folder / name, good / name)
    folder = VideoDataModule(_data(good, num_frames=9, frame_stride=2))
    assert next(iter(folder.train_dataloader()))["x"].shape == (2, 3, 9, 32, 32)

    from modalities.video.shards import convert_video_folder

    result = convert_video_folder(video_folder, tmp_path / "shards", progress=False)
    assert result.num_samples == 2 and result.num_skipped == 1  # the truncated copy
    with tarfile.open(result.shards[0]) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile(next(n for n in names if n.endswith("bikes.json"))).read())
    assert meta == {"fps": 25.0, "frames": 250 - UNSAFE_TAIL_FRAMES, "width": 640, "height": 272}
    assert any(n.endswith("bikes.mp4") for n in names)
    shards = VideoDataModule(DataConfig(shards=str(tmp_path / "shards"), size=32, batch_size=2, num_workers=0,
                                        options={"num_frames": 5, "shuffle_buffer": 2}))
    batch = next(iter(shards.train_dataloader()))
    assert batch["x"].shape == (2, 3, 5, 32, 32)
    assert shards.eval_dataset()[0]["x"].shape == (3, 5, 32, 32)  # map-style reading of tar members


def test_make_shards_command_resumes(video_folder, tmp_path, capsys):
    from recipes.video.make_shards import main

    out = tmp_path / "shards"
    args = [f"root={video_folder}", f"out={out}", "shard_size=1", "workers=0", "progress=false"]
    first = main(args)
    assert first == {"num_samples": 2, "shards": 2, "skipped": 1, "resumed_shards": 0}
    kept = (out / "shard-000000.tar").read_bytes()
    index = json.loads((out / "index.json").read_text())
    index["shards"], index["complete"] = index["shards"][:1], False  # as if killed while writing shard 1
    (out / "index.json").write_text(json.dumps(index))
    (out / "shard-000001.tar").unlink()
    again = main(args)
    assert again["resumed_shards"] == 1 and again["num_samples"] == 2 and again["skipped"] == 1
    assert (out / "shard-000000.tar").read_bytes() == kept
    assert "2 videos in 2 shard(s)" in capsys.readouterr().out


def test_image_ratio_is_chosen_per_batch(video_folder):
    items = [{"x": torch.randn(3, 5, 8, 8), "key": str(i), "cls": 0} for i in range(4)]
    assert MixedImageCollate(1.0)(items)["x"].shape == (4, 3, 1, 8, 8)
    assert MixedImageCollate(0.0)(items)["x"].shape == (4, 3, 5, 8, 8)
    torch.manual_seed(0)
    frames = [MixedImageCollate(0.5)(items)["x"].shape[2] for _ in range(40)]
    assert set(frames) == {1, 5} and 8 <= frames.count(1) <= 32
    torch.testing.assert_close(MixedImageCollate(1.0)(items)["x"][:, :, 0], torch.stack([i["x"][:, 0] for i in items]))
    module = VideoDataModule(_data(video_folder, num_frames=5, image_ratio=1.0, verify=False))
    assert next(iter(module.train_dataloader()))["x"].shape == (2, 3, 1, 32, 32)
    assert VideoDataModule(_data(video_folder, num_frames=5, verify=False)).train_collate() is None
