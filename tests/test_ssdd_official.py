"""Official SSDD checkpoint import: every manifest maps one-to-one; imported weights compute what the
official layers compute (functional references written from the spec, using the official names)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import modalities.image  # noqa: F401  (registers ssdd decoders / kl encoders)
from core.pretrained import from_pretrained
from core.registry import DECODERS
from core.weight_import import WeightImportError
from modalities.image.official.ssdd import detect_ssdd_layout, ssdd_from_official_state
from modalities.image.ssdd.resblocks import LatentContext
from recipes.image import import_ssdd

MANIFESTS = Path("/work/shared/spec/official-weights")
SSDD_MANIFESTS = sorted(p.name for p in MANIFESTS.glob("ssdd-*.json"))


# small convolutions/attention run faster and steadier on one thread (conftest fixture)
pytestmark = pytest.mark.usefixtures("one_thread")


def load_manifest(name: str) -> dict:
    return json.loads((MANIFESTS / name).read_text())


def manifest_state(manifest: dict, device: str = "meta", seed: int = 0) -> dict[str, torch.Tensor]:
    """Tensors with the manifest's names and shapes (random, small, on ``device``)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in manifest["state_dict"]:
        if device == "meta":
            state[name] = torch.empty(shape, device="meta")
        else:
            state[name] = torch.randn(shape, generator=gen) * (0.5 if len(shape) == 3 else 0.05)
    return state


@pytest.mark.parametrize("manifest_name", SSDD_MANIFESTS)
def test_every_manifest_imports_one_to_one(manifest_name):
    manifest = load_manifest(manifest_name)
    state = manifest_state(manifest)
    _, encoder, size = manifest_name.removesuffix(".json").split("-")
    layout = detect_ssdd_layout(state)
    assert (layout.encoder, layout.decoder) == (encoder, size.lower())
    model = ssdd_from_official_state(state, device="meta")  # raises unless every tensor is used once and all are filled
    ours = model.state_dict()
    assert len(ours) == manifest["num_tensors"]
    assert sum(t.numel() for t in ours.values()) == manifest["num_params"]


def test_import_refuses_partial_extra_or_reshaped_checkpoints():
    state = manifest_state(load_manifest("ssdd-f8c4-S.json"))
    extra = {**state, "decoder.mid_block.pos_embed": torch.empty(1, device="meta")}
    with pytest.raises(WeightImportError, match="no difftok counterpart"):
        ssdd_from_official_state(extra, device="meta")
    missing = {k: v for k, v in state.items() if k != "decoder.up_blocks.2.upsamplers.0.conv.bias"}
    with pytest.raises(WeightImportError, match="not filled"):
        ssdd_from_official_state(missing, device="meta")
    key = "decoder.mid_block.transformer_blocks.3.relative_position_bias.relative_bias_table"
    transposed = {**state, key: torch.empty(4, 15, 15, device="meta")}
    with pytest.raises((WeightImportError, ValueError)):
        ssdd_from_official_state(transposed, device="meta", encoder="f8c4", decoder="s")


# ------------------------------------------------------------------ functional references (official names)
def reference_resblock(w: dict[str, torch.Tensor], x, ctx, temb):
    """ResBlock as the spec describes it, with nearest-resized AdaGN maps materialised."""
    scale, shift = F.conv2d(ctx, w["norm1.ctx_proj.weight"], w["norm1.ctx_proj.bias"]).chunk(2, dim=1)
    scale, shift = (F.interpolate(m, size=x.shape[-2:], mode="nearest") for m in (scale, shift))
    h = F.group_norm(x, 32, eps=1e-5) * (1 + scale) + shift
    h = F.conv2d(F.silu(h), w["conv1.weight"], w["conv1.bias"], padding=1)
    t_scale, t_shift = F.linear(F.silu(temb), w["time_emb_proj.weight"], w["time_emb_proj.bias"])[:, :, None, None].chunk(2, dim=1)
    h = F.group_norm(h, 32, w["norm2.weight"], w["norm2.bias"], eps=1e-5) * (1 + t_scale) + t_shift
    h = F.conv2d(F.silu(h), w["conv2.weight"], w["conv2.bias"], padding=1)
    skip = F.conv2d(x, w["conv_shortcut.weight"], w["conv_shortcut.bias"]) if "conv_shortcut.weight" in w else x
    return skip + h


