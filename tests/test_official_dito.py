"""Official DiTo checkpoint import: synthetic checkpoints built from the three state-dict manifests.

The imported model is compared with an independent functional forward written here from the
official layer names (``F.conv2d`` / ``F.group_norm`` / explicit softmax attention / nearest
upsampling by ``repeat_interleave``), so the check does not reuse difftok's networks or key map.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from core.builder import build_autoencoder, config_from_dict
from core.weight_import import WeightImportError
from modalities.image.official.dito import (
    detect_dito_size,
    dito_official_key,
    import_dito_checkpoint,
    import_dito_state_dict,
    load_dito_checkpoint,
)

MANIFESTS = Path(__file__).parent / "data" / "official_weights"
SIZES = {"b": "dito-B-f8c4", "l": "dito-L-f8c4", "xl": "dito-XL-f8c4"}


def manifest(size: str) -> dict:
    return json.loads((MANIFESTS / f"{SIZES[size]}.json").read_text())


def synthetic_state_dict(size: str, seed: int = 0) -> dict[str, Tensor]:
    """Random tensors with the official names and shapes, scaled so activations stay O(1).

    Large weights are views into one shared pool per fan-in (torch.save stores each pool once,
    keeping the XL file small); every view starts at a different offset, so tensors of equal
    shape still hold different values and a swapped mapping changes the output.
    """
    gen = torch.Generator().manual_seed(seed)
    entries = manifest(size)["state_dict"]
    by_fan_in: dict[int, list[tuple[str, list[int]]]] = defaultdict(list)
    state: dict[str, Tensor] = {}
    for name, shape in entries:
        if len(shape) == 1:  # biases and norm affines: small, independent
            base = torch.ones(shape) if name.endswith("weight") else torch.zeros(shape)
            state[name] = base + 0.1 * torch.randn(shape, generator=gen)
        else:
            by_fan_in[math.prod(shape[1:])].append((name, shape))
    stride = 997
    for fan_in, group in by_fan_in.items():
        largest = max(math.prod(s) for _, s in group)
        pool = torch.randn(largest + stride * len(group), generator=gen) / math.sqrt(fan_in)
        for i, (name, shape) in enumerate(group):
            state[name] = pool[i * stride: i * stride + math.prod(shape)].view(shape)
    return {name: state[name] for name, _ in entries}  # official order


def save_official(state: dict[str, Tensor], path: Path, **model_args) -> Path:
    """Write ``state`` in the official trainer's checkpoint layout."""
    ckpt = {
        "config": {"model": {"name": "dito", "args": model_args}},
        "model": {"name": "dito", "args": model_args, "sd": state},
        "optimizers": {"encoder": {"name": "adamw", "args": {"lr": 1e-4}, "sd": {"state": {}, "param_groups": []}}},
        "iter": 300000,
        "train_loader_epoch": 30,
        "ckpt_select_v": 0,
    }
    torch.save(ckpt, path)
    return path


# ---------------------------------------------------------------- independent reference forward
def _conv(sd: dict, name: str, x: Tensor, **kw) -> Tensor:
    return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], **kw)


def _gn(sd: dict, name: str, x: Tensor, eps: float) -> Tensor:
    return F.group_norm(x, 32, sd[f"{name}.weight"], sd[f"{name}.bias"], eps)


