"""core/data with a NON-image toy sample type (text files of numbers): shards, streams, skips, resume,
verify, subsets, holdout, typed options and the generic datamodule."""

from __future__ import annotations

import json
import logging
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from core.data.datamodule import DataSpec, SampleDataModule, ShardSampleDecoder
from core.data.folder_shards import FolderShardFormat, ShardSettings, convert_folder_to_shards, read_shard_index
from core.data.options import SampleDataOptions, parse_options
from core.data.shard_writer import TarShard, verify_shard_dir
from core.data.sources import expand_shards, list_files, list_shard_members
from core.data.stream import DecodeStage, make_shard_stream, plan_epoch
from core.data.subset import holdout_split, stratified_subset
from core.training.config import DataConfig

CLASSES = ["high", "low"]
log = logging.getLogger("difftok.toy")


def parse_numbers(data: bytes) -> torch.Tensor:
    """Toy decoder: ``b"1 2 3 4"`` -> ``(1, 4)`` float; anything else raises ValueError."""
    values = [float(v) for v in data.decode("ascii").split()]
    if len(values) != 4:
        raise ValueError(f"expected 4 numbers, got {len(values)}")
    return torch.tensor(values).view(1, 4)


def check_numbers(data: bytes, mode: str) -> None:
    parse_numbers(data)


def open_numbers(ref) -> torch.Tensor:
    return parse_numbers(ref.read_bytes())


TOY_SHARDS = FolderShardFormat(noun="vector", index_format="toy-shards", extensions=(".txt",), check=check_numbers, logger=log)


@dataclass(frozen=True)
class ToyOptions(SampleDataOptions):
    scale: float = 1.0
    reverse: bool = False


@dataclass(frozen=True)
class ToyTransform:
    """Multiplies by ``scale`` and reverses with p = 0.5 when ``reverse`` (so the rng matters)."""

    scale: float
    reverse: bool

    def __call__(self, sample: torch.Tensor, rng: random.Random) -> torch.Tensor:
        x = sample * self.scale
        return x.flip(-1) if self.reverse and rng.random() < 0.5 else x

    def for_cache(self, sample: torch.Tensor) -> torch.Tensor:
        return sample


TOY_DATA = DataSpec(
    noun="vector", extensions=(".txt",), shard_extensions=("txt",), open_ref=open_numbers, open_bytes=parse_numbers,
    check=lambda ref: parse_numbers(ref.read_bytes()), options_type=ToyOptions,
    train_transform=lambda o, cfg: ToyTransform(o.scale, o.reverse), eval_transform=lambda o, cfg: ToyTransform(o.scale, False), logger=log,
)


@pytest.fixture()
def toy_folder(tmp_path) -> Path:
    """``high/`` and ``low/`` with 6 vectors each, plus ``low/broken.txt`` (not 4 numbers)."""
    root = tmp_path / "vectors"
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(6):
            (root / name / f"v{i}.txt").write_text(" ".join(str(10 * (1 - c) + i + k) for k in range(4)))
    (root / "low" / "broken.txt").write_text("1 2 oops")
    return root


