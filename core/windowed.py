"""Windowed encode/decode along the last data axis, and a streaming decoder, for any modality.

Long signals (audio files, long videos along their last axis) are processed in windows so peak
network memory is that of one window, whatever the length:

- :func:`windowed_encode`: encode windows of ``window`` data samples, each with ``margin`` extra
  samples of real context on both sides (the encoder's receptive field), and keep only the latent
  frames of the window. Exact for an encoder without global operations whose receptive field fits
  in the margin (the causal ``strided_conv1d_encoder``); close otherwise (GroupNorm statistics of
  ``conv_encoder`` see only the window plus margin).
- :func:`windowed_decode`: decode overlapping latent windows *independently* (each runs the whole
  solver on its own), all from ONE full-length initial noise drawn once and sliced per window, so
  overlapping windows integrate the same noise and agree up to their missing context; the windows
  are crossfaded over the middle half of their overlap. Unlike :mod:`core.tiling` (one shared trajectory, full-size
  state), nothing of full length but the noise and the output is ever held.
- :func:`stream_decode`: the same windows as a generator that yields each stretch of output as soon
  as no later window touches it (a look-ahead of one window); ``torch.cat`` of the pieces along the
  last axis equals :func:`windowed_decode`.
- :func:`encode_any_length` / :func:`reconstruct_any_length`: pad the last axis on the right to the
  next valid length, and trim the reconstruction back.

Crossfades: ``"raised_cosine"`` (default) uses gains ``sin²`` / ``cos²`` that sum to one, so two
windows that agree are blended without any change of level, which is the case here (shared noise,
same latent). ``"equal_power"`` uses ``sin`` / ``cos`` (squares sum to one): right for *uncorrelated*
windows (independent noise per window), but on agreeing windows it raises the level by up to
+3 dB (×√2) mid-overlap. Where more than two windows overlap, gains are normalised by their sum
(raised cosine) or the root of their summed squares (equal power).

Window, margin and overlap are given in data samples for encoding and in latent frames for
decoding; the last axis must be an ordinary (non-causal) axis of the model's shape rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from core.tiling import plan_axis

__all__ = [
    "CROSSFADES", "last_axis_factor", "pad_to_valid_length", "encode_any_length", "reconstruct_any_length",
    "windowed_encode", "windowed_decode", "stream_decode", "crossfade_gains",
]

CROSSFADES = ("raised_cosine", "equal_power")


def last_axis_factor(model: Any) -> int:
    """The model's data / latent ratio along the last axis; ValueError when that axis is causal."""
    rule = model.shape_rule
    if rule.causal[-1]:
        raise ValueError(
            f"the last axis is causal ({rule.describe()}): its latent frames do not map to disjoint data windows; "
            f"windowed coding works along ordinary axes only"
        )
    return int(rule.factors[-1])


def pad_to_valid_length(x: Tensor, multiple: int) -> tuple[Tensor, int]:
    """``x`` zero-padded on the right of its last axis to a multiple of ``multiple``, and the original length."""
    length = x.shape[-1]
    target = max(math.ceil(length / multiple), 1) * multiple
    return F.pad(x, (0, target - length)), length


def encode_any_length(model: Any, x: Tensor) -> Tensor:
    """Latent mode of ``x`` of any last-axis length: padded on the right to the next multiple of the hop.

    The latent has ``ceil(L / hop)`` frames; the last one also covers the padding.
    """
    padded, _ = pad_to_valid_length(x, last_axis_factor(model))
    return model.encode(padded).latent_dist.mode()


def reconstruct_any_length(model: Any, x: Tensor, num_steps: int | None = None, **decode_kwargs: Any) -> Tensor:
    """Encode (right-padded) and decode ``x``, trimmed back to its own length: ``(B, C, *S, L)``."""
    z = encode_any_length(model, x)
    return model.decode(z, num_steps, **decode_kwargs).sample[..., : x.shape[-1]]


def _check_multiple(name: str, value: int, factor: int) -> None:
    if value % factor:
        low = value // factor * factor
        raise ValueError(f"{name}={value} is not a multiple of the model's hop {factor}: use {low or factor} or {low + factor}")


