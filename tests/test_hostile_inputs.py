"""Inputs a hostile (or unlucky) user gives difftok, and the one answer each must get.

Data: a decompression bomb, truncated files, dangling links, symlink loops and unreadable files and
folders are skipped, counted and reported (folder datasets, the setup scan, shard conversion, shard
streams, evaluation loaders). API: bad ``num_steps``, non-float or numpy inputs, far-out-of-range
values and bad explicit noise get an :class:`InputError` (or a warning) naming the fix. Files: broken
``config.json`` / weights name the file; exports honour the umask.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import InputError, build_autoencoder, from_pretrained, save_pretrained
from core.data.datamodule import ShardSampleDecoder
from core.data.skips import UnreadableSampleError
from core.data.sources import expand_shards, list_shard_members
from core.data.stream import DecodeStage
from core.eval.samples import LoadedSamples
from core.fileio import atomic_output
from core.interop.diffusers import DiffusersVAE
from core.latent.stats import LatentStats
from core.pretrained import CorruptFileError, write_latent_stats
from core.training.config import DataConfig
from core.weight_files import load_tensor_file
from modalities.image.data import SHARD_IMAGE_EXTENSIONS, ImageDataModule, ImageTransform, open_image, open_image_bytes
from modalities.image.demo import export_demo_dataset
from modalities.image.eval_suite import CenterCropLoader
from modalities.image.shards import ShardSettings, convert_folder_to_shards
from tests.conftest import tiny_config

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROOT_REASON = "running as root: permission bits do not stop root, so a chmod-000 file or folder stays readable"
BOMB_LIMIT = 1000  # Image.MAX_IMAGE_PIXELS in these tests: Pillow refuses images over 2x this


def _png(side: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def bomb_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", BOMB_LIMIT)


@pytest.fixture
def hostile_folder(tmp_path, bomb_limit) -> Path:
    """4 good 24x24 PNGs, a decompression bomb, a truncated PNG, a dangling link, a self-link and a
    folder link back to the root."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        (root / f"good_{i}.png").write_bytes(_png(24, i))
    (root / "bomb.png").write_bytes(_png(64, 9))  # 4096 pixels > 2 x BOMB_LIMIT
    (root / "truncated.png").write_bytes(_png(24, 5)[:60])
    os.symlink(root / "missing.png", root / "dangling.png")
    os.symlink(root / "loop.png", root / "loop.png")
    os.symlink(root, root / "sub" / "up")
    return root


def _image_data(root: Path, verify: bool) -> ImageDataModule:
    cfg = DataConfig(root=str(root), size=16, batch_size=2, num_workers=0, holdout=0, options={"resize": 16, "verify": verify})
    return ImageDataModule(cfg, seed=0, batch_size=2)


LISTING_PROBLEMS = {"dangling.png": "dangling symlink", "loop.png": "symlink loop", "up": "symlink loop"}


def _assert_listing_problems(skipped: dict[str, str]) -> None:
    by_name = {Path(k).name: v for k, v in skipped.items()}
    for name, reason in LISTING_PROBLEMS.items():
        assert reason in by_name[name], (name, by_name.get(name))


# ----------------------------------------------------------------------------------------------- data
def test_folder_without_verify_skips_and_counts_every_bad_file(hostile_folder):
    dm = _image_data(hostile_folder, verify=False)
    assert len(dm.skipped) == 3  # found while listing
    _assert_listing_problems(dm.skipped)
    assert sorted(Path(f).name for f in dm.train_files) == ["bomb.png", "good_0.png", "good_1.png", "good_2.png", "good_3.png",
                                                            "truncated.png"]
    dataset = dm.train_dataset()
    items = [dataset[i] for i in range(len(dataset))]  # no DecompressionBombError escapes
    assert all(item["x"].shape == (3, 16, 16) for item in items)
    reasons = {Path(k).name: v for k, v in dataset.skipped.items()}
    assert dataset.skips.count == 2 and set(reasons) == {"bomb.png", "truncated.png"}
    assert "DecompressionBombError" in reasons["bomb.png"] and "MAX_IMAGE_PIXELS" in reasons["bomb.png"]


