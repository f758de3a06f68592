"""Tiled / windowed decoding and windowed encoding of clips (causal time axis, core.tiling)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import modalities.video  # noqa: F401
from core.autoencoder import DiffusionAutoencoder
from core.builder import build_autoencoder
from core.latent.regularizers import layernorm_frames
from core.shapes import upsample_nearest
from core.tiling import LatentTiling, latent_to_data_extent, windowed_encode
from modalities.video.models import video_dito_config, video_encoder


def tiny_video(**decoder_kwargs) -> DiffusionAutoencoder:
    torch.manual_seed(0)
    cfg = video_dito_config("tiny")
    cfg.decoder.kwargs.update(decoder_kwargs)
    return build_autoencoder(cfg).eval()


class PointwiseDecoder(nn.Module):
    """A velocity that reads only its own data sample and that sample's latent: any seam, or any
    misalignment between a tile's latents and its data slice, shows up as an exact difference."""

    def __init__(self, rule) -> None:
        super().__init__()
        self.rule = rule

    def forward(self, x_t, t, z):
        return 0.5 * x_t + upsample_nearest(z, self.rule)[:, :3] * (1 + t.view(-1, 1, 1, 1, 1) / 1000)


def pointwise_tokenizer() -> DiffusionAutoencoder:
    encoder = video_encoder("tiny", base_channels=4, channels_mult=(1, 1, 1, 1))
    return DiffusionAutoencoder(encoder, layernorm_frames(), PointwiseDecoder(encoder.shape_rule)).eval()


def test_causal_extents_use_the_shape_rule_not_the_factor():
    # latent window 2:5 of a 4x causal axis decodes to ONE frame for latent 2 (data frame 8) + 4 per later latent
    window, overlaps = latent_to_data_extent(2, 5, 1, 2, 4, causal=True)
    assert window == slice(8, 17) and overlaps == (1, 5)  # (o - 1)·f + 1 frames, not o·f (FastVideo bug)
    assert latent_to_data_extent(2, 5, 1, 2, 8, causal=False) == (slice(16, 40), (8, 16))


@pytest.mark.parametrize("tile", [(2, None, None), (3, 2, 2), (4, None, 3)])
def test_tiled_decode_is_exact_for_a_local_decoder_on_causal_windows(tile):
    tok = pointwise_tokenizer()
    z = torch.randn(1, 16, 6, 4, 4)  # 21 frames
    noise = torch.randn(tok.data_shape(tuple(z.shape)))
    whole = tok.decode(z, 3, noise=noise).sample
    tiled = tok.decode(z, 3, noise=noise, tile=tile).sample
    assert LatentTiling(tok, tuple(z.shape), tile).num_tiles > 1
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)  # float rounding of the blend only


def test_tiled_decode_of_the_real_decoder_stays_close_to_untiled():
    """The (2+1)-D UNet sees neighbouring frames through its temporal convs (and whole frames through
    per-frame GroupNorm), so windows are not exact; with ONE shared noise and 2-latent overlaps the
    tiled decode of a 17×32×32 clip stays within mean |Δ| < 0.1 of the output std (measured 0.025
    temporal-only, 0.058 with 3×3-latent spatial tiles as well, at 1 and at 4 steps)."""
    tok = tiny_video(temporal_attention=False)
    torch.manual_seed(1)
    z = torch.randn(1, 16, 5, 4, 4)
    noise = torch.randn(tok.data_shape(tuple(z.shape)))
    for steps in (1, 4):
        whole = tok.decode(z, steps, noise=noise).sample
        for tile, overlap in [((3, None, None), (2, 0, 0)), ((3, 3, 3), (2, 2, 2))]:
            tiled = tok.decode(z, steps, noise=noise, tile=tile, overlap=overlap).sample
            assert tiled.shape == whole.shape
            gap = (tiled - whole).abs().mean() / whole.std()
            assert gap < 0.1, (steps, tile, float(gap))


def test_a_clip_longer_than_the_window_decodes_in_windows():
    tok = tiny_video()
    z = torch.randn(1, 16, 9, 2, 2)  # 33 frames, windows of 3 latents (9 frames)
    out = tok.decode(z, 2, tile=(3, None, None), generator=torch.Generator().manual_seed(0)).sample
    assert out.shape == (1, 3, 33, 16, 16) and torch.isfinite(out).all()
    assert LatentTiling(tok, tuple(z.shape), (3, None, None)).num_tiles == 4
    recon = tok.reconstruct(torch.rand(1, 3, 33, 16, 16) * 2 - 1, 1, tile=(3, None, None)).sample
    assert recon.shape == (1, 3, 33, 16, 16)


@pytest.mark.parametrize("window", [1, 2, 3])
def test_windowed_encode_is_exact(window):
    tok = tiny_video()
    x = torch.rand(2, 3, 17, 32, 32) * 2 - 1
    with torch.no_grad():
        whole = tok.encode(x).latent_dist.mode()
        pieces = windowed_encode(tok, x, window=window).latent_dist.mode()
    torch.testing.assert_close(pieces, whole, atol=1e-5, rtol=0)


def test_windowed_encode_errors_name_the_fix():
    tok = tiny_video()
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        windowed_encode(tok, torch.zeros(1, 3, 5, 16, 16), window=0)
    image = build_autoencoder(__import__("tests.conftest", fromlist=["tiny_config"]).tiny_config())
    with pytest.raises(ValueError, match="exactly one causal axis"):
        windowed_encode(image, torch.zeros(1, 3, 16, 16), window=2)
