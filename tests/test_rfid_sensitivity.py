"""benchmarks/rfid_sensitivity.py: the blur and the degradation rows it scores."""

import torch

from benchmarks.rfid_sensitivity import BLUR_SIGMAS, NOISE_SIGMAS, blur, degradation_rows


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
