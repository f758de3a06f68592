"""Local attention: window semantics, every backend agrees with the dense one, and the bias table trains (no stale cache)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.nn.functional as F

from modalities.image.ssdd import attention as attention_module
from modalities.image.ssdd.attention import LocalAttention, WindowLayout, resolve_backend
from modalities.image.ssdd.window_tiles import HaloTiling

# small convolutions/attention run faster and steadier on one thread (conftest fixture)
pytestmark = pytest.mark.usefixtures("one_thread")


GRIDS = [(4, 4), (5, 7), (9, 23), (17, 16)]


def brute_force_attention(module: LocalAttention, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Reference: 2-D table lookup per (query, key) pair, Δ = query - key, -1e7 outside ±r; plain softmax."""
    batch, n, dim = x.shape
    heads, hd, r = module.heads, module.head_dim, module.window - 1
    q = module.to_q(x).view(batch, n, heads, hd).transpose(1, 2)
    k = module.to_k(x).view(batch, n, heads, hd).transpose(1, 2)
    v = module.to_v(x).view(batch, n, heads, hd).transpose(1, 2)
    rows, cols = torch.arange(n) // width, torch.arange(n) % width
    dy = rows[:, None] - rows[None, :]  # (N, N) query row - key row
    dx = cols[:, None] - cols[None, :]
    visible = (dy.abs() <= r) & (dx.abs() <= r)
    table = module.relative_bias_table  # (2r+1, 2r+1, heads)
    looked_up = table[(dy + r).clamp(0, 2 * r), (dx + r).clamp(0, 2 * r)].permute(2, 0, 1)  # (heads, N, N)
    bias = torch.where(visible, looked_up, torch.tensor(-1e7))  # official-style large negative mask
    scores = q @ k.transpose(-1, -2) / hd**0.5 + bias  # (B, heads, N, N)
    out = scores.softmax(-1) @ v
    return module.out_proj(out.transpose(1, 2).reshape(batch, n, dim))


def make_attention(dim: int = 16, heads: int = 2, seed: int = 0) -> LocalAttention:
    torch.manual_seed(seed)
    module = LocalAttention(dim, heads, window=8)
    with torch.no_grad():
        module.relative_bias_table.normal_()  # non-zero so a wrong lookup shows
    return module


@pytest.mark.parametrize("grid", GRIDS)
def test_sdpa_matches_brute_force_window(grid):
    h, w = grid
    module = make_attention()
    x = torch.randn(2, h * w, 16)
    with torch.no_grad():
        out = module(x, WindowLayout.build(h, w, 7, "sdpa", x.device))
        ref = brute_force_attention(module, x, h, w)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("grid", [(4, 4), (9, 23)])
def test_flex_and_sdpa_backends_agree(grid):
    h, w = grid
    module = make_attention(seed=1)
    x = torch.randn(2, h * w, 16)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager FlexAttention warns that it is unfused
        flex = module(x, WindowLayout.build(h, w, 7, "flex_eager", x.device))
        sdpa = module(x, WindowLayout.build(h, w, 7, "sdpa", x.device))
    torch.testing.assert_close(flex, sdpa, atol=1e-5, rtol=1e-5)


def test_window_is_15x15():
    layout = WindowLayout.build(20, 20, 7, "sdpa", torch.device("cpu"))
    visible = layout.table_index < 15 * 15  # (N, N)
    centre = 10 * 20 + 10
    assert int(visible[centre].sum()) == 225
    assert int(visible[0].sum()) == 8 * 8  # corner token: 8 rows × 8 columns
    assert resolve_backend("auto", torch.device("cpu")) == "local"  # linear-memory default off CUDA
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("xformers", torch.device("cpu"))


def test_relative_bias_trains_and_is_never_cached():
    torch.manual_seed(0)
    module = LocalAttention(16, 2, window=8)
    h, w = 6, 5
    x = torch.randn(2, h * w, 16)
    layout = WindowLayout.build(h, w, 7, "sdpa", x.device)
    before = module(x, layout)
    loss = F.mse_loss(before, torch.randn_like(before))
    loss.backward()
    assert module.relative_bias_table.grad.abs().sum() > 0
    torch.optim.SGD([module.relative_bias_table], lr=10.0).step()
    after = module(x, layout)  # same layout object: only the table changed
    assert (after - before).abs().max() > 1e-3
    with torch.no_grad():
        torch.testing.assert_close(after, brute_force_attention(module, x, h, w), atol=2e-5, rtol=1e-5)