def test_setup_scan_skips_the_bomb_and_the_truncated_file(hostile_folder):
    dm = _image_data(hostile_folder, verify=True)
    assert sorted(Path(f).name for f in dm.train_files) == [f"good_{i}.png" for i in range(4)]
    by_name = {Path(k).name: v for k, v in dm.skipped.items()}
    assert len(by_name) == 5 and "DecompressionBombError" in by_name["bomb.png"] and "truncated.png" in by_name
    _assert_listing_problems(dm.skipped)


def test_shard_conversion_counts_bad_files_and_listing_problems(hostile_folder, tmp_path):
    result = convert_folder_to_shards(hostile_folder, tmp_path / "shards", ShardSettings(shard_size=10), progress=False)
    assert result.num_samples == 4 and result.num_skipped == 5
    assert "DecompressionBombError" in next(v for k, v in result.skipped.items() if k.endswith("bomb.png"))
    _assert_listing_problems(result.skipped)


def test_bomb_inside_a_shard_is_skipped_when_streamed_and_when_read_map_style(hostile_folder, tmp_path):
    out = tmp_path / "shards"
    convert_folder_to_shards(hostile_folder, out, ShardSettings(shard_size=10, verify="none", shuffle=False), progress=False)
    cfg = DataConfig(shards=str(out), size=16, batch_size=2, num_workers=0, options={"resize": 16, "samples_per_epoch": 12,
                                                                                    "shuffle_buffer": 1})
    dm = ImageDataModule(cfg, seed=0, batch_size=2)
    # map-style evaluation files from the first shard: the setup scan drops the bomb and the truncated member
    assert len(dm.val_files) == 4 and sum(k.endswith("_bomb") for k in dm.skipped) == 1
    stream = dm.train_dataset()
    items = list(stream)
    stage = stream.stage
    assert items and all(it["x"].shape == (3, 16, 16) for it in items)
    assert stage.skips.count >= 2 and any("DecompressionBombError" in r for r in stage.skips.reasons.values())
    bomb = next(m for m in list_shard_members(expand_shards(str(out)), SHARD_IMAGE_EXTENSIONS) if m.key.endswith("_bomb"))
    with pytest.raises(UnreadableSampleError, match="DecompressionBombError"):
        open_image(bomb)


def test_stream_stage_skips_a_bomb(bomb_limit):
    stage = DecodeStage(ShardSampleDecoder(open_image_bytes, SHARD_IMAGE_EXTENSIONS, ImageTransform(16, 16)), shuffle_buffer=1)
    samples = [{"__key__": "good", "png": _png(24, 0)}, {"__key__": "bomb", "png": _png(64, 1)}]
    assert [it["key"] for it in stage(samples)] == ["good"] and stage.skips.count == 1
    with pytest.raises(UnreadableSampleError, match="DecompressionBombError"):
        open_image_bytes(_png(64, 1))


def test_evaluation_loader_counts_a_bomb(hostile_folder):
    loaded = LoadedSamples([hostile_folder / "good_0.png", hostile_folder / "bomb.png"], CenterCropLoader(16))
    assert loaded[0]["x"].shape == (3, 16, 16) and loaded[1]["x"] is None


