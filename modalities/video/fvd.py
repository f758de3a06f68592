"""rFVD features: a user-supplied I3D TorchScript file (the weights are not on PyPI; see docs/video-data.md).

Protocol (StyleGAN-V's ``frechet_video_distance``, as copied by the common FVD ports; spec video.md §3.11):
each frame's shorter side to 224 (bilinear), center crop 224x224, values in [-1, 1] (our data range
already; a wrong range gives meaningless FVDs), then ``detector(x, rescale=False, resize=False,
return_features=True)`` on ``(B, 3, T, 224, 224)`` -> 400-d features (the logits before the softmax).
The Fréchet distance is core's (:func:`core.eval.frechet.frechet_distance`), reported as ``rfvd``; the
file's SHA-256, the clip length and the clip count go into the report. Never compare FVDs across I3D
files, clip lengths or resolutions.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["I3D_SIDE", "I3D_NOTE", "sha256_of", "i3d_preprocess", "I3DFeatures"]

I3D_SIDE = 224
I3D_NOTE = ("rFVD skipped: pass i3d=PATH to an I3D TorchScript file called as detector(x, rescale=False, resize=False, "
            "return_features=True), e.g. StyleGAN-V's i3d_torchscript.pt (see docs/video-data.md)")


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file (identifies the I3D port in reports)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def i3d_preprocess(clips: Tensor, side: int = I3D_SIDE) -> Tensor:
    """``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, 3, T, side, side)``: shorter side to ``side`` (bilinear), center crop."""
    if clips.ndim != 5 or clips.shape[1] != 3:
        raise ValueError(f"I3D takes RGB clips (B, 3, T, H, W), got shape {tuple(clips.shape)}")
    batch, channels, frames, height, width = clips.shape
    flat = clips.movedim(2, 1).flatten(0, 1).float()  # (B·T, 3, H, W)
    scale = side / min(height, width)
    target = (max(side, round(height * scale)), max(side, round(width * scale)))
    if target != (height, width):
        flat = F.interpolate(flat, size=target, mode="bilinear", align_corners=False)
    top, left = (flat.shape[-2] - side) // 2, (flat.shape[-1] - side) // 2
    flat = flat[..., top : top + side, left : left + side].clamp(-1, 1)
    return flat.unflatten(0, (batch, frames)).movedim(1, 2).contiguous()


class I3DFeatures:
    """:class:`~core.eval.protocol.FeatureExtractor` of rFVD: I3D features of clips in [-1, 1].

    Args:
        path: the TorchScript file.
        device: where the detector runs.
        num_features: feature width the file returns (400 for StyleGAN-V's I3D; checked on the first call).
    """

    metric_name = "rfvd"

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", num_features: int = 400) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"i3d={path} does not exist; {I3D_NOTE.split(': ', 1)[1]}")
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format the I3D ports ship
                warnings.simplefilter("ignore", FutureWarning)
                self.detector = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as err:
            raise ValueError(f"i3d={path} is not a TorchScript file ({err}); export the I3D with torch.jit.save") from err
        self.device, self.num_features = torch.device(device), num_features
        self.info: dict[str, Any] = {
            "feature_extractor": "I3D (user-supplied TorchScript)", "i3d_path": str(path.resolve()), "i3d_sha256": sha256_of(path),
            "preprocessing": f"shorter side {I3D_SIDE} bilinear, center crop {I3D_SIDE}, range [-1, 1]",
            "call": "detector(x, rescale=False, resize=False, return_features=True)", "distance": "rfvd",
        }

    @torch.no_grad()
    def __call__(self, samples: Tensor) -> Tensor:
        features = self.detector(i3d_preprocess(samples).to(self.device), rescale=False, resize=False, return_features=True)
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"the I3D file returned features of shape {tuple(features.shape)}, expected (B, {self.num_features}); "
                             f"is it the feature-returning I3D TorchScript?")
        return features.float()