def padded_relative_bias(table: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(heads, N, N) bias: the table centred in a (2h-1, 2w-1) grid of -1e7, gathered at query - key."""
    r = (table.shape[0] - 1) // 2
    heads = table.shape[-1]
    grid = torch.full((2 * height - 1, 2 * width - 1, heads), -1e7)
    for dy in range(-(height - 1), height):
        for dx in range(-(width - 1), width):
            if abs(dy) <= r and abs(dx) <= r:
                grid[dy + height - 1, dx + width - 1] = table[dy + r, dx + r]
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    gathered = grid[ys[:, None] - ys[None, :] + height - 1, xs[:, None] - xs[None, :] + width - 1]  # (N, N, heads)
    return gathered.permute(2, 0, 1)


def reference_transformer_block(w: dict[str, torch.Tensor], h, ctx, height: int, width: int):
    """Pre-norm block: AdaLN(z) -> windowed attention; LN -> GEGLU FF (f8: one latent per token)."""
    batch, n, dim = h.shape
    heads = w["relative_position_bias.relative_bias_table"].shape[-1]
    ctx_tokens = F.silu(ctx).flatten(2).transpose(1, 2)
    shift, scale = F.linear(ctx_tokens, w["norm1.linear.weight"], w["norm1.linear.bias"]).chunk(2, dim=-1)
    a = F.layer_norm(h, (dim,), eps=1e-5) * (1 + scale) + shift
    q, k, v = (F.linear(a, w[f"attn1.to_{c}.weight"]).view(batch, n, heads, -1).transpose(1, 2) for c in "qkv")
    bias = padded_relative_bias(w["relative_position_bias.relative_bias_table"], height, width)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + bias
    attn = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, n, dim)
    h = h + F.linear(attn, w["attn1.out_proj.weight"], w["attn1.out_proj.bias"])
    value, gate = F.linear(F.layer_norm(h, (dim,), w["norm2.weight"], w["norm2.bias"]), w["ff.proj_in_act.proj.weight"],
                           w["ff.proj_in_act.proj.bias"]).chunk(2, dim=-1)
    return h + F.linear(value * F.gelu(gate), w["ff.proj_out.weight"], w["ff.proj_out.bias"])


def independent_decoder_key(official: str) -> str:
    """A second, test-only spelling of the official -> difftok decoder renaming."""
    key = official.removeprefix("decoder.")
    for old, new in [("downsamplers.0.", "downsample."), ("upsamplers.0.", "upsample."),
                     ("relative_position_bias.relative_bias_table", "attn.relative_bias_table"), ("attn1.", "attn.")]:
        key = key.replace(old, new)
    return key


def sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def imported_m(tmp_path_factory):
    """A synthetic official SSDD-f8c4-M file, imported through the CLI and reloaded."""
    from safetensors.torch import save_file

    state = manifest_state(load_manifest("ssdd-f8c4-M.json"), device="cpu")
    root = tmp_path_factory.mktemp("ssdd_official")
    save_file(state, str(root / "model_ae_ema.safetensors"))
    out = import_ssdd.main([f"weights={root / 'model_ae_ema.safetensors'}", f"out={root / 'difftok'}"])
    return state, from_pretrained(out, modality="image")


def test_imported_m_decoder_matches_an_independently_filled_one(imported_m):
    state, model = imported_m
    with torch.device("meta"):
        reference = DECODERS.create("ssdd_m", spatial_dims=2, in_channels=3, latent_channels=4, upsample_factor=8)
    decoder_state = {independent_decoder_key(k): v for k, v in state.items() if k.startswith("decoder.")}
    reference.load_state_dict(decoder_state, strict=True, assign=True)
    torch.manual_seed(0)
    x_t, z, t = torch.randn(1, 3, 32, 32), torch.randn(1, 4, 4, 4), torch.tensor([700.0])
    with torch.no_grad():
        torch.testing.assert_close(model.decoder(x_t, t, z), reference(x_t, t, z), atol=0, rtol=0)
        u = model.velocity(x_t, torch.tensor([0.7]), z)
    assert torch.isfinite(u).all() and u.abs().mean() > 0
    assert model.config.decoder.name == "ssdd_m" and model.config.encoder.name == "kl_f8c4"
    torch.testing.assert_close(model.encoder.quant_conv.weight, state["encoder.out_proj.weight"])


def test_imported_blocks_match_functional_references(imported_m):
    state, model = imported_m
    decoder = model.decoder
    torch.manual_seed(0)
    # ResBlock with a 1×1 shortcut at full resolution; context 8× coarser (32² image, 4² latent)
    w = sub_state(state, "decoder.up_blocks.3.resnets.0.")
    x, ctx, temb = torch.randn(1, 288, 32, 32), torch.randn(1, 96, 4, 4), torch.randn(1, 384)
    with torch.no_grad():
        ours = decoder.up_blocks[3].resnets[0](x, F.silu(temb), LatentContext.from_map(ctx))
    torch.testing.assert_close(ours, reference_resblock(w, x, ctx, temb), atol=1e-4, rtol=1e-4)
    # REPA block (index 4) on a non-square 12×10 token grid, so the ±7 window actually masks
    from modalities.image.ssdd.attention import WindowLayout

    height, width = 12, 10
    w = sub_state(state, "decoder.mid_block.transformer_blocks.4.")
    h, ctx = torch.randn(2, height * width, 288), torch.randn(2, 96, height, width)
    layout = WindowLayout.build(height, width, 7, "sdpa", h.device)
    ctx_tokens = F.silu(ctx).flatten(2).transpose(1, 2)
    with torch.no_grad():
        ours = decoder.get_submodule(decoder.repa_module)(h, ctx_tokens, layout, (height, width))
    torch.testing.assert_close(ours, reference_transformer_block(w, h, ctx, height, width), atol=1e-4, rtol=1e-4)


def test_cli_rejects_bad_arguments():
    with pytest.raises(SystemExit, match="missing out="):
        import_ssdd.main(["weights=x.safetensors"])
    with pytest.raises(SystemExit, match="bad argument"):
        import_ssdd.main(["weights=x", "out=y", "size=m"])
    with pytest.raises(FileNotFoundError, match="model_ae_ema"):
        import_ssdd.main(["weights=/nonexistent/model.safetensors", "out=/tmp/never"])
