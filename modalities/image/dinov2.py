"""Frozen DINOv2 patch-token targets for REPA (``transformers.Dinov2Model``; never downloaded).

Registered as the REPA target ``dinov2`` (:data:`core.repa.REPA_TARGETS`), SSDD's choice.

Real weights come from a local Hugging Face folder (``config.json`` + ``model.safetensors`` of
``facebook/dinov2-base``) given as ``weights`` or ``$DIFFTOK_DINOV2_WEIGHTS``. Random weights
(``Dinov2Config()`` = ViT-B/14, optionally overridden for tiny tests) only with
``allow_random_weights=True``. The network is frozen (non-persistent buffers, eval mode).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.nets.frozen import FrozenModule
from core.repa import REPA_TARGETS
from core.weight_files import MissingWeightsError, resolve_weights_path

__all__ = ["DINOv2Target", "dinov2_target", "DINOV2_WEIGHTS_ENV", "IMAGENET_MEAN", "IMAGENET_STD"]

DINOV2_WEIGHTS_ENV = "DIFFTOK_DINOV2_WEIGHTS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HOW_TO_GET = (
    "REPA needs DINOv2-base weights in a local Hugging Face folder (config.json + model.safetensors of "
    "'facebook/dinov2-base'); nothing is downloaded at run time. On a machine with internet: "
    "huggingface_hub.snapshot_download('facebook/dinov2-base', local_dir=DIR). Pass DIR as dino_weights=DIR "
    f"(recipes: model.loss_terms.repa.kwargs.dino_weights=DIR) or set ${DINOV2_WEIGHTS_ENV}. "
    "Tests only: allow_random_weights=True."
)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - declared dependency
        raise ImportError("the REPA loss needs the 'transformers' package for DINOv2: pip install transformers") from err
    return transformers


class DINOv2Target(nn.Module):
    """Frozen DINOv2 whose last-hidden-state patch tokens (CLS and registers dropped) are REPA targets.

    Args:
        weights: local Hugging Face folder of a DINOv2 model; default ``$DIFFTOK_DINOV2_WEIGHTS``.
        allow_random_weights: without weights, build a randomly initialised model (with a warning)
            instead of raising :class:`MissingWeightsError`; for tests only.
        config_overrides: ``Dinov2Config`` fields for the random model (e.g. fewer layers in tests);
            the default is the real DINOv2-base configuration.
    """

    def __init__(self, weights: str | None = None, *, allow_random_weights: bool = False, config_overrides: dict[str, Any] | None = None) -> None:
        super().__init__()
        tf = _transformers()
        path = resolve_weights_path(weights, DINOV2_WEIGHTS_ENV, what="DINOv2 weights", how_to_get=HOW_TO_GET)
        if path is not None:
            if config_overrides:
                raise ValueError("dino_config_overrides only applies to random DINOv2 weights; drop it when loading real weights")
            if not (path / "config.json").is_file():
                raise MissingWeightsError(f"{path} is not a Hugging Face model folder (no config.json). {HOW_TO_GET}")
            model = tf.Dinov2Model.from_pretrained(str(path), local_files_only=True)
        elif allow_random_weights:
            warnings.warn("DINOv2 has RANDOM weights (allow_random_weights=True): REPA targets are meaningless", stacklevel=2)
            model = tf.Dinov2Model(tf.Dinov2Config(**(config_overrides or {})))
        else:
            raise MissingWeightsError(f"no DINOv2 weights. {HOW_TO_GET}")
        config = model.config
        self.patch_size = int(config.patch_size)
        self.hidden_size = int(config.hidden_size)
        self.num_prefix_tokens = 1 + int(getattr(config, "num_register_tokens", 0) or 0)  # CLS (+ registers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.dino = FrozenModule(model.float())

    def preprocess(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """[-1, 1] images -> ImageNet-normalised, bicubic-resized to ``grid`` x patch size pixels."""
        size = (grid[0] * self.patch_size, grid[1] * self.patch_size)
        x = ((x.float() + 1) / 2 - self.mean) / self.std
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False)

    @torch.no_grad()
    def forward(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """Patch tokens ``(B, grid_h·grid_w, hidden)`` (fp32, no gradients) of images ``x`` in [-1, 1]."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            hidden = self.dino(pixel_values=self.preprocess(x, grid)).last_hidden_state  # (B, P + N, D)
        tokens = hidden[:, self.num_prefix_tokens:]
        if tokens.shape[1] != grid[0] * grid[1]:  # pragma: no cover - guards a DINO layout change
            raise RuntimeError(f"DINOv2 returned {tokens.shape[1]} patch tokens for a {grid} grid")
        return tokens.float()


@REPA_TARGETS.register("dinov2")
def dinov2_target(
    dino_weights: str | None = None, allow_random_weights: bool = False, dino_config_overrides: dict[str, Any] | None = None
) -> DINOv2Target:
    """The REPA target of ``model.loss_terms.repa.kwargs`` (``dino_weights``: local Hugging Face folder,
    default ``$DIFFTOK_DINOV2_WEIGHTS``; ``dino_config_overrides`` only shrinks a random DINO for tests)."""
    return DINOv2Target(dino_weights, allow_random_weights=allow_random_weights, config_overrides=dino_config_overrides)
