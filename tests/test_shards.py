"""webdataset shards: folder conversion (bytes, labels, resume) and the streaming training path."""

from __future__ import annotations

import json
import random
import tarfile
from pathlib import Path

import pytest
import torch

from core.training.config import DataConfig
from core.data.datamodule import ShardSampleDecoder
from core.data.sources import expand_shards, list_shard_members
from core.data.stream import make_shard_stream, plan_epoch
from modalities.image.data import SHARD_IMAGE_EXTENSIONS, ImageDataModule, ImageTransform, open_image, open_image_bytes
from modalities.image.shards import ShardSettings, convert_folder_to_shards, read_shard_index
from tests.image_folders import CLASS_FORMATS, write_class_folder

CLASSES = sorted(CLASS_FORMATS)


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory) -> Path:
    return write_class_folder(tmp_path_factory.mktemp("classes"))


@pytest.fixture(scope="module")
def shard_dir(class_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    convert_folder_to_shards(class_folder, out, ShardSettings(shard_size=4, seed=3), progress=False)
    return out


def _tar_samples(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for info in tar:
            key, _, ext = info.name.partition(".")
            samples.setdefault(key, {})[ext] = tar.extractfile(info).read()
    return samples


def test_conversion_keeps_original_bytes_and_labels(class_folder, shard_dir):
    index = read_shard_index(shard_dir)
    assert index["complete"] and index["num_samples"] == 15 and index["num_skipped"] == 1
    assert index["classes"] == CLASSES and index["class_counts"] == {c: 5 for c in CLASSES}
    assert "broken.jpg" in next(iter(index["skipped_examples"]))
    shards = sorted(shard_dir.glob("shard-*.tar"))
    assert [s.name for s in shards] == [f"shard-{i:06d}.tar" for i in range(4)]
    assert [r["count"] for r in index["shards"]] == [4, 4, 4, 3]
    originals = {p.read_bytes(): p for p in class_folder.rglob("*_*.*")}
    seen = set()
    for shard in shards:
        for key, members in _tar_samples(shard).items():
            assert "." not in key and set(members) >= {"cls"}
            ext = next(e for e in members if e != "cls")
            source = originals[members[ext]]  # bytes unchanged: KeyError otherwise
            assert ext == source.suffix.lstrip(".")
            assert int(members["cls"]) == CLASSES.index(source.parent.name)
            seen.add(source)
    assert len(seen) == 15
    # shuffled with the seed: the first shard mixes classes
    first = list_shard_members([str(shards[0])], SHARD_IMAGE_EXTENSIONS)
    assert len({m.label for m in first}) > 1


def test_max_size_splits_by_bytes(class_folder, tmp_path):
    total = sum(p.stat().st_size for p in class_folder.rglob("*_*.*"))
    limit_mb = total / 5 / 2**20
    convert_folder_to_shards(class_folder, tmp_path, ShardSettings(shard_size=100, max_size_mb=limit_mb), progress=False)
    records = read_shard_index(tmp_path)["shards"]
    assert len(records) >= 5 and sum(r["count"] for r in records) == 15
    assert all(r["bytes"] <= limit_mb * 2**20 or r["count"] == 1 for r in records)


def test_interrupted_conversion_resumes(class_folder, shard_dir, tmp_path):
    convert_folder_to_shards(class_folder, tmp_path, ShardSettings(shard_size=4, seed=3), progress=False)
    original = (tmp_path / "shard-000003.tar").read_bytes()
    index = read_shard_index(tmp_path)
    index["shards"], index["complete"] = index["shards"][:2], False  # as if killed while writing shard 2
    (tmp_path / "index.json").write_text(json.dumps(index))
    for name in ("shard-000002.tar", "shard-000003.tar"):
        (tmp_path / name).unlink()
    (tmp_path / ".shard-000002.tar.tmp").write_bytes(b"partial")
    result = convert_folder_to_shards(class_folder, tmp_path, ShardSettings(shard_size=4, seed=3), progress=False)
    assert result.resumed_shards == 2 and result.num_samples == 15 and result.num_skipped == 1
    assert (tmp_path / "shard-000003.tar").read_bytes() == original  # deterministic shards
    assert (tmp_path / "shard-000003.tar").read_bytes() == (shard_dir / "shard-000003.tar").read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(FileExistsError, match="different settings"):
        convert_folder_to_shards(class_folder, tmp_path, ShardSettings(shard_size=5, seed=3), progress=False)


def test_expand_shards_forms(shard_dir):
    listed = sorted(str(p) for p in shard_dir.glob("shard-*.tar"))
    assert expand_shards(f"{shard_dir}/shard-{{000000..000003}}.tar") == listed
    assert expand_shards(str(shard_dir)) == listed
    assert expand_shards(listed[:2]) == listed[:2]
    assert expand_shards(f"{listed[0]}::{listed[3]}") == [listed[0], listed[3]]
    with pytest.raises(FileNotFoundError, match="do not exist"):
        expand_shards(f"{shard_dir}/shard-{{000000..000009}}.tar")


def test_stream_uses_the_folder_train_transform(shard_dir, class_folder):
    member = list_shard_members([str(shard_dir / "shard-000000.tar")], SHARD_IMAGE_EXTENSIONS)[0]
    ext = next(e for e in _tar_samples(Path(member.shard))[member.key] if e != "cls")
    sample = {"__key__": member.key, ext: member.read_bytes(), "cls": str(member.label).encode()}
    transform = ImageTransform(32, 40, train=True)
    for seed in range(4):  # random crops and flips drawn identically from the same generator
        streamed = ShardSampleDecoder(open_image_bytes, SHARD_IMAGE_EXTENSIONS, transform)(random.Random(seed))(sample)
        expected = transform(open_image(member), random.Random(seed))
        assert torch.equal(streamed["x"], expected) and streamed["cls"] == member.label


def _shard_datamodule(spec: str, workers: int, **options) -> ImageDataModule:
    cfg = DataConfig(shards=spec, size=32, batch_size=4, num_workers=workers,
                     options={"resize": 40, "samples_per_epoch": 16, "shuffle_buffer": 4, **options})
    return ImageDataModule(cfg, seed=0, batch_size=4)


def test_streaming_datamodule_batches(shard_dir):
    dm = _shard_datamodule(f"{shard_dir}/shard-{{000000..000003}}.tar", workers=0)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    for batch in batches:
        x = batch["x"]
        assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and -1 <= x.min() < x.max() <= 1
        for key, label in zip(batch["key"], batch["cls"].tolist()):
            assert CLASSES[label] in key  # keys name the source file, which lives in its class folder
    assert len(list(loader)) == 4  # a second epoch of the infinite stream
    preview = dm.preview_batch(2)  # no data.root: previews come from the first shard
    assert preview.shape == (2, 3, 32, 32)


def test_streaming_resamples_across_two_workers(shard_dir):
    dm = _shard_datamodule(str(shard_dir), workers=2, samples_per_epoch=32)
    positions = {r["name"]: range(r["start"], r["end"]) for r in read_shard_index(shard_dir)["shards"]}
    shards_seen, per_worker_keys = set(), []
    loader = dm.train_dataloader()
    for batch in loader:
        keys = list(batch["key"])
        per_worker_keys.append(keys)
        for key in keys:
            position = int(key.split("_")[0])
            shards_seen.update(name for name, span in positions.items() if position in span)
    assert len(per_worker_keys) == len(loader) == 8
    assert len(shards_seen) >= 2
    assert per_worker_keys[0] != per_worker_keys[1]  # workers are seeded differently


def test_ranks_draw_different_reproducible_streams(shard_dir):
    urls = expand_shards(str(shard_dir))
    plan = plan_epoch(8, batch_size=4, num_workers=0, world_size=2)
    assert (plan.samples_per_worker, plan.batches_per_rank) == (4, 1)

    def keys(rank: int) -> list[str]:  # three epochs: one shard draw per epoch could coincide by chance
        decoder = ShardSampleDecoder(open_image_bytes, SHARD_IMAGE_EXTENSIONS, ImageTransform(32, 40))
        stream = make_shard_stream(urls, decoder, plan, seed=5, shuffle_buffer=1, rank=rank)
        return [s["key"] for _ in range(3) for s in stream]

    assert keys(0) == keys(0) and keys(0) != keys(1) and len(keys(1)) == 12


def test_shards_with_eval_folder(shard_dir, class_folder):
    cfg = DataConfig(shards=str(shard_dir), root=str(class_folder), size=32, batch_size=4, num_workers=0, holdout=6,
                     options={"resize": 40, "samples_per_epoch": 8})
    dm = ImageDataModule(cfg, seed=0, batch_size=4)
    names = [Path(f).parent.name for f in dm.eval_dataset().files]
    assert len(names) == 6 and sorted(set(names)) == CLASSES  # stratified over the class folders
    assert dm.preview_batch(3).shape == (3, 3, 32, 32)


def test_lightning_trains_from_shards_across_epochs(shard_dir, tmp_path):
    from core.training.config import ExperimentConfig, OptimConfig, TrainerConfig
    from core.training.run import train
    from tests.conftest import tiny_config

    cfg = ExperimentConfig(
        name="shards", output_dir=str(tmp_path / "run"), model=tiny_config(),
        data=DataConfig(shards=str(shard_dir), size=16, batch_size=4, num_workers=0,
                        options={"resize": 24, "samples_per_epoch": 8, "shuffle_buffer": 4}),
        optim=OptimConfig(lr=1e-3),
        trainer=TrainerConfig(max_steps=3, accelerator="cpu", devices=1, log_every_n_steps=1, checkpoint_every_n_steps=10,
                              preview_every_n_steps=0, progress_bar=False),
    )
    result = train(cfg)  # 2 batches per epoch: step 3 runs in the second epoch of the stream
    assert result.global_step == 3 and (result.export_dir / "model.safetensors").is_file()


def test_make_shards_command_with_reader_processes(class_folder, tmp_path, capsys):
    from recipes.image.make_shards import main

    main([f"root={class_folder}", f"out={tmp_path}", "shard_size=5", "workers=2", "progress=false"])
    assert "15 images in 3 shard(s)" in capsys.readouterr().out
    index = read_shard_index(tmp_path)
    assert index["num_samples"] == 15 and index["num_skipped"] == 1 and index["pattern"] == "shard-{000000..000002}.tar"
    with pytest.raises(SystemExit, match="root=FOLDER and out=DIR"):
        main([f"root={class_folder}"])