def _tar_names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def test_folder_to_shards_stream_back_and_labels(toy_folder, tmp_path):
    result = convert_folder_to_shards(toy_folder, tmp_path / "s", TOY_SHARDS, ShardSettings(shard_size=5, seed=1), progress=False)
    assert (result.num_samples, result.num_skipped, result.classes) == (12, 1, CLASSES)
    assert "broken.txt" in next(iter(result.skipped))
    index = read_shard_index(tmp_path / "s")
    assert index["format"] == "toy-shards" and index["class_counts"] == {"high": 6, "low": 6} and verify_shard_dir(tmp_path / "s") == []
    members = list_shard_members(expand_shards(str(tmp_path / "s")), ("txt",))
    assert len(members) == 12 and {m.label for m in members} == {0, 1}
    for m in members:  # the stored bytes are the original file's, and the label its class folder
        value = parse_numbers(m.read_bytes())
        assert (value[0, 0] >= 10) == (m.label == 0)

    decoder = ShardSampleDecoder(parse_numbers, ("txt",), ToyTransform(2.0, False))
    stream = make_shard_stream(expand_shards(str(tmp_path / "s")), decoder, plan_epoch(8, 4, 0, 1), seed=3, shuffle_buffer=4)
    items = list(stream)
    assert len(items) == 8 and all(it["x"].shape == (1, 4) for it in items)
    assert all((it["x"][0, 0] >= 20) == (it["cls"] == 0) for it in items)  # scaled by 2; label matches the class
    again = make_shard_stream(expand_shards(str(tmp_path / "s")), decoder, plan_epoch(8, 4, 0, 1), seed=3, shuffle_buffer=4)
    assert [it["key"] for it in again] == [it["key"] for it in items]  # a fresh stream repeats epoch 0
    assert [it["key"] for it in stream] != [it["key"] for it in items]  # the next epoch draws anew


def test_decode_stage_skips_and_counts_corrupt_members(caplog):
    decoder = ShardSampleDecoder(parse_numbers, ("txt",), ToyTransform(1.0, False))
    good = [{"__key__": f"k{i}", "txt": f"{i} 1 2 3".encode(), "cls": b"1"} for i in range(5)]
    samples = good[:2] + [{"__key__": "bad", "txt": b"not numbers"}, {"__key__": "empty"}] + good[2:]
    stage = DecodeStage(decoder, shuffle_buffer=1, logger=log)
    with caplog.at_level("WARNING", logger="difftok.toy"):
        items = list(stage(samples))
    assert [it["key"] for it in items] == [f"k{i}" for i in range(5)]
    assert stage.skips.count == 2 and "bad from ?" in stage.skips and "empty from ?" in stage.skips
    assert "skipping unreadable shard sample bad" in caplog.text


def test_interrupted_conversion_resumes_byte_identical_and_refuses_other_settings(toy_folder, tmp_path):
    settings = ShardSettings(shard_size=4, seed=2)
    convert_folder_to_shards(toy_folder, tmp_path / "a", TOY_SHARDS, settings, progress=False)
    out = tmp_path / "b"
    convert_folder_to_shards(toy_folder, out, TOY_SHARDS, settings, progress=False)
    index = read_shard_index(out)
    index["shards"], index["complete"] = index["shards"][:1], False  # as if killed while writing shard 1
    (out / "index.json").write_text(json.dumps(index))
    for path in sorted(out.glob("shard-*.tar"))[1:]:
        path.unlink()
    (out / ".shard-000001.tar.tmp").write_bytes(b"partial")
    result = convert_folder_to_shards(toy_folder, out, TOY_SHARDS, settings, progress=False)
    assert result.resumed_shards == 1 and result.num_samples == 12 and not list(out.glob(".*.tmp"))
    for path in sorted((tmp_path / "a").glob("*.tar")):
        assert (out / path.name).read_bytes() == path.read_bytes()
    with pytest.raises(FileExistsError, match="different settings"):
        convert_folder_to_shards(toy_folder, out, TOY_SHARDS, ShardSettings(shard_size=3, seed=2), progress=False)
    assert convert_folder_to_shards(toy_folder, out, TOY_SHARDS, ShardSettings(shard_size=3), progress=False, overwrite=True).num_samples == 12


