"""Inflation init: an image DiTo export's tensors in the (2+1)-D video networks' format (spec §3.7).

Each :class:`~modalities.video.models.layers.FactorizedConv` ``<name>`` takes the image conv
``<name>``'s kernel as its spatial ``(1, k, k)`` kernel; its temporal ``(3, 1, 1)`` kernel starts as
the identity: the centre tap for the decoder's non-causal convs, the last (current-frame) tap for
the encoder's causal convs, bias 0. Every other tensor (norms, 1×1 convs, time MLP, attention
projections) is copied, reshaped to the 3-D layout. Fresh temporal attention keeps its init (a
zero output projection, so the block is the identity). After inflation the video tokenizer equals
the image tokenizer frame by frame (``tests/test_video_models.py``), because per-frame norms and
spatial-only resampling never mix frames and an identity temporal kernel passes each frame through.

The video encoder and decoder call :func:`inflate_state` from their ``convert_weights`` hook,
which ``init.weights=`` / ``init.encoder_weights=`` (:mod:`core.training.init_weights`) use.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from modalities.video.models.layers import FactorizedConv

__all__ = ["inflate_state", "is_image_state", "temporal_identity"]

FRESH_PREFIXES = ("temporal_attention.",)  # video-only modules that keep their own init


def is_image_state(state: dict[str, Tensor], module: nn.Module) -> bool:
    """True when ``state`` names ``module``'s factorized convs by their image names (no ``.spatial``)."""
    names = [name for name, m in module.named_modules() if isinstance(m, FactorizedConv)]
    return bool(names) and f"{names[0]}.weight" in state and f"{names[0]}.spatial.weight" not in state


def temporal_identity(conv: nn.Conv3d, causal: bool) -> Tensor:
    """A ``(C, C, k, 1, 1)`` kernel passing each frame through: identity at the last tap (causal) or the centre."""
    out_c, in_c, k = conv.weight.shape[:3]
    weight = torch.zeros_like(conv.weight)
    tap = k - 1 if causal else k // 2
    weight[:, :, tap, 0, 0] = torch.eye(out_c, in_c, dtype=weight.dtype)
    return weight


def _reshaped(source: Tensor, target: Tensor) -> Tensor:
    """``source`` in ``target``'s layout; unchanged when the sizes differ (the caller reports the mismatch)."""
    return source.reshape(target.shape) if source.numel() == target.numel() else source


@torch.no_grad()
def inflate_state(state: dict[str, Tensor], module: nn.Module) -> dict[str, Tensor]:
    """``module``'s tensors built from an image network's ``state`` (names relative to ``module``).

    Tensors ``state`` lacks are left out (so the caller reports them as missing); a ``state``
    already in the video format is returned unchanged.
    """
    if not is_image_state(state, module):
        return dict(state)
    own = module.state_dict()
    out: dict[str, Tensor] = {}
    factorized = {name: m for name, m in module.named_modules() if isinstance(m, FactorizedConv)}
    for name, conv in factorized.items():
        for kind in ("weight", "bias"):
            if f"{name}.{kind}" in state:
                out[f"{name}.spatial.{kind}"] = _reshaped(state[f"{name}.{kind}"], own[f"{name}.spatial.{kind}"])
        out[f"{name}.temporal.weight"] = temporal_identity(conv.temporal, conv.causal)
        out[f"{name}.temporal.bias"] = torch.zeros_like(conv.temporal.bias)
    consumed = {f"{name}.{kind}" for name in factorized for kind in ("weight", "bias")}
    for key, target in own.items():
        if key in out:
            continue
        if key.startswith(FRESH_PREFIXES):
            out[key] = target.clone()
        elif key in state:
            out[key] = _reshaped(state[key], target)  # 1×1 convs (2-D -> 3-D / 1-D layouts), norms, linears
    out.update({k: v for k, v in state.items() if k not in own and k not in consumed})  # unexpected: reported too
    return out
