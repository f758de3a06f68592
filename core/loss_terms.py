"""Registry-backed auxiliary loss terms (perceptual losses plug in here).

A term is an ``nn.Module`` called with :class:`LossInputs` and returning a scalar. The autoencoder
adds ``weight * term(inputs)`` to the flow-matching loss. Factories that declare a ``decoder``
parameter receive the built decoder from the builder (e.g. to size a projector). ``reference`` is what the one-step
estimate should match: the clean data in training, the teacher's sample in distillation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from core.registry import LOSS_TERMS

__all__ = ["LossInputs", "LossTerm", "X0L1Loss"]


@dataclass
class LossInputs:
    """Everything a loss term may need from one training forward."""

    x: Tensor  # clean data (B, C, *S)
    reference: Tensor  # target for x0_hat (B, C, *S)
    x_t: Tensor  # noisy input (B, C, *S)
    t: Tensor  # (B,)
    prediction: Tensor  # network output u (B, C, *S)
    x0_hat: Tensor  # one-step estimate x_t + t·u (B, C, *S)
    z: Tensor  # latent fed to the decoder (B, C_z, *S/f)
    extras: dict[str, Any] = field(default_factory=dict)  # "features": {decoder submodule name: output}


class LossTerm(nn.Module):
    """Base class of auxiliary terms; frozen networks inside should be in eval mode.

    A term that needs intermediate decoder outputs overrides :meth:`feature_module`; the caller then
    hooks that submodule for the one velocity call and passes its output in
    ``inputs.extras["features"][name]``.
    """

    def feature_module(self, decoder: nn.Module) -> str | None:
        """Dotted name of the ``decoder`` submodule whose output this term needs, or None."""
        return None

    def forward(self, inputs: LossInputs) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class X0L1Loss(LossTerm):
    """Mean absolute error between the one-step estimate and the reference."""

    def forward(self, inputs: LossInputs) -> Tensor:
        return (inputs.x0_hat.float() - inputs.reference.float()).abs().mean()


@LOSS_TERMS.register("x0_l1")
def x0_l1() -> X0L1Loss:
    """L1 on the one-step data estimate."""
    return X0L1Loss()