@torch.no_grad()
def windowed_encode(model: Any, x: Tensor, window: int, margin: int) -> Tensor:
    """Latent mode of ``x`` ``(B, C, *S, L)`` computed window by window along the last axis.

    Args:
        model: a tokenizer (``encode``, ``shape_rule``).
        x: data whose last-axis length is a multiple of the hop (see :func:`encode_any_length`).
        window: data samples per window (a multiple of the hop).
        margin: context samples added on each side of a window where the signal has them (a
            multiple of the hop); at least the encoder's receptive field for an exact result.

    Returns:
        ``(B, C_z, *S', L / hop)``, the latent frames of each window concatenated.
    """
    factor = last_axis_factor(model)
    length = x.shape[-1]
    _check_multiple("window", window, factor)
    _check_multiple("margin", margin, factor)
    _check_multiple("data length", length, factor)
    pieces = []
    for start in range(0, length, window):
        stop = min(start + window, length)
        lo, hi = max(start - margin, 0), min(stop + margin, length)
        z = model.encode(x[..., lo:hi]).latent_dist.mode()
        first = (start - lo) // factor
        pieces.append(z[..., first : first + (stop - start) // factor])
    return torch.cat(pieces, dim=-1)


def crossfade_gains(length: int, fade_in: int, fade_out: int, kind: str, *, device: Any = None) -> Tensor:
    """``(length,)`` gains of one window with ``fade_in`` / ``fade_out`` samples of overlap at its two ends.

    As in :func:`core.tiling.blend_window`, a window gets gain 0 over the first quarter of an overlap
    (where its missing context makes it wrong), crossfades over the middle half and has gain 1 after,
    so a decoder whose receptive field (times the solver steps) fits in a quarter of the overlap
    gives exactly the undivided result.
    """
    if kind not in CROSSFADES:
        raise ValueError(f"unknown crossfade '{kind}'; use one of {', '.join(CROSSFADES)}")
    position = torch.arange(length, device=device, dtype=torch.float64) + 0.5
    gain = torch.ones(length, device=device, dtype=torch.float64)
    if fade_in > 0:
        gain = gain * torch.sin(0.5 * math.pi * ((position - fade_in / 4) / (fade_in / 2)).clamp(0.0, 1.0))
    if fade_out > 0:
        gain = gain * torch.sin(0.5 * math.pi * ((length - position - fade_out / 4) / (fade_out / 2)).clamp(0.0, 1.0))
    return gain.square() if kind == "raised_cosine" else gain


def stream_decode(
    model: Any,
    z: Tensor,
    window: int,
    overlap: int,
    num_steps: int | None = None,
    *,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    crossfade: str = "raised_cosine",
    **decode_kwargs: Any,
) -> Iterator[Tensor]:
    """Decode latents ``z`` ``(B, C_z, *S', n)`` window by window, yielding finished output as it is ready.

    Args:
        model: a tokenizer (``decode``, ``data_shape``, ``shape_rule``).
        z: latents (tokenizer space).
        window: latent frames per window (the last window is moved back to end at ``n``).
        overlap: latent frames shared by consecutive windows (``0 <= overlap < window``).
        num_steps: solver steps of every window (default: the model's).
        noise: the full-length initial noise ``model.data_shape(z.shape)``; drawn once from
            ``generator`` when omitted, then sliced per window.
        crossfade: ``"raised_cosine"`` or ``"equal_power"`` (module docstring).
        decode_kwargs: passed to ``model.decode`` (``grid``, ``solver``).

    Yields:
        consecutive pieces ``(B, C, *S, l_k)`` along the last axis; their concatenation is the decode.
    """
    factor = last_axis_factor(model)
    if not isinstance(window, int) or not isinstance(overlap, int) or window < 1 or not 0 <= overlap < window:
        raise ValueError(f"need int window >= 1 and 0 <= overlap < window (latent frames), got window={window!r}, overlap={overlap!r}")
    if crossfade not in CROSSFADES:
        raise ValueError(f"unknown crossfade '{crossfade}'; use one of {', '.join(CROSSFADES)}")
    shape = model.data_shape(tuple(z.shape))
    if noise is None:
        noise = torch.randn(shape, generator=generator, device=z.device, dtype=z.dtype)
    elif tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise must have the decoded shape {tuple(shape)}, got {tuple(noise.shape)}")
    plan = plan_axis(z.shape[-1], window, overlap)
    emitted = 0  # data samples already yielded
    numerator: Tensor | None = None  # pending output from `emitted` on: sum of gain * window output
    norm: Tensor | None = None  # sum of gains (raised cosine) or of squared gains (equal power)
    for i, (start, stop) in enumerate(zip(plan.starts, plan.stops)):
        before, after = plan.overlaps(i)
        lo, hi = start * factor, stop * factor
        piece = model.decode(z[..., start:stop], num_steps, noise=noise[..., lo:hi], **decode_kwargs).sample
        gain = crossfade_gains(hi - lo, before * factor, after * factor, crossfade, device=z.device)
        weight = gain if crossfade == "raised_cosine" else gain.square()
        pending = hi - emitted
        if numerator is None or numerator.shape[-1] < pending:
            grow = pending - (0 if numerator is None else numerator.shape[-1])
            extra = piece.new_zeros(*piece.shape[:-1], grow)
            numerator = extra if numerator is None else torch.cat([numerator, extra], dim=-1)
            norm = gain.new_zeros(grow) if norm is None else torch.cat([norm, gain.new_zeros(grow)])
        offset = lo - emitted
        numerator[..., offset : offset + hi - lo] += (gain.to(piece.dtype) * piece)
        norm[offset : offset + hi - lo] += weight
        final = (plan.starts[i + 1] * factor if i + 1 < len(plan.starts) else hi) - emitted
        scale = norm[:final] if crossfade == "raised_cosine" else norm[:final].sqrt()
        yield numerator[..., :final] / scale.to(numerator.dtype)
        numerator, norm, emitted = numerator[..., final:], norm[final:], emitted + final


@torch.no_grad()
def windowed_decode(model: Any, z: Tensor, window: int, overlap: int, num_steps: int | None = None, **kwargs: Any) -> Tensor:
    """The whole output of :func:`stream_decode` (same arguments), ``(B, C, *S, n · hop)``."""
    return torch.cat(list(stream_decode(model, z, window, overlap, num_steps, **kwargs)), dim=-1)
