"""DiT generator: exact parameter counts, sin-cos position embeddings, adaLN-Zero init, label
conditioning, input errors, gradient checkpointing, and two independent references (diffusers'
DiTTransformer2DModel and a plain functional forward written here from the DiT math)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.nets.dit import DIT_SIZES
from core.nets.pos_embed import axis_widths
from core.registry import GENERATORS, REGISTRIES, create

# DiT paper Table 1: (depth, hidden, heads); written here independently of DIT_SIZES.
PAPER_SIZES = {"s": (12, 384, 6), "b": (12, 768, 12), "l": (24, 1024, 16), "xl": (28, 1152, 16), "tiny": (2, 48, 2)}


def closed_form_params(depth, hidden, patch, in_ch, out_ch, tokens, num_classes, spatial_dims=2, mlp_ratio=4.0, freq_dim=256):
    """Parameter count of DiT from its architecture (pos_embed included, null class included)."""
    h, pv, m = hidden, patch**spatial_dims, int(hidden * mlp_ratio)
    patch_embed = in_ch * pv * h + h
    pos_embed = tokens * h
    t_mlp = (freq_dim * h + h) + (h * h + h)
    labels = (num_classes + 1) * h
    attn = (h * 3 * h + 3 * h) + (h * h + h)
    mlp = (h * m + m) + (m * h + h)
    ada = h * 6 * h + 6 * h
    final = (h * 2 * h + 2 * h) + (h * pv * out_ch + pv * out_ch)
    return patch_embed + pos_embed + t_mlp + labels + depth * (attn + mlp + ada) + final


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# ---- numpy references of the fixed position embedding (MAE/DiT convention, non-square allowed) ----


def np_1d_sincos(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def np_2d_sincos(embed_dim, grid_h, grid_w):
    """DiT's get_2d_sincos_pos_embed, generalised to an (h, w) grid: meshgrid(w, h) puts w first."""
    grid = np.meshgrid(np.arange(grid_w, dtype=np.float32), np.arange(grid_h, dtype=np.float32))
    grid = np.stack(grid, axis=0).reshape(2, 1, grid_h, grid_w)
    return np.concatenate([np_1d_sincos(embed_dim // 2, grid[0]), np_1d_sincos(embed_dim // 2, grid[1])], axis=1)


def np_3d_sincos(embed_dim, grid_t, grid_h, grid_w):
    """Width split in three equal chunks, in reverse axis order: [w | h | t]."""
    t, h, w = np.meshgrid(np.arange(grid_t), np.arange(grid_h), np.arange(grid_w), indexing="ij")
    d = embed_dim // 3
    return np.concatenate([np_1d_sincos(d, w.astype(np.float64)), np_1d_sincos(d, h.astype(np.float64)), np_1d_sincos(d, t.astype(np.float64))], axis=1)


# ---- helpers ----


def tiny(spatial_dims=2, input_size=8, **kwargs):
    torch.manual_seed(0)
    return GENERATORS.create("dit_tiny_2", spatial_dims=spatial_dims, in_channels=4, input_size=input_size, num_classes=10, **kwargs)


def randomize_zero_layers(model, seed=1, std=0.1):
    """Give the zero-initialised adaLN and final linears random values (otherwise the output is 0)."""
    gen = torch.Generator().manual_seed(seed)
    linears = [b.adaLN_modulation[-1] for b in model.blocks] + [model.final_layer.adaLN_modulation[-1], model.final_layer.linear]
    with torch.no_grad():
        for linear in linears:
            for p in (linear.weight, linear.bias):
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def inputs(batch=3, spatial=(8, 8), channels=4, num_classes=10, seed=2):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, *spatial, generator=gen)
    t = torch.rand(batch, generator=gen) * 1000
    y = torch.randint(0, num_classes + 1, (batch,), generator=gen)
    return x, t, y


# ---- parameter counts ----


def test_dit_xl_2_parameter_count_matches_spec_and_closed_form():
    with torch.device("meta"):
        model = GENERATORS.create("dit_xl_2", in_channels=4, input_size=32, num_classes=1000)
    count = n_params(model)
    print(f"DiT-XL/2 (in=out=4, 32x32 latents, 1001 label rows): {count} parameters")
    assert model.y_embedder.embedding_table.num_embeddings == 1001 and model.out_channels == 4
    assert count == closed_form_params(28, 1152, 2, 4, 4, 256, 1000)
    assert abs(count - 675.1e6) < 0.1e6
    assert not model.pos_embed.requires_grad and model.pos_embed.shape == (1, 256, 1152)


@pytest.mark.parametrize("name", GENERATORS.list("dit_*"))
def test_every_registered_dit_matches_closed_form_on_meta(name):
    size, patch = name.split("_")[1], int(name.split("_")[2])
    depth, hidden, heads = PAPER_SIZES[size]
    assert (DIT_SIZES[size].depth, DIT_SIZES[size].hidden_size, DIT_SIZES[size].num_heads) == (depth, hidden, heads)
    with torch.device("meta"):
        model = GENERATORS.create(name, in_channels=4, input_size=32, num_classes=1000)
        out = model(torch.empty(2, 4, 32, 32), torch.empty(2), torch.empty(2, dtype=torch.long))
    assert out.shape == (2, 4, 32, 32)
    assert len(model.blocks) == depth and model.hidden_size == hidden and model.patch_size == patch
    assert n_params(model) == closed_form_params(depth, hidden, patch, 4, 4, (32 // patch) ** 2, 1000)


def test_registry_kind_and_overrides():
    assert REGISTRIES["generator"] is GENERATORS
    model = create("generator", "dit_tiny_2", spatial_dims=1, in_channels=3, out_channels=5, input_size=16, num_classes=7, depth=1)
    assert (model.spatial_dims, model.in_channels, model.out_channels, model.num_classes, model.null_class) == (1, 3, 5, 7, 7)
    assert len(model.blocks) == 1 and model.y_embedder.embedding_table.num_embeddings == 8


def test_state_dict_uses_dit_names():
    keys = set(tiny().state_dict())
    expected = {"pos_embed", "x_embedder.proj.weight", "x_embedder.proj.bias", "y_embedder.embedding_table.weight"}
    expected |= {f"t_embedder.mlp.{i}.{k}" for i in (0, 2) for k in ("weight", "bias")}
    expected |= {f"final_layer.{m}.{k}" for m in ("linear", "adaLN_modulation.1") for k in ("weight", "bias")}
    for b in range(2):
        expected |= {f"blocks.{b}.{m}.{k}" for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "adaLN_modulation.1") for k in ("weight", "bias")}
    assert keys == expected


# ---- shapes and position embeddings ----


@pytest.mark.parametrize("spatial_dims,spatial", [(1, (16,)), (2, (8, 8)), (3, (4, 8, 8))])
def test_forward_shapes(spatial_dims, spatial):
    model = randomize_zero_layers(tiny(spatial_dims, input_size=spatial))
    x, t, y = inputs(spatial=spatial)
    out = model(x, t, y)
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().sum() > 0


def test_2d_pos_embed_equals_dit_numpy():
    model = GENERATORS.create("dit_xl_2", input_size=32, depth=0)  # the embedding does not depend on depth
    ref = torch.from_numpy(np_2d_sincos(1152, 16, 16)).float()
    torch.testing.assert_close(model.pos_embed[0], ref, rtol=0, atol=1e-6)


def test_1d_and_3d_pos_embed_equal_numpy():
    one_d = tiny(1, input_size=16)
    torch.testing.assert_close(one_d.pos_embed[0], torch.from_numpy(np_1d_sincos(48, np.arange(8.0))).float(), rtol=0, atol=1e-6)
    three_d = tiny(3, input_size=(4, 6, 8))
    torch.testing.assert_close(three_d.pos_embed[0], torch.from_numpy(np_3d_sincos(48, 2, 3, 4)).float(), rtol=0, atol=1e-6)


def test_axis_widths_split_evenly_and_reject_odd_widths():
    assert axis_widths(1152, 2) == [576, 576] and axis_widths(48, 3) == [16, 16, 16]
    assert axis_widths(1024, 3) == [342, 342, 340]  # DiT-L in 3-D: first chunks take the remainder
    with pytest.raises(ValueError, match="even width"):
        axis_widths(47, 1)


def test_non_default_grid_uses_on_the_fly_pos_embed():
    model = randomize_zero_layers(tiny(2, input_size=8))
    stored = model.pos_embed.detach().clone()
    x, t, y = inputs(spatial=(8, 12))
    out = model(x, t, y)
    assert out.shape == (3, 4, 8, 12)
    pos = torch.from_numpy(np_2d_sincos(48, 4, 6)).float()
    torch.testing.assert_close(model.position_embedding((4, 6), x.device)[0], pos, rtol=0, atol=1e-6)
    torch.testing.assert_close(out, reference_forward(model, x, t, y, pos), rtol=1e-5, atol=1e-5)
    assert torch.equal(model.pos_embed, stored)  # nothing written back


# ---- adaLN-Zero ----


def test_adaln_zero_init_output_is_zero_and_blocks_are_identity():
    model = tiny()
    x, t, y = inputs()
    assert torch.equal(model(x, t, y), torch.zeros_like(x))
    with torch.no_grad():
        torch.nn.init.normal_(model.final_layer.linear.weight, std=0.1)
        torch.nn.init.normal_(model.final_layer.adaLN_modulation[-1].weight, std=0.1)
        tokens = model.x_embedder(x) + model.pos_embed
        c = model.t_embedder(t) + model.y_embedder(y)
        for block in model.blocks:
            assert torch.equal(block(tokens, c), tokens)
        assert model(x, t, y).abs().sum() > 0
        torch.testing.assert_close(model(x, t, y), model.unpatchify(model.final_layer(tokens, c), (4, 4)), rtol=0, atol=0)


# ---- labels and input errors ----


def test_labels_change_output_null_class_works_and_range_is_checked():
    model = randomize_zero_layers(tiny())
    x, t, _ = inputs(batch=2)
    out_a = model(x, t, torch.tensor([3, 3]))
    out_b = model(x, t, torch.tensor([5, 5]))
    out_null = model(x, t, torch.full((2,), model.null_class))
    assert model.null_class == 10
    assert (out_a - out_b).abs().max() > 1e-4 and (out_a - out_null).abs().max() > 1e-4
    for bad in ([-1, 0], [0, 11]):
        with pytest.raises(ValueError, match=r"\[0, 10\]"):
            model(x, t, torch.tensor(bad))
    with pytest.raises(ValueError, match="integer labels"):
        model(x, t, torch.tensor([1.0, 2.0]))


def test_input_errors_name_the_fix():
    model = tiny()
    x, t, y = inputs()
    with pytest.raises(ValueError, match="pad or crop"):
        model(torch.randn(3, 4, 8, 9), t, y)
    with pytest.raises(ValueError, match="in_channels"):
        model(torch.randn(3, 3, 8, 8), t, y)
    with pytest.raises(ValueError, match="spatial_dims"):
        model(torch.randn(3, 4, 8), t, y)
    with pytest.raises(ValueError, match="t must be"):
        model(x, t[:1], y)
    with pytest.raises(ValueError, match="pad or crop"):
        tiny(input_size=7)


# ---- gradient checkpointing ----


def test_grad_checkpointing_gives_identical_outputs_and_grads():
    x, t, y = inputs()
    results = []
    for ckpt in (False, True):
        model = randomize_zero_layers(tiny(grad_checkpointing=ckpt)).train()
        out = model(x, t, y)
        out.square().mean().backward()
        results.append((out.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    (out_a, grads_a), (out_b, grads_b) = results
    assert torch.equal(out_a, out_b) and grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=0, atol=0, msg=name)


# ---- independent references ----


def reference_forward(model, x, t, y, pos):
    """DiT forward from the math with plain tensor ops (2-D only), reading ``model``'s weights."""
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    p, heads, (b, ch, hgt, wid) = model.patch_size, model.blocks[0].attn.num_heads, x.shape
    gh, gw, d = hgt // p, wid // p, model.hidden_size

    def linear(v, name):
        return v @ sd[name + ".weight"].T + sd[name + ".bias"]

    def layer_norm(v):
        mu, var = v.mean(-1, keepdim=True), v.var(-1, unbiased=False, keepdim=True)
        return (v - mu) / torch.sqrt(var + 1e-6)

    def silu(v):
        return v * torch.sigmoid(v)

    patches = x.reshape(b, ch, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, ch * p * p)  # row-major tokens
    tokens = patches @ sd["x_embedder.proj.weight"].reshape(d, -1).T + sd["x_embedder.proj.bias"] + pos
    freqs = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float32) / 128)
    angles = t[:, None].float() * freqs
    temb = linear(silu(linear(torch.cat([angles.cos(), angles.sin()], 1), "t_embedder.mlp.0")), "t_embedder.mlp.2")
    c = temb + sd["y_embedder.embedding_table.weight"][y]
    for i in range(len(model.blocks)):
        pre = f"blocks.{i}."
        sh1, sc1, g1, sh2, sc2, g2 = linear(silu(c), pre + "adaLN_modulation.1").chunk(6, 1)
        h = layer_norm(tokens) * (1 + sc1[:, None]) + sh1[:, None]
        q, k, v = linear(h, pre + "attn.qkv").reshape(b, -1, 3, heads, d // heads).unbind(2)  # (B, N, H, dh)
        att = torch.softmax(torch.einsum("bnhd,bmhd->bhnm", q, k) / math.sqrt(d // heads), dim=-1)
        tokens = tokens + g1[:, None] * linear(torch.einsum("bhnm,bmhd->bnhd", att, v).reshape(b, -1, d), pre + "attn.proj")
        h = linear(layer_norm(tokens) * (1 + sc2[:, None]) + sh2[:, None], pre + "mlp.fc1")
        h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
        tokens = tokens + g2[:, None] * linear(h, pre + "mlp.fc2")
    shift, scale = linear(silu(c), "final_layer.adaLN_modulation.1").chunk(2, 1)
    out = linear(layer_norm(tokens) * (1 + scale[:, None]) + shift[:, None], "final_layer.linear")
    out = out.reshape(b, gh, gw, p, p, model.out_channels)
    return torch.einsum("nhwpqc->nchpwq", out).reshape(b, model.out_channels, hgt, wid)


def test_matches_functional_reference():
    model = randomize_zero_layers(tiny())
    x, t, y = inputs()
    pos = torch.from_numpy(np_2d_sincos(48, 4, 4)).float()
    torch.testing.assert_close(model(x, t, y), reference_forward(model, x, t, y, pos), rtol=1e-5, atol=1e-5)


def test_matches_diffusers_dit():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(3)
    ref = diffusers.DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=24, in_channels=4, out_channels=4, num_layers=2, sample_size=8,
        patch_size=2, num_embeds_ada_norm=10, norm_eps=1e-6,
    ).eval()
    with torch.no_grad():
        for param in ref.parameters():
            param.normal_(0, 0.1)
    blocks = ref.transformer_blocks
    emb0 = blocks[0].norm1.emb
    for block in blocks:
        # diffusers' DiT embeds time with exponent i/(half-1); official DiT uses i/half.
        block.norm1.emb.time_proj.downscale_freq_shift = 0
        block.norm1.emb.load_state_dict(emb0.state_dict())  # DiT shares one conditioning embedder

    sd = {
        "x_embedder.proj.weight": ref.pos_embed.proj.weight, "x_embedder.proj.bias": ref.pos_embed.proj.bias,
        "t_embedder.mlp.0.weight": emb0.timestep_embedder.linear_1.weight, "t_embedder.mlp.0.bias": emb0.timestep_embedder.linear_1.bias,
        "t_embedder.mlp.2.weight": emb0.timestep_embedder.linear_2.weight, "t_embedder.mlp.2.bias": emb0.timestep_embedder.linear_2.bias,
        "y_embedder.embedding_table.weight": emb0.class_embedder.embedding_table.weight,
        "final_layer.adaLN_modulation.1.weight": ref.proj_out_1.weight, "final_layer.adaLN_modulation.1.bias": ref.proj_out_1.bias,
        "final_layer.linear.weight": ref.proj_out_2.weight, "final_layer.linear.bias": ref.proj_out_2.bias,
    }
    for i, block in enumerate(blocks):
        attn, pre = block.attn1, f"blocks.{i}."
        sd[pre + "attn.qkv.weight"] = torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight])
        sd[pre + "attn.qkv.bias"] = torch.cat([attn.to_q.bias, attn.to_k.bias, attn.to_v.bias])
        pairs = {"attn.proj": attn.to_out[0], "mlp.fc1": block.ff.net[0].proj, "mlp.fc2": block.ff.net[2], "adaLN_modulation.1": block.norm1.linear}
        for name, module in pairs.items():
            sd[pre + name + ".weight"], sd[pre + name + ".bias"] = module.weight, module.bias
    model = tiny()
    missing, unexpected = model.load_state_dict({k: v.detach() for k, v in sd.items()}, strict=False)
    assert missing == ["pos_embed"] and unexpected == []
    torch.testing.assert_close(model.pos_embed, ref.pos_embed.pos_embed, rtol=0, atol=1e-6)

    x, t, y = inputs()
    with torch.no_grad():
        expected = ref(x, timestep=t, class_labels=y).sample
        assert expected.abs().mean() > 1e-2
        torch.testing.assert_close(model(x, t, y), expected, rtol=1e-5, atol=1e-5)
