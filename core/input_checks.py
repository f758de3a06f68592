"""Checks of what callers hand the public tokenizer API (``encode`` / ``decode`` / ``reconstruct`` and the
diffusers adapter): every bad input raises one :class:`InputError` whose message names the fix.

Without them, an integer image reaches a convolution as a raw dtype error, ``num_steps=0`` silently
became the default step count, and data far outside [-1, 1] (e.g. 0..255 pixels, or 1e30) encoded to
garbage or NaN latents without a word.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import torch
from torch import Tensor

__all__ = ["InputError", "FAR_OUT_OF_RANGE", "check_float_tensor", "check_finite", "resolve_num_steps", "check_noise"]

# |value| above this is far outside the [-1, 1] data range (not a slightly overshooting reconstruction)
FAR_OUT_OF_RANGE = 10.0


class InputError(ValueError):
    """Bad input to a tokenizer (shape, channels, dtype, non-finite values); the message names the fix."""


def check_float_tensor(x: Any, what: str) -> None:
    """Raise :class:`InputError` unless ``x`` is a floating-point ``torch.Tensor``."""
    fix = "convert to float in [-1, 1]"
    if not isinstance(x, Tensor):
        example = "torch.from_numpy(array).float()" if type(x).__module__ == "numpy" else "torch.as_tensor(x, dtype=torch.float32)"
        raise InputError(f"{what} must be a torch.Tensor, got {type(x).__module__}.{type(x).__name__}; {fix}, e.g. {example}")
    if not x.is_floating_point():
        example = " (8-bit images: x.float() / 127.5 - 1)" if x.dtype == torch.uint8 else ""
        raise InputError(f"{what} has dtype {x.dtype}; {fix}{example}")


def check_finite(x: Tensor, what: str, *, expected: str = "[-1, 1]", warn_above: float = FAR_OUT_OF_RANGE) -> None:
    """Raise :class:`InputError` on NaN/Inf in ``x``; warn when a finite value exceeds ``warn_above`` in magnitude.

    One reduction (the peak magnitude, which NaN propagates into) and one host sync.
    """
    if x.numel() == 0:
        return
    peak = float(x.detach().abs().amax())
    if not math.isfinite(peak):
        raise InputError(f"{what} contains NaN or Inf values; clean the data (e.g. torch.nan_to_num) before passing it")
    if peak > warn_above:
        warnings.warn(
            f"{what} reaches |value| = {peak:.3g}, far outside {expected}; results will be meaningless "
            f"(images: scale 0..255 pixels with x / 127.5 - 1)", stacklevel=3,
        )


def resolve_num_steps(num_steps: Any, default: int, name: str = "num_steps") -> int:
    """``num_steps`` checked to be a positive int; ``None`` gives ``default``."""
    if num_steps is None:
        return int(default)
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 1:
        raise InputError(f"{name}={num_steps!r}: use a positive int (e.g. 8), or None for the default ({default})")
    return int(num_steps)


def check_noise(noise: Any, shape: tuple[int, ...], like: Tensor) -> None:
    """Explicit initial decode noise must be a finite float tensor of the data ``shape`` on ``like``'s device."""
    check_float_tensor(noise, "noise")
    if tuple(noise.shape) != tuple(shape):
        raise InputError(
            f"noise has shape {tuple(noise.shape)} but these latents decode to {tuple(shape)} (batch {shape[0]}); "
            f"draw it with torch.randn{tuple(shape)} or pass generator= instead"
        )
    if noise.device != like.device:
        raise InputError(f"noise is on {noise.device} but the latents are on {like.device}; move it with noise.to(z.device)")
    if not torch.isfinite(noise).all():
        raise InputError("noise contains NaN or Inf values; draw it with torch.randn (standard normal)")
