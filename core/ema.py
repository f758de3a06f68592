"""Exponential moving average of model weights with a start step and warm-up.

Before ``start_step`` the average simply copies the weights. From then on, with ``n`` the number
of updates since the start, ``decay_n = min(decay, (1 + n) / (10 + n))`` (SSDD: 0.999 from 50k).
The shadow weights are buffers of this module, so they are saved in and restored from checkpoints.
"""

from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["EMA"]


class EMA(nn.Module):
    """EMA of ``model``'s floating-point parameters and buffers.

    Args:
        model: the trained model (not stored; only its shapes are copied).
        decay: the target decay.
        start_step: global step from which averaging starts.
        warmup: apply the ``(1 + n) / (10 + n)`` warm-up.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, start_step: int = 0, warmup: bool = True) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.start_step, self.warmup = decay, start_step, warmup
        self._names = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point]
        for i, key in enumerate(self._names):
            self.register_buffer(f"shadow_{i}", model.state_dict()[key].detach().clone().float())
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def decay_at(self, step: int) -> float:
        """Decay used for an update at global ``step`` (0 = plain copy)."""
        if step < self.start_step:
            return 0.0
        n = step - self.start_step
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> float:
        """Fold ``model``'s current weights in; returns the decay used."""
        decay = self.decay_at(step)
        state = model.state_dict()
        for i, key in enumerate(self._names):
            shadow = getattr(self, f"shadow_{i}")
            shadow.lerp_(state[key].detach().float(), 1.0 - decay)
        self.num_updates += 1
        return decay

    def initial_state(self, model_state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
        """This module's state for an average that starts at ``model_state`` (keys under ``prefix``)."""
        state = {f"shadow_{i}": model_state[prefix + key].detach().float().clone() for i, key in enumerate(self._names)}
        state["num_updates"] = torch.zeros((), dtype=torch.long)
        return state

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model``."""
        state = model.state_dict()
        for i, key in enumerate(self._names):
            state[key].copy_(getattr(self, f"shadow_{i}").to(state[key].dtype))

    def averaged_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """``model.state_dict()`` with the averaged values substituted (model left untouched)."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for i, key in enumerate(self._names):
            state[key] = getattr(self, f"shadow_{i}").to(state[key].dtype).clone()
        return state

    @contextmanager
    def swapped_into(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily run ``model`` with the averaged weights."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            model.load_state_dict(backup)
