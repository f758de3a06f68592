"""Sinusoidal time features: fp32 bit-unchanged, float64 equal to the official DiTo decoder's formula.

The official ``PositionalEmbedding`` computes its frequencies in fp32 and the angles ``t·f`` in the
input's dtype (``x.ger(freqs.to(x.dtype))``); difftok used to compute the angles in fp32 always,
which put a float64 model 1e-5 away from the official float64 forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from core.nets.layers import SinusoidalTimeEmbedding
from core.nets.unet_decoder import UNetDecoder
from tests.test_official_dito import manifest, reference_unet
from modalities.image.official.dito import dito_official_key

TIMES = torch.tensor([0.0, 1e-5 * 1000, 0.3 * 1000, 0.85 * 1000, 999.999])


def fp32_angle_features(t: Tensor, pe_dim: int, max_period: float = 10000.0) -> Tensor:
    """The formula before the fix (and still the fp32 one): everything in fp32."""
    half = pe_dim // 2
    freqs = (1.0 / max_period) ** (torch.arange(half, dtype=torch.float32) / (half - 1))
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def official_features(t: Tensor, pe_dim: int, max_period: float = 10000.0) -> Tensor:
    """The official DiTo formula: fp32 frequencies, angles ``t.ger(freqs)`` in ``t``'s dtype."""
    half = pe_dim // 2
    freqs = (1.0 / max_period) ** (torch.arange(half, dtype=torch.float32) / (half - 1))
    angles = t.ger(freqs.to(t.dtype))
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def test_fp32_features_and_embedding_are_bit_unchanged():
    torch.manual_seed(0)
    embed = SinusoidalTimeEmbedding(pe_dim=320, out_dim=64)
    assert torch.equal(embed.features(TIMES), fp32_angle_features(TIMES, 320))
    expected = embed.mlp(fp32_angle_features(TIMES, 320))
    assert torch.equal(embed(TIMES), expected)
    # fp16 / bf16 / integer times keep the fp32 angles (a half-precision 1000·t loses whole radians)
    for dtype in (torch.float16, torch.bfloat16, torch.int64):
        t = TIMES.round().to(dtype)
        assert embed.features(t).dtype == torch.float32
        assert torch.equal(embed.features(t), fp32_angle_features(t, 320))


def test_float64_features_equal_the_official_formula():
    embed = SinusoidalTimeEmbedding(pe_dim=320, out_dim=64).double()
    t = TIMES.double()
    features = embed.features(t)
    assert features.dtype == torch.float64
    assert torch.equal(features, official_features(t, 320))
    # the old fp32 angles are ~1e-5 off at t = 1000: this test would catch a regression
    assert (features - fp32_angle_features(t, 320).double()).abs().max() > 1e-6
    w1, b1, w2, b2 = (p.detach() for p in embed.mlp.parameters())
    expected = F.linear(F.silu(F.linear(official_features(t, 320), w1, b1)), w2, b2)
    torch.testing.assert_close(embed(t), expected, rtol=0, atol=1e-12)


def official_state_of(decoder: UNetDecoder) -> dict[str, Tensor]:
    """``decoder``'s tensors under the official ``renderer.net.*`` names (DiTo-B's manifest lists every name)."""
    ours = decoder.state_dict()
    names = [n for n, _ in manifest("b")["state_dict"] if n.startswith("renderer.net.")]
    state = {n: ours[dito_official_key(n).removeprefix("decoder.")] for n in names}
    assert len(state) == len(ours)  # every tensor of the decoder has its official name
    return state


def test_float64_decoder_matches_the_official_forward_to_1e_12(one_thread):
    """A narrow decoder with DiTo's topology (3 down / 2 mid / 4 up blocks, pe_dim 320) in float64
    against the functional official forward of tests/test_official_dito.py."""
    torch.manual_seed(0)
    decoder = UNetDecoder(stage_channels=(32, 64, 96, 96), down_blocks=3, mid_blocks=2, up_blocks=4, pe_dim=320, t_dim=64).double()
    gen = torch.Generator().manual_seed(1)
    x_t = torch.randn(2, 3, 16, 16, generator=gen, dtype=torch.float64)
    z = torch.randn(2, 4, 2, 2, generator=gen, dtype=torch.float64)
    t = torch.tensor([0.3, 0.85], dtype=torch.float64)
    with torch.no_grad():
        ours = decoder(x_t, 1000 * t, z)
        expected = reference_unet(official_state_of(decoder), x_t, t, z)
    assert expected.abs().max() > 1e-3, "degenerate reference"
    assert (ours - expected).abs().max() <= 1e-12 * expected.abs().max()