def test_verify_reports_truncated_and_missing_shards(toy_folder, tmp_path):
    convert_folder_to_shards(toy_folder, tmp_path, TOY_SHARDS, ShardSettings(shard_size=4), progress=False)
    first, second = sorted(tmp_path.glob("shard-*.tar"))[:2]
    first.write_bytes(first.read_bytes()[:700])
    second.unlink()
    problems = verify_shard_dir(tmp_path)
    assert len(problems) == 2 and first.name in problems[0] and second.name in problems[1]
    assert verify_shard_dir(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'} has no index.json"]


def test_tar_shard_members_are_reproducible_and_keys_checked(tmp_path):
    for name in ("a", "b"):
        shard = TarShard(tmp_path / f"{name}.tar")
        shard.add("k0", [("txt", b"1 2 3 4"), ("cls", b"0")])
        assert shard.commit() == f"{name}.tar"
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()  # no timestamps or owners
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert [(i.name, i.mtime, i.uid, i.mode) for i in tar] == [("k0.txt", 0, 0, 0o444), ("k0.cls", 0, 0, 0o444)]
    shard = TarShard(tmp_path / "c.tar")
    with pytest.raises(ValueError, match="no '.'"):
        shard.add("k.0", [("txt", b"")])
    shard.discard()
    assert not list(tmp_path.glob(".*"))


def test_stratified_subset_and_holdout_split():
    labels = ["a"] * 10 + ["b"] * 10 + ["c"] * 2
    chosen = stratified_subset(labels, 9, seed=4)
    assert len(chosen) == len(set(chosen)) == 9 and {labels[i] for i in chosen[:3]} == {"a", "b", "c"}
    assert stratified_subset(labels, 12, seed=4)[:9] == chosen and stratified_subset(labels, 9, seed=5) != chosen
    train, held = holdout_split(22, 5, seed=1)
    assert len(held) == 5 and sorted(train + held) == list(range(22)) and held == sorted(held)
    assert holdout_split(22, 5, seed=1) == (train, held) and holdout_split(22, 5, seed=2)[1] != held


def test_typed_options_refuse_unknown_keys_and_wrong_types():
    assert parse_options(ToyOptions, {"scale": 3, "reverse": "true", "cache": True}) == ToyOptions(scale=3.0, reverse=True, cache=True)
    with pytest.raises(ValueError, match=r"unknown data.options key\(s\) \['scael'\]; valid keys: .*'scale'"):
        parse_options(ToyOptions, {"scael": 2})
    with pytest.raises(TypeError, match="data.options.samples_per_epoch='many' must be int"):
        parse_options(ToyOptions, {"samples_per_epoch": "many"})
    with pytest.raises(TypeError, match="verify=1 must be bool"):
        parse_options(ToyOptions, {"verify": 1})
    with pytest.raises(ValueError, match="labels='folders'"):
        parse_options(ToyOptions, {"labels": "folders"})


def test_generic_datamodule_on_a_toy_folder(toy_folder, caplog):
    cfg = DataConfig(root=str(toy_folder), size=4, batch_size=4, num_workers=0, holdout=3, options={"scale": 0.5, "reverse": True})
    with caplog.at_level("WARNING", logger="difftok.toy"):
        dm = SampleDataModule(cfg, TOY_DATA, seed=0)
    assert "skipped 1 unreadable vector file(s)" in caplog.text and list(dm.skipped)[0].endswith("broken.txt")
    assert len(dm.train_files) + len(dm.val_files) == 12 and len(dm.val_files) == 3 and dm.class_names == CLASSES
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (4, 1, 4)
    by_stem = {f"{f.parent.name}/{f.stem}": f for f in dm.train_files}
    for x, key, label in zip(batch["x"], batch["key"], batch["cls"].tolist()):
        source = by_stem[f"{CLASSES[label]}/{key}"]  # the label is the file's class folder
        assert torch.equal(x, open_numbers(source) * 0.5) or torch.equal(x, (open_numbers(source) * 0.5).flip(-1))
    preview = dm.preview_batch(3)
    assert torch.equal(preview, torch.stack([open_numbers(f) * 0.5 for f in dm.val_files]))  # eval: no reversal
    listed = list_files(toy_folder, (".TXT",), "vector")  # suffixes match case-insensitively; sorted paths
    assert len(listed) == 13 and listed == sorted(listed)
    with pytest.raises(FileNotFoundError, match=r"no vectors \(.npy\) found under"):
        list_files(toy_folder, (".npy",), "vector")
    with pytest.raises(ValueError, match="valid keys"):
        SampleDataModule(DataConfig(root=str(toy_folder), options={"resize": 3}), TOY_DATA)
