"""benchmarks/rfid_sensitivity.py: the blur, the degradation rows it scores and the truncated decodes."""

import pytest
import torch

from benchmarks.rfid_sensitivity import BLUR_SIGMAS, NOISE_SIGMAS, TruncatedDecode, blur, degradation_rows, truncated_grid


def test_blur_keeps_constants_and_removes_high_frequencies():
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(blur(flat, 1.5), flat, atol=1e-6)
    checker = (torch.arange(16).view(1, 1, 16, 1) + torch.arange(16).view(1, 1, 1, 16)) % 2 * 2.0 - 1.0
    assert blur(checker, 1.0).abs().max() < 0.1 * checker.abs().max()  # the Nyquist pattern is averaged away


def test_degradation_rows_get_worse_with_strength():
    tiles = torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    features = lambda x: torch.cat([x.mean((2, 3)), x.std((2, 3))], dim=1).double()  # noqa: E731 (cheap stand-in for Inception)
    rows = degradation_rows(tiles, features)
    assert len(rows) == len(NOISE_SIGMAS) + len(BLUR_SIGMAS)
    noise, blurred = rows[: len(NOISE_SIGMAS)], rows[len(NOISE_SIGMAS):]
    for group in (noise, blurred):
        psnrs = [r["psnr"] for r in group]
        assert psnrs == sorted(psnrs, reverse=True)  # stronger degradation, lower PSNR
    assert all(r["rfid"] > 0 for r in rows)


def test_truncated_grid_cuts_at_the_stop_time_and_jumps_to_zero():
    from core.samplers.grids import time_grid

    times = time_grid(10)  # 1.0, 0.9, ..., 0.0
    cut = truncated_grid(times, 0.35)
    assert torch.allclose(cut, torch.tensor([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35, 0.0], dtype=torch.float64))
    assert torch.equal(truncated_grid(times, 0.0), times)
    with pytest.raises(ValueError, match="stop time must be in"):
        truncated_grid(times, 1.0)


def test_truncated_decode_ends_on_the_data_estimate_at_the_stop_time():
    """Stopping at t = 0.5 of a 2-step uniform grid is the plain 2-step decode (its last step starts at 0.5)
    and a truncated 1-step grid at 0.5 is two Euler steps 1 -> 0.5 -> 0."""
    from core import build_autoencoder
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    tok = build_autoencoder(tiny_config()).eval()
    z, noise = torch.randn(2, 4, 4, 4), torch.randn(2, 3, 16, 16)
    cut = TruncatedDecode(tok, 0.5)
    assert torch.equal(cut.decode(z, 2, noise=noise).sample, tok.decode(z, 2, noise=noise).sample)
    with torch.no_grad():
        x_half = noise + 0.5 * tok.velocity(noise, torch.ones(2), z)
        expected = x_half + 0.5 * tok.velocity(x_half, torch.full((2,), 0.5), z)
    out = cut.decode(z, 1, noise=noise)
    torch.testing.assert_close(out.sample, expected)
    assert out.num_function_evals == 2 and cut.latent_channels == tok.latent_channels  # the rest is the tokenizer's