@pytest.mark.skipif(AS_ROOT, reason=ROOT_REASON)
def test_unreadable_file_and_folder_real_permissions(hostile_folder):
    locked_folder = hostile_folder / "locked"
    locked_folder.mkdir()
    (locked_folder / "hidden.png").write_bytes(_png(24, 7))
    (hostile_folder / "good_0.png").chmod(0)
    locked_folder.chmod(0)
    try:
        dm = _image_data(hostile_folder, verify=True)
        by_name = {Path(k).name: v for k, v in dm.skipped.items()}
        assert "PermissionError" in by_name["locked"] and "PermissionError" in by_name["good_0.png"]
    finally:
        locked_folder.chmod(stat.S_IRWXU)
        (hostile_folder / "good_0.png").chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_unreadable_file_and_folder_simulated(hostile_folder, monkeypatch):
    """The same path as the real-permission test, with the refusals the kernel gives a non-root user
    injected (so it also runs as root)."""
    locked_folder, locked_file = hostile_folder / "locked", hostile_folder / "good_0.png"
    locked_folder.mkdir()
    (locked_folder / "hidden.png").write_bytes(_png(24, 7))
    real_scandir, real_open = os.scandir, Image.open

    def scandir(path="."):
        if Path(path) == locked_folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def image_open(source, *args, **kwargs):
        if isinstance(source, (str, os.PathLike)) and Path(source) == locked_file:
            raise PermissionError(13, "Permission denied", str(source))
        return real_open(source, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(Image, "open", image_open)
    dm = _image_data(hostile_folder, verify=True)
    by_name = {Path(k).name: v for k, v in dm.skipped.items()}
    assert "cannot list folder: PermissionError" in by_name["locked"] and "PermissionError" in by_name["good_0.png"]
    assert len(dm.skipped) == 7 and len(dm.train_files) == 3


# ----------------------------------------------------------------------------------------------- API
@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return build_autoencoder(tiny_config()).eval()


@pytest.mark.parametrize("steps", [0, -1, 1.5, True, "8", 2.0])
def test_decode_refuses_bad_num_steps(tok, steps):
    with pytest.raises(InputError, match=r"num_steps=.*positive int.*None for the default \(50\)"):
        tok.decode(torch.zeros(1, 4, 4, 4), num_steps=steps)


def test_decode_accepts_none_and_integer_types(tok):
    z = torch.zeros(1, 4, 4, 4)
    assert tok.decode(z, num_steps=np.int64(2)).num_function_evals == 2
    tok.sampling.num_steps, default = 3, tok.sampling.num_steps
    try:
        assert tok.decode(z, num_steps=None).num_function_evals == 3
    finally:
        tok.sampling.num_steps = default


def _bad_kind(kind: str, shape: tuple[int, ...]):
    if kind == "numpy":
        return np.zeros(shape, np.float32)
    if kind == "list":
        return np.zeros(shape).tolist()
    return torch.zeros(shape, dtype={"uint8": torch.uint8, "int64": torch.int64, "bool": torch.bool}[kind])


@pytest.mark.parametrize("kind", ["uint8", "int64", "bool", "numpy", "list"])
def test_non_float_inputs_are_refused_everywhere(tok, kind):
    x, z = _bad_kind(kind, (1, 3, 16, 16)), _bad_kind(kind, (1, 4, 4, 4))
    calls = {"encode": lambda: tok.encode(x), "reconstruct": lambda: tok.reconstruct(x), "decode": lambda: tok.decode(z, 1),
             "diffusers encode": lambda: DiffusersVAE(tok).encode(x), "diffusers decode": lambda: DiffusersVAE(tok).decode(z)}
    for name, call in calls.items():
        with pytest.raises(InputError, match=r"convert to float in \[-1, 1\]"):
            call()


def test_far_out_of_range_input_warns_and_non_finite_is_refused(tok):
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tok.encode(x)  # in range: silent
        tok.encode(x * 5)  # overshoot, not "far": silent
    for scale in (255.0, 1e30):
        with pytest.warns(UserWarning, match=r"far outside \[-1, 1\].*x / 127.5 - 1"):
            tok.encode(x * scale)
    for value in (float("nan"), float("inf"), -float("inf")):
        bad = x.clone()
        bad[0, 1, 2, 3] = value
        with pytest.raises(InputError, match="NaN or Inf"):
            tok.reconstruct(bad)
    with pytest.warns(UserWarning, match="latents z reaches"):
        tok.decode(torch.full((1, 4, 4, 4), 1e30), num_steps=1)


def test_explicit_noise_is_checked(tok):
    z = torch.zeros(2, 4, 4, 4)
    with pytest.raises(InputError, match=r"noise has shape \(1, 3, 16, 16\).*\(2, 3, 16, 16\) \(batch 2\)"):
        tok.decode(z, 1, noise=torch.randn(1, 3, 16, 16))
    nan_noise = torch.randn(2, 3, 16, 16)
    nan_noise[1, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="noise contains NaN or Inf"):
        tok.decode(z, 1, noise=nan_noise)
    with pytest.raises(InputError, match=r"convert to float"):
        tok.decode(z, 1, noise=torch.zeros(2, 3, 16, 16, dtype=torch.int32))
    good = torch.randn(2, 3, 16, 16)
    assert torch.equal(tok.decode(z, 1, noise=good).sample, tok.decode(z, 1, noise=good.clone()).sample)


def test_diffusers_adapter_validates_steps(tok):
    with pytest.raises(InputError, match="num_inference_steps=0"):
        DiffusersVAE(tok).decode(torch.zeros(1, 4, 4, 4), num_inference_steps=0)
    with pytest.raises(InputError, match="num_inference_steps=True"):
        DiffusersVAE(tok, num_inference_steps=True)
    with pytest.raises(InputError, match=r"latents z has dtype torch.int64"):
        DiffusersVAE(tok).decode(torch.zeros(1, 4, 4, 4, dtype=torch.int64))


# ----------------------------------------------------------------------------------------------- loader errors
@pytest.fixture
def export(tok, tmp_path) -> Path:
    return save_pretrained(tok, tmp_path / "tok")


def test_broken_config_json_names_the_file(export):
    config = export / "config.json"
    text = config.read_text()
    config.write_text(text[: len(text) // 2])
    with pytest.raises(CorruptFileError, match=rf"{config} is not valid JSON \(JSONDecodeError.*re-export the folder"):
        from_pretrained(export)
    config.write_text("[1, 2]")
    with pytest.raises(CorruptFileError, match=rf"{config} holds a JSON list"):
        from_pretrained(export)
    meta = json.loads(text)
    config.write_text(json.dumps({k: v for k, v in meta.items() if k != "autoencoder"}))
    with pytest.raises(CorruptFileError, match=rf"{config} has no 'autoencoder' section.*re-export"):
        from_pretrained(export)
    with pytest.raises(CorruptFileError, match="no 'autoencoder' section"):
        write_latent_stats(export, LatentStats(shift=0.0, scale=1.0))
    meta["autoencoder"]["not_a_field"] = 1
    config.write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match=rf"{config}: its 'autoencoder' section does not describe a model"):
        from_pretrained(export)


@pytest.mark.parametrize("damage", ["header too large", "truncated", "empty"])
def test_broken_weights_file_names_the_file(export, damage):
    weights = export / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"header too large": b"\xff" * 64, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    with pytest.raises(CorruptFileError, match=rf"{weights} is not a readable safetensors file .*copy the folder again or re-export"):
        from_pretrained(export)


def test_broken_frozen_network_weights_name_the_file(tmp_path):
    pt, st = tmp_path / "vgg.pth", tmp_path / "heads.safetensors"
    torch.save({"w": torch.ones(3)}, pt)
    pt.write_bytes(pt.read_bytes()[:50])
    st.write_bytes(b"\x00" * 7)
    for path in (pt, st):
        with pytest.raises(CorruptFileError, match=rf"{path} .*intact copy"):
            load_tensor_file(path)


# ----------------------------------------------------------------------------------------------- file modes
@pytest.mark.parametrize("umask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_exports_honour_the_umask(tok, tmp_path, umask, expected):
    previous = os.umask(umask)
    try:
        out = save_pretrained(tok, tmp_path / "tok")
        copied = write_latent_stats(out, LatentStats(shift=0.0, scale=1.0), out=tmp_path / "copy")
        demo = export_demo_dataset(tmp_path / "demo")
    finally:
        os.umask(previous)
    for path in (out / "model.safetensors", out / "config.json", copied / "model.safetensors", copied / "config.json",
                 demo / "val" / "coffee.png"):
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_failed_atomic_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "model.safetensors"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed mid-write")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_truncated_shard_member_names_the_shard(tmp_path):
    """A member cut short (a torn copy of the shard) is an unreadable sample naming the shard."""
    shard = tmp_path / "shard-000000.tar"
    data = _png(24, 0)
    with tarfile.open(shard, "w") as tar:
        info = tarfile.TarInfo("00000000_a.png")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (member,) = list_shard_members([str(shard)], ("png",))
    with open(shard, "r+b") as handle:
        handle.truncate(member.offset + 10)
    with pytest.raises(OSError, match=rf"{shard} is truncated"):
        open_image(member)
