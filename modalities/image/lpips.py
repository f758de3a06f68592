"""LPIPS-VGG16 perceptual distance (Zhang et al. 2018, v0.1) as a frozen network and a loss term.

``LPIPS(x, y)`` for images in [-1, 1]: scale the inputs (LPIPS' ScalingLayer), run both through the
VGG16 ``features`` stack, take the five ReLU stages conv1_2 … conv5_3, normalise each feature vector
over channels, square the differences, weight channels with the 1×1 "lin" heads, average over
space and sum over stages. As in SSDD the normalisation eps is 1e-8 (lpips uses 1e-10).

Weights are never downloaded: the VGG16 backbone comes from ``vgg_weights`` or
``$DIFFTOK_VGG16_WEIGHTS`` (a torchvision ``vgg16`` state dict), the heads from ``lin_weights`` or
the ``weights/v0.1/vgg.pth`` file bundled with the ``lpips`` PyPI package. All of it is frozen
(non-persistent buffers, eval mode), so none of it is trained, checkpointed or exported.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from core.loss_terms import LossInputs, LossTerm
from core.nets.frozen import freeze_as_buffers
from core.registry import LOSS_TERMS
from core.weight_import import import_state_dict
from core.weight_files import MissingWeightsError, load_tensor_file, resolve_weights_path

__all__ = ["LPIPS", "LPIPSLoss", "VGG16Features", "channel_normalize", "VGG16_WEIGHTS_ENV", "bundled_lin_weights"]

VGG16_WEIGHTS_ENV = "DIFFTOK_VGG16_WEIGHTS"
NORM_EPS = 1e-8
# torchvision vgg16 "features" configuration ("D"); "M" = 2x2 max-pool
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
STAGE_ENDS = (4, 9, 16, 23, 30)  # features[:4] ends at relu1_2, ..., features[23:30] at relu5_3
STAGE_CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS ScalingLayer: (x - shift) / scale
SCALE = (0.458, 0.448, 0.450)

VGG_HOW_TO_GET = (
    "LPIPS needs the torchvision VGG16 ImageNet weights (IMAGENET1K_V1, 'vgg16-397923af.pth', ~528 MB); nothing is "
    "downloaded at run time. On a machine with internet, torchvision.models.vgg16(weights='IMAGENET1K_V1') stores it "
    "under ~/.cache/torch/hub/checkpoints/. Pass the file as vgg_weights=PATH (recipes: "
    f"model.loss_terms.lpips.kwargs.vgg_weights=PATH) or set ${VGG16_WEIGHTS_ENV}. Tests only: allow_random_weights=True."
)
LIN_HOW_TO_GET = (
    "LPIPS needs its linear heads ('vgg.pth' of LPIPS v0.1, 5 tensors lin{0..4}.model.1.weight): pip install lpips "
    "(the package bundles weights/v0.1/vgg.pth) or pass lin_weights=PATH. Tests only: allow_random_weights=True."
)


def channel_normalize(features: Tensor, eps: float = NORM_EPS) -> Tensor:
    """``f / (||f||_2 over channels + eps)`` for ``(B, C, h, w)``; finite gradients where ``f = 0``."""
    # vector_norm's backward is 0 (not NaN) at a zero vector, unlike sqrt(sum(f**2))
    return features / (torch.linalg.vector_norm(features, dim=1, keepdim=True) + eps)


class VGG16Features(nn.Module):
    """torchvision ``vgg16().features[:30]`` with the same layer indices (so state-dict keys match).

    ``forward(x) -> [relu1_2, relu2_2, relu3_3, relu4_3, relu5_3]``.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        for module in self.features:  # torchvision's VGG init (only matters for random weights)
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        outputs, start = [], 0
        for end in STAGE_ENDS:
            for index in range(start, end):
                x = self.features[index](x)
            outputs.append(x)
            start = end
        return outputs


def _vgg_key(key: str) -> str | None:
    """torchvision vgg16 key -> ours; the classifier is dropped on purpose (LPIPS does not use it)."""
    if key.startswith("classifier."):
        return None
    if re.fullmatch(r"\d+\.(weight|bias)", key):  # a bare ``features`` state dict
        key = f"features.{key}"
    if re.fullmatch(r"features\.\d+\.(weight|bias)", key):
        return key
    raise KeyError(key)