def _up2(x: Tensor, factor: int = 2) -> Tensor:
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def reference_encoder(sd: dict, x: Tensor) -> Tensor:
    """LDM f8c4 encoder (``encoder.0``), the 1×1 conv (``encoder.1``) and LayerNorm over (C, H, W)."""
    p = "encoder.0."

    def res(h: Tensor, n: str) -> Tensor:
        y = _conv(sd, f"{n}.conv1", F.silu(_gn(sd, f"{n}.norm1", h, 1e-6)), padding=1)
        y = _conv(sd, f"{n}.conv2", F.silu(_gn(sd, f"{n}.norm2", y, 1e-6)), padding=1)
        return (_conv(sd, f"{n}.nin_shortcut", h) if f"{n}.nin_shortcut.weight" in sd else h) + y

    def attention(h: Tensor, n: str) -> Tensor:
        y = _gn(sd, f"{n}.norm", h, 1e-6)
        b, c, hh, ww = y.shape
        q, k, v = (_conv(sd, f"{n}.{m}", y).reshape(b, c, hh * ww) for m in "qkv")
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)  # (B, N, N)
        out = (v @ weights.transpose(1, 2)).reshape(b, c, hh, ww)
        return h + _conv(sd, f"{n}.proj_out", out)

    h = _conv(sd, f"{p}conv_in", x, padding=1)
    for level in range(4):
        for block in range(2):
            h = res(h, f"{p}down.{level}.block.{block}")
        if level < 3:
            h = _conv(sd, f"{p}down.{level}.downsample.conv", F.pad(h, (0, 1, 0, 1)), stride=2)
    h = attention(res(h, f"{p}mid.block_1"), f"{p}mid.attn_1")
    h = res(h, f"{p}mid.block_2")
    h = _conv(sd, f"{p}conv_out", F.silu(_gn(sd, f"{p}norm_out", h, 1e-6)), padding=1)
    h = _conv(sd, "encoder.1", h)
    return F.layer_norm(h, h.shape[1:], eps=1e-5)


def reference_unet(sd: dict, x_t: Tensor, t: Tensor, z: Tensor) -> Tensor:
    """Consistency-decoder UNet (``renderer.net``) at data time ``t`` in [0, 1]."""
    p = "renderer.net."
    half = sd[f"{p}embed_time.f_1.weight"].shape[1] // 2
    freqs = (1.0 / 10000) ** (torch.arange(half, dtype=torch.float32) / (half - 1))
    angles = (1000 * t)[:, None] * freqs[None]
    emb = torch.cat([angles.cos(), angles.sin()], dim=1)
    emb = F.linear(F.silu(F.linear(emb, sd[f"{p}embed_time.f_1.weight"], sd[f"{p}embed_time.f_1.bias"])),
                   sd[f"{p}embed_time.f_2.weight"], sd[f"{p}embed_time.f_2.bias"])

    def block(h: Tensor, n: str, resample: str = "") -> Tensor:
        scale, shift = F.linear(F.silu(emb), sd[f"{n}.f_t.weight"], sd[f"{n}.f_t.bias"]).chunk(2, dim=1)
        y = F.silu(_gn(sd, f"{n}.gn_1", h, 1e-5))
        if resample == "down":
            y, h = F.avg_pool2d(y, 2), F.avg_pool2d(h, 2)
        elif resample == "up":
            y, h = _up2(y), _up2(h)
        y = _gn(sd, f"{n}.gn_2", _conv(sd, f"{n}.f_1", y, padding=1), 1e-5)
        y = _conv(sd, f"{n}.f_2", F.silu(y * (1 + scale[:, :, None, None]) + shift[:, :, None, None]), padding=1)
        return (_conv(sd, f"{n}.f_s", h) if f"{n}.f_s.weight" in sd else h) + y

    h = _conv(sd, f"{p}embed_image.f", torch.cat([x_t, _up2(z, 8)], dim=1), padding=1)
    skips = [h]
    for stage in range(4):
        for b in range(3):
            h = block(h, f"{p}down.{stage}.{b}")
            skips.append(h)
        if stage < 3:
            h = block(h, f"{p}down.{stage}.3", "down")
            skips.append(h)
    for i in range(2):
        h = block(h, f"{p}mid.{i}")
    for stage in reversed(range(4)):
        for b in range(4):
            h = block(torch.cat([h, skips.pop()], dim=1), f"{p}up.{stage}.{b}")
        if stage > 0:
            h = block(h, f"{p}up.{stage}.4", "up")
    return _conv(sd, f"{p}output.f", F.silu(_gn(sd, f"{p}output.gn", h, 1e-5)), padding=1)


def assert_close_scaled(actual: Tensor, expected: Tensor, rtol: float = 1e-4) -> None:
    assert expected.abs().max() > 1e-3, "degenerate reference"
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * expected.abs().max().item())


