"""REPA (representation alignment, SSDD §3): align decoder tokens with frozen DINOv2 patch tokens.

The decoder names the transformer block to align through three attributes:

* ``repa_module`` — dotted submodule name; its output is ``(B, N, d)`` tokens in row-major order,
* ``repa_dim`` — ``d``,
* ``token_stride`` — pixels per token along each side (SSDD: 8).

A trainable projector ``Linear(d, d) – SiLU – Linear(d, D)`` maps the tokens to DINO's width ``D``.
The target is the frozen DINOv2 last-hidden-state patch tokens of the REAL image ``x`` (also during
distillation), resized so DINO yields the same ``H/stride × W/stride`` grid. Loss, in fp32:
``1 − mean cosine similarity`` over batch and tokens, so it lies in [0, 2].
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.loss_terms import LossInputs, LossTerm
from core.registry import LOSS_TERMS
from modalities.image.dinov2 import DINOv2Target

__all__ = ["REPALoss", "REPA_DECODER_ATTRIBUTES", "repa_projector"]

REPA_DECODER_ATTRIBUTES = ("repa_module", "repa_dim", "token_stride")


def repa_projector(feature_dim: int, target_dim: int) -> nn.Sequential:
    """``Linear(d, d) – SiLU – Linear(d, target_dim)`` (trainable, saved with the model)."""
    return nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.SiLU(), nn.Linear(feature_dim, target_dim))


class REPALoss(LossTerm):
    """``1 − cos(projector(decoder tokens), DINOv2 tokens of x)`` averaged over batch and tokens.

    Args:
        feature_module: dotted name of the decoder block whose output is aligned.
        feature_dim: width ``d`` of that block's tokens.
        token_stride: pixels per token along each side.
        target: the frozen DINOv2 target network.
    """

    def __init__(self, feature_module: str, feature_dim: int, token_stride: int, target: DINOv2Target) -> None:
        super().__init__()
        self.feature_name = feature_module
        self.token_stride = int(token_stride)
        self.projector = repa_projector(int(feature_dim), target.hidden_size)
        self.target = target

    def feature_module(self, decoder: nn.Module) -> str:
        return self.feature_name

    def token_grid(self, image_shape: torch.Size) -> tuple[int, int]:
        """``(H / stride, W / stride)`` token grid of ``(B, C, H, W)`` images."""
        height, width = image_shape[-2:]
        if height % self.token_stride or width % self.token_stride:
            raise ValueError(f"REPA: image size {(height, width)} is not a multiple of the decoder token stride {self.token_stride}")
        return height // self.token_stride, width // self.token_stride

    def forward(self, inputs: LossInputs) -> Tensor:
        tokens = _hooked_tokens(inputs.extras, self.feature_name)  # (B, N, d)
        grid = self.token_grid(inputs.x.shape)
        if tokens.shape[1] != grid[0] * grid[1]:
            raise ValueError(
                f"REPA: decoder block '{self.feature_name}' gave {tokens.shape[1]} tokens but a {tuple(inputs.x.shape[-2:])} "
                f"image with token_stride {self.token_stride} has {grid[0]}x{grid[1]}; fix the decoder's token_stride"
            )
        target = self.target(inputs.x, grid)  # (B, N, D) from the real image, no gradients
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            prediction = self.projector(tokens.float())  # (B, N, D)
            return 1.0 - F.cosine_similarity(prediction, target, dim=-1).mean()


def _hooked_tokens(extras: dict[str, Any], name: str) -> Tensor:
    features = extras.get("features", {})
    if name not in features:
        raise KeyError(
            f"REPA: no features of decoder block '{name}' in LossInputs.extras['features'] (got {sorted(features)}); "
            "call the decoder through DiffusionAutoencoder.training_losses or core.distill.distillation_losses, which hook it"
        )
    tokens = features[name]
    tokens = tokens[0] if isinstance(tokens, (tuple, list)) else tokens
    if not isinstance(tokens, Tensor) or tokens.ndim != 3:
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"REPA: decoder block '{name}' must output (B, N, d) tokens, got {shape}")
    return tokens


def _check_decoder(decoder: nn.Module | None) -> None:
    if decoder is None:
        raise ValueError("the REPA loss term needs the decoder: build it through core.builder.build_autoencoder, which passes it")
    missing = [a for a in REPA_DECODER_ATTRIBUTES if not hasattr(decoder, a)]
    if missing:
        raise ValueError(
            f"REPA needs a decoder with a transformer block to align, but {type(decoder).__name__} lacks {missing} "
            f"(expected attributes {REPA_DECODER_ATTRIBUTES}, e.g. the SSDD U-ViT decoder); remove the 'repa' loss term "
            "for this decoder"
        )


@LOSS_TERMS.register("repa")
def repa_term(
    decoder: nn.Module | None = None,
    dino_weights: str | None = None,
    allow_random_weights: bool = False,
    dino_config_overrides: dict[str, Any] | None = None,
) -> REPALoss:
    """REPA against frozen DINOv2 (SSDD weight 0.25); see :class:`REPALoss` and :class:`DINOv2Target`.

    ``decoder`` is passed by the builder; ``dino_weights`` is a local Hugging Face folder (default
    ``$DIFFTOK_DINOV2_WEIGHTS``); ``dino_config_overrides`` only shrinks a random DINO for tests.
    """
    _check_decoder(decoder)
    target = DINOv2Target(dino_weights, allow_random_weights=allow_random_weights, config_overrides=dino_config_overrides)
    return REPALoss(decoder.repa_module, decoder.repa_dim, decoder.token_stride, target)