def _compare_compiled_flex(device: str, grids: list[tuple[int, int]]) -> None:
    torch.manual_seed(0)
    module = make_attention(dim=32, heads=2).to(device)
    for h, w in grids:
        x = torch.randn(2, h * w, 32, device=device, requires_grad=device == "cuda")
        outs, grads = {}, {}
        for backend in ("flex", "sdpa"):
            module.zero_grad()
            with torch.set_grad_enabled(device == "cuda"):
                outs[backend] = module(x, WindowLayout.build(h, w, 7, backend, x.device))
            if device == "cuda":  # FlexAttention has no CPU backward
                outs[backend].square().sum().backward()
                grads[backend] = module.relative_bias_table.grad.clone()
        torch.testing.assert_close(outs["flex"], outs["sdpa"], atol=1e-4, rtol=1e-4)
        if grads:
            torch.testing.assert_close(grads["flex"], grads["sdpa"], atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_flex_matches_sdpa_on_cuda():
    _compare_compiled_flex("cuda", [(12, 10), (32, 32), (32, 24)])


@pytest.mark.skipif(not os.environ.get("DIFFTOK_COMPILE_TESTS"), reason="compiling FlexAttention on CPU takes ~30 s per grid; set DIFFTOK_COMPILE_TESTS=1")
def test_compiled_flex_matches_sdpa_on_cpu():
    _compare_compiled_flex("cpu", [(12, 10)])


# ---------------------------------------------------------------------------------- local (halo tiles)
def local_layout(h: int, w: int, radius: int, query_tile: int) -> WindowLayout:
    return WindowLayout(h, w, radius, "local", tiling=HaloTiling.build(h, w, radius, torch.device("cpu"), query_tile))


LOCAL_CASES = [  # (grid, window w, query tile): square / non-square, tiles that do and do not divide the grid
    ((4, 4), 8, 8), ((5, 7), 2, 2), ((9, 23), 8, 4), ((17, 16), 8, 8), ((30, 30), 8, 8),
    ((33, 26), 4, 5), ((1, 40), 3, 8), ((40, 3), 8, 3), ((24, 24), 1, 4),
]


@pytest.mark.parametrize("grid,window,query_tile", LOCAL_CASES)
def test_local_matches_dense_forward_and_gradients(grid, window, query_tile):
    h, w = grid
    torch.manual_seed(h * 100 + w)
    module = LocalAttention(16, 2, window=window)
    with torch.no_grad():
        module.relative_bias_table.normal_()
    x = torch.randn(2, h * w, 16)
    outs, grads = {}, {}
    for name, layout in (("dense", WindowLayout.build(h, w, window - 1, "sdpa", x.device)),
                         ("local", local_layout(h, w, window - 1, query_tile))):
        module.zero_grad()
        xi = x.clone().requires_grad_(True)
        outs[name] = module(xi, layout)
        (outs[name] * torch.linspace(-1, 1, outs[name].numel()).view_as(outs[name])).sum().backward()
        grads[name] = (module.relative_bias_table.grad.clone(), xi.grad.clone())
    torch.testing.assert_close(outs["local"], outs["dense"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads["local"][0], grads["dense"][0], atol=1e-5, rtol=1e-5)  # relative-bias gradient
    torch.testing.assert_close(grads["local"][1], grads["dense"][1], atol=1e-5, rtol=1e-5)


def test_local_default_tiling_matches_brute_force():
    module = make_attention(seed=3)
    h, w = 26, 19  # more than one tile along both axes, padded border tiles
    x = torch.randn(2, h * w, 16)
    layout = WindowLayout.build(h, w, 7, "local", x.device)
    assert layout.tiling is not None and layout.tiling.num_tiles > 1 and layout.tiling.key_padding is not None
    with torch.no_grad():
        torch.testing.assert_close(module(x, layout), brute_force_attention(module, x, h, w), atol=2e-5, rtol=1e-5)


def test_auto_backend_per_device():
    assert resolve_backend("auto", torch.device("cpu")) == "local"
    assert resolve_backend("auto", torch.device("cuda")) == "flex"
    assert resolve_backend("auto", torch.device("meta")) == "sdpa"  # FLOP counts keep the dense convention
    with torch.device("meta"):  # the local path still builds on meta (shape-only models)
        x = torch.randn(1, 30 * 20, 16)
        out = LocalAttention(16, 2)(x, WindowLayout.build(30, 20, 7, "local", x.device))
    assert out.shape == x.shape


def test_local_memory_grows_linearly_with_tokens():
    """The per-forward tensors (bias, halo keys) scale with N · halo, never N²."""
    per_token = []
    for side in (64, 128, 256):
        tiling = HaloTiling.build(side, side, 7, torch.device("cpu"))
        table = torch.zeros(15, 15, 4)
        bias = tiling.bias(table, torch.float32)
        keys = tiling.keys(torch.zeros(1, 4, side * side, 2))
        per_token.append((bias.numel() / side**2, keys.numel() / side**2))
    assert per_token[0][0] == per_token[1][0] == per_token[2][0] <= 4 * 22 * 22
    assert max(k for _, k in per_token) <= 4 * 2 * (22 * 22) / 64 * 1.01


def test_flex_block_mask_is_built_from_blocks_and_covers_every_window():
    from torch.nn.attention.flex_attention import create_block_mask

    h, w, r = 17, 50, 7
    n, padded = h * w, -(-h * w // 128) * 128
    layout = WindowLayout.build(h, w, r, "flex_eager", torch.device("cpu"))

    def in_window(b, head, q_idx, kv_idx):
        return ((q_idx // w - kv_idx // w).abs() <= r) & ((q_idx % w - kv_idx % w).abs() <= r) & (kv_idx < n)

    exact = create_block_mask(in_window, None, None, padded, padded, device="cpu").to_dense()
    ours = layout.block_mask.to_dense()
    assert bool((ours >= exact).all()), "a key block holding a visible pair was skipped"
    assert int(ours.sum()) < ours.numel()  # and far blocks are skipped


# ---------------------------------------------------------------------------------- xformers
def test_xformers_backend_errors_name_the_fix(monkeypatch):
    with pytest.raises(ValueError, match="CUDA only.*attention_backend='auto'"):
        resolve_backend("xformers", torch.device("cpu"))
    attention_module._xformers_ops.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "xformers", None)  # import fails as if not installed
    monkeypatch.setitem(__import__("sys").modules, "xformers.ops", None)
    with pytest.raises(ImportError, match=r"pip install 'difftok\[xformers\]'"):
        resolve_backend("xformers", torch.device("cuda"))
    attention_module._xformers_ops.cache_clear()


def test_xformers_call_layout_with_a_stand_in_kernel(monkeypatch):
    """The BMHK transposes and the aligned, batch-expanded bias, checked on CPU with an SDPA stand-in."""
    seen = {}

    class StandIn:
        @staticmethod
        def memory_efficient_attention(q, k, v, attn_bias):  # xformers' (B, M, H, d) layout
            seen["bias_row_stride"] = attn_bias.stride(-2)
            seen["bias_shape"] = tuple(attn_bias.shape)
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_bias)
            return out.transpose(1, 2)

    monkeypatch.setattr(attention_module, "_xformers_ops", lambda: StandIn)
    module = make_attention(seed=4)
    h, w = 23, 21
    x = torch.randn(3, h * w, 16)
    local = WindowLayout.build(h, w, 7, "local", x.device)
    as_xformers = WindowLayout(h, w, 7, "xformers", tiling=local.tiling)
    with torch.no_grad():
        torch.testing.assert_close(module(x, as_xformers), module(x, WindowLayout.build(h, w, 7, "sdpa", x.device)), atol=1e-5, rtol=1e-5)
    assert seen["bias_row_stride"] % 8 == 0 and seen["bias_shape"][0] == 3


def _xformers_usable() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import xformers.ops  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.gpu
@pytest.mark.skipif(not _xformers_usable(), reason="needs CUDA and the xformers package (pip install 'difftok[xformers]')")
def test_xformers_matches_dense_on_cuda():
    torch.manual_seed(0)
    module = make_attention(dim=64, heads=2).cuda()
    for h, w in [(12, 10), (32, 32), (40, 24)]:
        x = torch.randn(2, h * w, 64, device="cuda")
        with torch.no_grad():
            ours = module(x, WindowLayout.build(h, w, 7, "xformers", x.device))
            dense = module(x, WindowLayout.build(h, w, 7, "sdpa", x.device))
        torch.testing.assert_close(ours, dense, atol=1e-4, rtol=1e-4)
