"""Latent cache: exact round trip, byte-identical resume, the training stream, and image labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.builder import ComponentConfig, build_autoencoder
from core.latent.cache import (
    LatentBatch, LatentCacheSettings, LatentCacheWriter, load_all_latents, make_latent_dataloader, read_latent_index,
    write_latent_cache,
)
from core.pretrained import save_pretrained
from core.training.config import DataConfig
from modalities.image.data import ImageDataModule, ImageTransform, list_images, open_image
from core.eval.selection import CacheSource
from modalities.image.latent_cache import list_cache_inputs
from modalities.image.demo import DEMO_TRAIN
from modalities.image.shards import ShardSettings, convert_folder_to_shards
from recipes.image.cache_latents import main as cache_main
from tests.conftest import tiny_config
from tests.image_folders import CLASS_FORMATS, write_class_folder

CLASSES = sorted(CLASS_FORMATS)
SIZE, BATCH = 32, 4


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory) -> Path:
    """3 classes x 3 photo crops + one unreadable file: 10 inputs, 9 latents."""
    return write_class_folder(tmp_path_factory.mktemp("classes"), per_class=3, size=(40, 36))


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory) -> dict[str, Path]:
    """Tiny f4 tokenizers (LayerNorm and KL latents) saved with save_pretrained."""
    root = tmp_path_factory.mktemp("tokenizers")
    torch.manual_seed(0)
    paths = {"layernorm": save_pretrained(build_autoencoder(tiny_config()), root / "layernorm")}
    kl = tiny_config()
    kl.regularizer = ComponentConfig("kl")
    paths["kl"] = save_pretrained(build_autoencoder(kl), root / "kl")
    return paths


def _run(tokenizer: Path, out: Path, *extra: str, data: str) -> dict:
    args = [f"tokenizer={tokenizer}", data, f"out={out}", f"size={SIZE}", f"batch_size={BATCH}", "samples_per_shard=3",
            "num_workers=0", "progress=false", *extra]
    return cache_main(args)


def _reference_latents(tokenizer: Path, data: CacheSource, labels: str, flip: bool) -> dict[int, dict[str, torch.Tensor]]:
    """Encode the images exactly like the command (same order, same batches, readable ones only)."""
    from core.pretrained import from_pretrained

    model = from_pretrained(tokenizer)
    inputs = list_cache_inputs(data, labels)
    transform = ImageTransform(SIZE, SIZE, train=False)
    images: dict[int, torch.Tensor] = {}
    for position, ref in enumerate(inputs.refs):
        try:
            images[position] = transform(open_image(ref), rng=None)
        except OSError:
            pass
    expected: dict[int, dict[str, torch.Tensor]] = {}
    with torch.no_grad():
        for first in range(0, len(inputs.refs), BATCH):
            positions = [p for p in range(first, first + BATCH) if p in images]
            x = torch.stack([images[p] for p in positions])
            views = {"": model.encode(x).latent_dist}
            if flip:
                views["_flip"] = model.encode(x.flip(-1)).latent_dist
            for i, p in enumerate(positions):
                expected[p] = {"label": torch.tensor(inputs.labels[p])}
                for suffix, dist in views.items():
                    expected[p][f"mean{suffix}"] = dist.mode()[i]
                    if dist.std is not None:
                        expected[p][f"std{suffix}"] = dist.std[i]
    return expected


# ------------------------------------------------------------------------------------------ writer
def test_round_trip_kl_with_flips_and_class_labels(tokenizers, class_folder, tmp_path, one_thread):
    summary = _run(tokenizers["kl"], tmp_path, "flip=true", data=f"data.root={class_folder}")
    assert summary["count"] == 9 and summary["num_inputs"] == 10 and summary["skipped"] == 1 and summary["shards"] == 4
    cached = load_all_latents(tmp_path)
    index = cached.index
    assert index.complete and index.has_std and index.has_flip and index.latent_shape == (4, SIZE // 4, SIZE // 4)
    assert index.num_classes == 3 and index.label_names == tuple(CLASSES) and index.dtype == "float32"
    assert (index.latent_shift, index.latent_scale) == (0.0, 1.0) and index.tokenizer_fingerprint
    expected = _reference_latents(tokenizers["kl"], CacheSource(root=str(class_folder)), "folder", flip=True)
    assert sorted(int(k[:8]) for k in cached.keys) == sorted(expected)
    for i, key in enumerate(cached.keys):
        want = expected[int(key[:8])]
        assert torch.equal(cached.mean[i], want["mean"]) and torch.equal(cached.std[i], want["std"])
        assert torch.equal(cached.mean_flip[i], want["mean_flip"]) and torch.equal(cached.std_flip[i], want["std_flip"])
        assert cached.labels[i] == want["label"]
        source_class = next(c for c in CLASSES if c in key)  # keys name the source file
        assert cached.labels[i] == CLASSES.index(source_class)
    assert not torch.equal(cached.mean, cached.mean_flip)


def test_demo_layernorm_float16_and_file_labels(tokenizers, tmp_path, one_thread):
    summary = _run(tokenizers["layernorm"], tmp_path, "labels=file", "dtype=float16", data="data.demo=true")
    cached = load_all_latents(tmp_path)
    index = cached.index
    photographs = len(DEMO_TRAIN)  # the demo cache reads the training photographs, each its own class
    assert summary["count"] == photographs and index.num_classes == photographs and not index.has_std and not index.has_flip
    assert cached.std is None and cached.mean_flip is None and index.dtype == "float16"
    assert sorted(index.label_names) == list(index.label_names) and len(set(cached.labels.tolist())) == photographs
    expected = _reference_latents(tokenizers["layernorm"], CacheSource(demo=True), "file", flip=False)
    for i, key in enumerate(cached.keys):
        want = expected[int(key[:8])]
        assert torch.equal(cached.mean[i], want["mean"].half().float()) and cached.labels[i] == want["label"]


def test_interrupted_run_resumes_byte_identical_and_refuses_other_settings(tokenizers, class_folder, tmp_path, one_thread):
    data = f"data.root={class_folder}"
    _run(tokenizers["kl"], tmp_path / "full", data=data)
    first = _run(tokenizers["kl"], tmp_path / "resumed", "max_shards=2", data=data)
    assert not first["complete"] and first["shards"] == 2
    assert not list((tmp_path / "resumed").glob(".*.tmp"))
    second = _run(tokenizers["kl"], tmp_path / "resumed", data=data)
    assert second["complete"] and second["resumed_shards"] == 2 and second["written_shards"] == 2
    assert second["encoded_images"] <= 10 - 4  # resumed on the batch grid at position 4: done shards not re-encoded
    names = sorted(p.name for p in (tmp_path / "full").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "resumed").iterdir()) and "latents-000003.tar" in names
    for name in names:
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name
    done = _run(tokenizers["kl"], tmp_path / "resumed", data=data)
    assert done["complete"] and done["written_shards"] == 0 and done["encoded_images"] == 0
    with pytest.raises(FileExistsError, match="different settings.*size|transform"):
        _run(tokenizers["kl"], tmp_path / "resumed", "size=16", data=data)
    with pytest.raises(FileExistsError, match="tokenizer"):
        _run(tokenizers["layernorm"], tmp_path / "resumed", data=data)
    again = _run(tokenizers["kl"], tmp_path / "resumed", "size=16", "overwrite=true", data=data)
    assert again["complete"] and again["latent_shape"] == [4, 4, 4]


def _synthetic_batches(count: int, batch: int, fail_after: int | None = None, std: bool = True, flip: bool = True):
    """Sample i has mean = i, std = 0.5, flipped mean = -i - 0.5 and label i (shape (2, 4, 4))."""
    for n, first in enumerate(range(0, count, batch)):
        if fail_after is not None and n == fail_after:
            raise RuntimeError("simulated crash")
        ids = torch.arange(first, min(first + batch, count))
        mean = ids.float().view(-1, 1, 1, 1).expand(-1, 2, 4, 4).clone()
        yield LatentBatch(
            keys=[f"sample{i:04d}" for i in ids.tolist()], labels=ids, mean=mean,
            std=torch.full_like(mean, 0.5) if std else None, mean_flip=-mean - 0.5 if flip else None,
            std_flip=torch.full_like(mean, 0.5) if std and flip else None,
        )


def test_crash_mid_shard_keeps_complete_shards_and_resume_matches(tmp_path):
    settings = LatentCacheSettings(samples_per_shard=7, source={"what": "synthetic"})
    write_latent_cache(tmp_path / "full", _synthetic_batches(30, 4), settings, num_inputs=30)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_latent_cache(tmp_path / "crashed", _synthetic_batches(30, 4, fail_after=5), settings, num_inputs=30)
    assert sorted(p.name for p in (tmp_path / "crashed").glob("latents-*")) == ["latents-000000.tar", "latents-000001.tar"]
    assert not list((tmp_path / "crashed").glob(".*.tmp")) and not read_latent_index(tmp_path / "crashed").complete
    writer = LatentCacheWriter(tmp_path / "crashed", settings, num_inputs=30)
    assert writer.resume_position == 14
    result = writer.write(_synthetic_batches(30, 4), start=0)
    assert result.complete and result.count == 30 and result.resumed_shards == 2 and result.num_shards == 5
    for path in sorted((tmp_path / "full").iterdir()):
        assert path.read_bytes() == (tmp_path / "crashed" / path.name).read_bytes(), path.name
    with pytest.raises(FileExistsError, match="samples_per_shard"):
        LatentCacheWriter(tmp_path / "crashed", LatentCacheSettings(samples_per_shard=8, source={"what": "synthetic"}), num_inputs=30)


# ------------------------------------------------------------------------------------------ reader
@pytest.fixture(scope="module")
def synthetic_caches(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    kl = write_latent_cache(root / "kl", _synthetic_batches(40, 8), LatentCacheSettings(samples_per_shard=8), num_inputs=40,
                            num_classes=40)
    ln = write_latent_cache(root / "ln", _synthetic_batches(40, 8, std=False), LatentCacheSettings(samples_per_shard=8),
                            num_inputs=40, num_classes=40)
    return {"kl": kl.out_dir, "ln": ln.out_dir}


def _draws(path: Path, epochs: int = 2, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    loader = make_latent_dataloader(path, 8, shuffle_buffer=10, **kwargs)
    zs, labels = [], []
    for _ in range(epochs):
        for batch in loader:
            zs.append(batch["z"])
            labels.append(batch["label"])
    return torch.cat(zs), torch.cat(labels)


def test_stream_batches_shapes_and_epoch_length(synthetic_caches):
    loader = make_latent_dataloader(synthetic_caches["kl"], 8, shuffle_buffer=10)
    assert len(loader) == 5
    batches = list(loader)
    assert len(batches) == 5
    for batch in batches:
        assert batch["z"].shape == (8, 2, 4, 4) and batch["z"].dtype == torch.float32
        assert batch["label"].shape == (8,) and batch["label"].dtype == torch.long
    two_ranks = make_latent_dataloader(synthetic_caches["kl"], 8, rank=1, world_size=2)
    assert len(two_ranks) == 3  # ceil(40 / (2 ranks x 8))


def test_ranks_and_workers_read_different_streams(synthetic_caches):
    _, rank0 = _draws(synthetic_caches["ln"], epochs=1, rank=0, world_size=2)
    _, rank1 = _draws(synthetic_caches["ln"], epochs=1, rank=1, world_size=2)
    _, rank0_again = _draws(synthetic_caches["ln"], epochs=1, rank=0, world_size=2)
    assert torch.equal(rank0, rank0_again) and not torch.equal(rank0, rank1)
    loader = make_latent_dataloader(synthetic_caches["ln"], 4, num_workers=2, shuffle_buffer=4)
    batches = [b["label"] for b in loader]  # DataLoader alternates workers: batch 0 from worker 0, batch 1 from worker 1
    assert len(batches) == 10 and not torch.equal(batches[0], batches[1])


def test_posterior_samples_and_flips(synthetic_caches):
    z, labels = _draws(synthetic_caches["kl"], epochs=3)
    mean = labels.float().view(-1, 1, 1, 1)
    # each draw is centred on either its mean or its flipped mean; the residual is N(0, 0.5^2)
    residual_plain, residual_flip = z - mean, z - (-mean - 0.5)
    flip = residual_flip.abs().flatten(1).mean(1) < residual_plain.abs().flatten(1).mean(1)
    assert 0 < int(flip.sum()) < len(flip)
    residual = torch.where(flip.view(-1, 1, 1, 1), residual_flip, residual_plain)
    assert not torch.any(residual == 0)
    assert 0.8 < float((residual / 0.5).square().mean()) < 1.2
    z, labels = _draws(synthetic_caches["kl"], epochs=1, sample_posterior=False, random_flip=False)
    assert torch.equal(z, labels.float().view(-1, 1, 1, 1).expand_as(z))


def test_deterministic_latents_ignore_sample_posterior_and_flip_both_ways(synthetic_caches):
    z, labels = _draws(synthetic_caches["ln"], epochs=3, sample_posterior=True)
    mean = labels.float().view(-1, 1, 1, 1).expand_as(z)
    is_plain = (z == mean).flatten(1).all(1)
    is_flip = (z == -mean - 0.5).flatten(1).all(1)
    assert torch.all(is_plain | is_flip) and 0 < int(is_flip.sum()) < len(z)


# ------------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("mode", ["folder", "file", "none"])
def test_folder_datamodule_labels(class_folder, mode):
    options = {"resize": 32, "verify": True} | ({} if mode == "folder" else {"labels": mode})
    dm = ImageDataModule(DataConfig(root=str(class_folder), size=32, batch_size=2, num_workers=0, holdout=3, options=options))
    files = list_images(class_folder)
    for dataset in (dm.train_dataset(), dm.eval_dataset()):
        for i, path in enumerate(dataset.files):
            item = dataset[i]
            want = {"folder": CLASSES.index(path.parent.name), "file": files.index(path), "none": 0}[mode]
            assert item["cls"] == want and item["key"] == path.stem
    if mode == "folder":
        assert dm.class_names == CLASSES
    if mode == "file":
        assert len(dm.class_names) == len(files)


def test_flat_folder_is_one_class_and_bad_mode_is_refused(demo_dir):
    dm = ImageDataModule(DataConfig(root=str(demo_dir / "train"), size=32, batch_size=2, num_workers=0, options={"verify": False}))
    dataset = dm.train_dataset()
    assert {dataset[i]["cls"] for i in range(len(dataset.files))} == {0} and dm.class_names == [""]
    with pytest.raises(ValueError, match="labels"):
        ImageDataModule(DataConfig(root=str(demo_dir), size=32, batch_size=2, options={"labels": "folders"}))


def test_shard_inputs_keep_stored_labels_and_class_names(class_folder, tmp_path):
    convert_folder_to_shards(class_folder, tmp_path, ShardSettings(shard_size=4), progress=False)
    inputs = list_cache_inputs(CacheSource(shards=str(tmp_path)))
    assert len(inputs.refs) == 9 and inputs.label_names == CLASSES and len(set(inputs.keys)) == 9
    for ref, key, label in zip(inputs.refs, inputs.keys, inputs.labels):
        assert label == ref.label and CLASSES[label] in key and "." not in key
    assert inputs.digest == list_cache_inputs(CacheSource(shards=str(tmp_path))).digest
    assert inputs.digest != list_cache_inputs(CacheSource(shards=str(tmp_path)), shuffle=False).digest
    with pytest.raises(ValueError, match="exactly one"):
        list_cache_inputs(CacheSource(shards=str(tmp_path), demo=True))