# ---------------------------------------------------------------- tests
def check_against_reference(model, state: dict[str, Tensor], decode_steps: int = 0) -> None:
    """Encoder, velocity and (optionally) Euler decoding of ``model`` vs the functional reference."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1
    with torch.no_grad():
        z = model.encode(x).latent_dist.mode()  # (2, 4, 2, 2): attention over 4 positions
        assert_close_scaled(z, reference_encoder(state, x))
        t = torch.tensor([0.3, 0.85])
        x_t = torch.randn(2, 3, 16, 16, generator=gen)
        assert_close_scaled(model.velocity(x_t, t, z), reference_unet(state, x_t, t, z))
        if not decode_steps:
            return
        noise = torch.randn(2, 3, 16, 16, generator=gen)
        decoded = model.decode(z, decode_steps, noise=noise).sample
        grid = torch.linspace(1, 0, decode_steps + 1).tolist()
        expected = noise
        for t_cur, t_next in zip(grid[:-1], grid[1:]):  # official Euler: x <- x + pred·(t_i - t_{i+1})
            expected = expected + reference_unet(state, expected, torch.full((2,), t_cur), z) * (t_cur - t_next)
        assert_close_scaled(decoded, expected)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["l", "xl"])
def test_import_fills_everything_and_matches_the_official_forward(size, tmp_path, one_thread):
    """L and XL end to end (about 1.5 and 2.7 GB of fp32 weights; DiTo-B runs by default below)."""
    entries = manifest(size)
    state = synthetic_state_dict(size)
    result = import_dito_checkpoint(save_official(state, tmp_path / "ckpt-last.pth"))  # size detected
    assert result.size == size and result.iteration == 300000 and result.dropped == []
    assert result.imported == entries["num_tensors"] == len(result.model.state_dict())
    assert result.num_params == entries["num_params"]
    assert result.model.config.decoder.name == f"dito_{size}" and result.model.config.noise_sync.p == 0.0
    check_against_reference(result.model, state)  # an unfilled (uninitialised) tensor would break this


def test_cli_import_writes_the_folder_and_matches_the_official_forward(tmp_path, capsys, one_thread):
    """DiTo-B through the CLI: dropped modules, noise-sync flag, save_pretrained folder, then the forward."""
    from safetensors import safe_open

    from recipes.image.import_dito import main

    entries = manifest("b")
    state = synthetic_state_dict("b")
    extra = {
        "lpips_loss.net.slice1.0.weight": torch.zeros(64, 3, 3, 3),  # the +LPIPS model's frozen loss network
        "zdm_net.x_embedder.proj.weight": torch.zeros(8, 4, 2, 2),  # a latent-DiT run's generator
        "zdm_Ez_v": torch.zeros(()),  # a top-level buffer, dropped by its name
    }
    path = save_official({**state, **extra}, tmp_path / "ckpt-300000.pth", zaug_p=0.1)
    out = tmp_path / "dito_b"
    result = main([f"ckpt={path}", f"out={out}", "size=B", "drop=zdm_net,zdm_Ez_v"])
    printed = capsys.readouterr().out
    assert "imported DiTo-B" in printed and f"{entries['num_tensors']} official tensors" in printed and str(out) in printed
    assert result.dropped == sorted(extra) and result.num_params == entries["num_params"]
    meta = json.loads((out / "config.json").read_text())
    assert meta["autoencoder"]["decoder"]["name"] == "dito_b" and meta["autoencoder"]["noise_sync"]["p"] == 0.1
    assert meta["extra"]["official_iteration"] == 300000

    model = result.model
    ours = model.state_dict()
    assert len(ours) == entries["num_tensors"]
    for name, value in state.items():  # every tensor landed unchanged (no reshape)
        assert torch.equal(ours[dito_official_key(name)], value), name
    with torch.device("meta"):  # what from_pretrained rebuilds from config.json has exactly the saved tensors
        rebuilt = build_autoencoder(config_from_dict(meta["autoencoder"]))
    with safe_open(str(out / "model.safetensors"), framework="pt") as saved:
        assert {k: list(saved.get_slice(k).get_shape()) for k in saved.keys()} == {
            k: list(v.shape) for k, v in rebuilt.state_dict().items()
        }
        assert torch.equal(saved.get_tensor("decoder.up.18.conv2.weight"), state["renderer.net.up.0.3.f_2.weight"])
    check_against_reference(model, state, decode_steps=2)


def meta_state(size: str = "b") -> dict[str, Tensor]:
    return {n: torch.empty(s, device="meta") for n, s in manifest(size)["state_dict"]}


@pytest.mark.parametrize("size", list(SIZES))
def test_every_manifest_maps_one_to_one(size):
    """Names and shapes of every official tensor against the difftok model, on the meta device."""
    result = import_dito_state_dict(meta_state(size), device="meta")
    assert result.size == size and result.imported == manifest(size)["num_tensors"]
    assert result.num_params == manifest(size)["num_params"]


def test_extra_tensor_is_refused_with_its_name():
    state = meta_state()
    state["renderer_ema.net.embed_image.f.weight"] = torch.empty(128, 7, 3, 3, device="meta")
    with pytest.raises(WeightImportError, match=r"renderer_ema\.net\.embed_image\.f\.weight.*drop=zdm_net"):
        import_dito_state_dict(state, device="meta")
    result = import_dito_state_dict(state, device="meta", drop_prefixes=("renderer_ema",))  # left out on purpose
    assert result.dropped == ["renderer_ema.net.embed_image.f.weight"]
    state["renderer_emax"] = torch.empty(1, device="meta")  # a name prefix alone does not drop a module
    with pytest.raises(WeightImportError, match="renderer_emax"):
        import_dito_state_dict(state, device="meta", drop_prefixes=("renderer_ema",))


def test_missing_tensor_is_refused_with_its_name():
    state = meta_state()
    del state["renderer.net.up.1.2.f_s.weight"]
    with pytest.raises(WeightImportError, match=r"not filled: decoder\.up\.12\.skip\.weight"):
        import_dito_state_dict(state, device="meta")


def test_wrong_shape_is_refused_with_both_names():
    state = meta_state()
    state["renderer.net.mid.0.f_1.weight"] = torch.empty(512, 512, 1, 1, device="meta")
    with pytest.raises(WeightImportError, match=r"decoder\.mid\.0\.conv1\.weight \(from renderer\.net\.mid\.0\.f_1\.weight\)"):
        import_dito_state_dict(state, device="meta")
    with pytest.raises(WeightImportError, match="shapes differ"):  # a forced size that does not fit
        import_dito_state_dict(meta_state("l"), "b", device="meta")


def test_out_of_range_block_index_is_not_silently_remapped():
    state = meta_state()
    state["renderer.net.down.0.4.f_1.weight"] = state.pop("renderer.net.down.1.0.f_1.weight")
    with pytest.raises(WeightImportError, match=r"down\.0\.4\.f_1\.weight"):
        import_dito_state_dict(state, "b", device="meta")


def test_size_detection():
    assert [detect_dito_size(meta_state(s)) for s in SIZES] == list(SIZES)
    state = meta_state()
    state["renderer.net.embed_image.f.weight"] = torch.empty(96, 7, 3, 3, device="meta")
    with pytest.raises(WeightImportError, match=r"\(96, 256, 512\) match no known size"):
        detect_dito_size(state)
    with pytest.raises(WeightImportError, match="not a DiTo state dict"):
        detect_dito_size({"encoder.1.weight": torch.empty(4, 4, 1, 1)})


class NotAllowed:
    """An arbitrary pickled object, refused by weights_only loading."""


def test_unsafe_or_foreign_files_give_clear_errors(tmp_path):
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": {"name": "dito", "args": NotAllowed(), "sd": {}}}, unsafe)
    with pytest.raises(WeightImportError, match=r"cannot be read with torch\.load\(weights_only=True\)"):
        load_dito_checkpoint(unsafe)
    flat = tmp_path / "flat.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, flat)
    with pytest.raises(WeightImportError, match=r"not an official DiTo checkpoint.*found \['state_dict'\]"):
        load_dito_checkpoint(flat)
    other = tmp_path / "glpto.pth"
    torch.save({"model": {"name": "glpto", "args": {}, "sd": {}}}, other)
    with pytest.raises(WeightImportError, match="'glpto' model"):
        load_dito_checkpoint(other)
    legacy = tmp_path / "legacy.pth"  # the pre-zip format cannot be memory-mapped: plain load is used
    torch.save({"model": {"name": "dito", "args": {}, "sd": {"w": torch.ones(2)}}}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_dito_checkpoint(legacy).state_dict["w"], torch.ones(2))