def _lin_key(key: str) -> str:
    """lpips ``lin{i}.model.{j}.weight`` -> ``{i}.weight`` of our ModuleList of 1x1 convs."""
    match = re.fullmatch(r"lin(\d)\.model\.\d\.weight", key)
    if match is None:
        raise KeyError(key)
    return f"{match.group(1)}.weight"


def bundled_lin_weights() -> Path | None:
    """``weights/v0.1/vgg.pth`` of the installed ``lpips`` package (located without importing it)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "vgg.pth"
    return path if path.is_file() else None


class LPIPS(nn.Module):
    """Frozen LPIPS-VGG16 distance; ``forward(x, y) -> (B,)`` for images ``(B, 3, H, W)`` in [-1, 1].

    Args:
        vgg_weights: torchvision vgg16 state dict (``.pth``/``.safetensors``, full model or its
            ``features``); default ``$DIFFTOK_VGG16_WEIGHTS``.
        lin_weights: LPIPS v0.1 VGG heads; default: the file bundled with the ``lpips`` package.
        allow_random_weights: use random weights for whatever is missing (with a warning) instead
            of raising :class:`MissingWeightsError`; for tests only.

    Gradients flow into the inputs; the network itself has no parameters and no state-dict entries.
    """

    def __init__(self, vgg_weights: str | None = None, lin_weights: str | None = None, *, allow_random_weights: bool = False) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.vgg = VGG16Features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in STAGE_CHANNELS)
        vgg_path = resolve_weights_path(vgg_weights, VGG16_WEIGHTS_ENV, what="LPIPS VGG16 weights", how_to_get=VGG_HOW_TO_GET)
        lin_path = resolve_weights_path(lin_weights, None, what="LPIPS linear heads", how_to_get=LIN_HOW_TO_GET)
        lin_path = lin_path or bundled_lin_weights()
        if vgg_path is not None:
            import_state_dict(self.vgg, load_tensor_file(vgg_path), _vgg_key, source=str(vgg_path))
        else:
            self._random_or_raise(allow_random_weights, "VGG16 backbone", VGG_HOW_TO_GET)
        if lin_path is not None:
            import_state_dict(self.lins, load_tensor_file(lin_path), _lin_key, source=str(lin_path))
        else:
            self._random_or_raise(allow_random_weights, "linear heads", LIN_HOW_TO_GET)
            for lin in self.lins:  # heads are non-negative in LPIPS, which keeps distances >= 0
                nn.init.uniform_(lin.weight, 0.0, 2.0 / lin.in_channels)
        freeze_as_buffers(self)

    @staticmethod
    def _random_or_raise(allowed: bool, part: str, how_to_get: str) -> None:
        if not allowed:
            raise MissingWeightsError(f"no weights for the LPIPS {part}. {how_to_get}")
        warnings.warn(f"LPIPS {part} has RANDOM weights (allow_random_weights=True): not a perceptual distance", stacklevel=3)

    def train(self, mode: bool = True) -> "LPIPS":
        # frozen metric: dropout/batch statistics must never switch on
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects two (B, 3, H, W) images of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if min(x.shape[-2:]) < 16:
            raise ValueError(f"LPIPS-VGG needs images of at least 16x16 pixels (4 poolings before relu5_3), got {tuple(x.shape[-2:])}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            both = torch.cat([x, y]).float()  # one backbone pass for both images
            stages = self.vgg((both - self.shift) / self.scale)
            distance = torch.zeros(x.shape[0], device=x.device)
            for features, lin in zip(stages, self.lins):
                fx, fy = channel_normalize(features).chunk(2)  # (B, C, h, w) each
                distance = distance + lin((fx - fy).square()).mean(dim=(1, 2, 3))  # (B,)
        return distance


class LPIPSLoss(LossTerm):
    """Mean LPIPS between the one-step estimate ``x0_hat`` and the ``reference`` (fp32)."""

    def __init__(self, lpips: LPIPS) -> None:
        super().__init__()
        self.lpips = lpips

    def forward(self, inputs: LossInputs) -> Tensor:
        return self.lpips(inputs.x0_hat, inputs.reference).mean()


@LOSS_TERMS.register("lpips")
def lpips_term(vgg_weights: str | None = None, lin_weights: str | None = None, allow_random_weights: bool = False) -> LPIPSLoss:
    """LPIPS-VGG16(x0_hat, reference) (SSDD weight 0.5, DiTo +LPIPS weight 0.5); see :class:`LPIPS`."""
    return LPIPSLoss(LPIPS(vgg_weights, lin_weights, allow_random_weights=allow_random_weights))
