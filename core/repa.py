"""REPA (representation alignment, SSDD §3): align decoder tokens with a frozen network's tokens.

Modality agnostic. The decoder names the transformer block to align through three attributes:

* ``repa_module`` — dotted submodule name; its output is ``(B, N, d)`` tokens in row-major order,
* ``repa_dim`` — ``d``,
* ``token_stride`` — data samples per token along each spatial axis (SSDD: 8 pixels).

A trainable projector ``Linear(d, d) – SiLU – Linear(d, D)`` maps the tokens to the target width
``D``. The target network comes from the modality: it is registered in :data:`REPA_TARGETS` by
name (the image plugin registers ``dinov2``) and is called on the REAL data ``x`` (also during
distillation) with the token grid, returning ``(B, N, D)`` tokens without gradients. Loss, in
fp32: ``1 − mean cosine similarity`` over batch and tokens, so it lies in [0, 2].
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.loss_terms import LossInputs, LossTerm
from core.registry import LOSS_TERMS, Registry

__all__ = ["REPALoss", "REPATarget", "REPA_TARGETS", "REPA_DECODER_ATTRIBUTES", "repa_projector", "repa_term"]

REPA_DECODER_ATTRIBUTES = ("repa_module", "repa_dim", "token_stride")
REPA_TARGETS: Registry[Any] = Registry("REPA target network")  # name -> factory(**kwargs) -> REPATarget


class REPATarget(Protocol):
    """A frozen feature network REPA aligns with (e.g. the image plugin's DINOv2)."""

    hidden_size: int  # token width D

    def __call__(self, x: Tensor, grid: tuple[int, ...]) -> Tensor:
        """Tokens ``(B, prod(grid), D)`` of data ``x`` ``(B, C, *S)``, one per decoder token, no gradients."""
        ...


def repa_projector(feature_dim: int, target_dim: int) -> nn.Sequential:
    """``Linear(d, d) – SiLU – Linear(d, target_dim)`` (trainable, saved with the model)."""
    return nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.SiLU(), nn.Linear(feature_dim, target_dim))


class REPALoss(LossTerm):
    """``1 − cos(projector(decoder tokens), target tokens of x)`` averaged over batch and tokens.

    Args:
        feature_module: dotted name of the decoder block whose output is aligned.
        feature_dim: width ``d`` of that block's tokens.
        token_stride: data samples per token along each spatial axis.
        target: the frozen target network (an ``nn.Module`` following :class:`REPATarget`).
    """

    def __init__(self, feature_module: str, feature_dim: int, token_stride: int, target: nn.Module) -> None:
        super().__init__()
        self.feature_name = feature_module
        self.token_stride = int(token_stride)
        self.projector = repa_projector(int(feature_dim), target.hidden_size)
        self.target = target

    def feature_module(self, decoder: nn.Module) -> str:
        return self.feature_name

    def token_grid(self, data_shape: torch.Size) -> tuple[int, ...]:
        """``(S_1 / stride, S_2 / stride, ...)`` token grid of ``(B, C, *S)`` data."""
        spatial = tuple(data_shape[2:])
        if any(size % self.token_stride for size in spatial):
            raise ValueError(f"REPA: data size {spatial} is not a multiple of the decoder token stride {self.token_stride}")
        return tuple(size // self.token_stride for size in spatial)

    def forward(self, inputs: LossInputs) -> Tensor:
        tokens = _hooked_tokens(inputs.extras, self.feature_name)  # (B, N, d)
        grid = self.token_grid(inputs.x.shape)
        if tokens.shape[1] != math.prod(grid):
            raise ValueError(
                f"REPA: decoder block '{self.feature_name}' gave {tokens.shape[1]} tokens but data of size "
                f"{tuple(inputs.x.shape[2:])} with token_stride {self.token_stride} has {'x'.join(map(str, grid))}; "
                "fix the decoder's token_stride"
            )
        target = self.target(inputs.x, grid)  # (B, N, D) from the real data, no gradients
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


def _check_decoder(decoder: nn.Module | None) -> nn.Module:
    if decoder is None:
        raise ValueError("the REPA loss term needs the decoder: build it through core.builder.build_autoencoder, which passes it")
    missing = [a for a in REPA_DECODER_ATTRIBUTES if not hasattr(decoder, a)]
    if missing:
        raise ValueError(
            f"REPA needs a decoder with a transformer block to align, but {type(decoder).__name__} lacks {missing} "
            f"(expected attributes {REPA_DECODER_ATTRIBUTES}, e.g. the SSDD U-ViT decoder); remove the 'repa' loss term "
            "for this decoder"
        )
    return decoder


@LOSS_TERMS.register("repa")
def repa_term(decoder: nn.Module | None = None, target: str = "dinov2", **target_kwargs: Any) -> REPALoss:
    """REPA against the frozen target network registered as ``target`` (SSDD: ``dinov2``, weight 0.25).

    ``decoder`` is passed by the builder; every other keyword goes to the target's factory (for
    ``dinov2``: ``dino_weights``, ``allow_random_weights``, ``dino_config_overrides``).
    """
    decoder = _check_decoder(decoder)
    network = REPA_TARGETS.create(target, **target_kwargs)  # built before the projector: fixes the RNG order
    return REPALoss(decoder.repa_module, decoder.repa_dim, decoder.token_stride, network)
