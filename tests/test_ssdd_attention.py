"""Local attention: window semantics, the two backends agree, and the bias table trains (no stale cache)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.nn.functional as F

from modalities.image.ssdd.attention import LocalAttention, WindowLayout, resolve_backend

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
    assert resolve_backend("auto", torch.device("cpu")) == "sdpa"
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
