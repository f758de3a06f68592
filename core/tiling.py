"""Tiled diffusion decoding: bounded memory at any data size, for every modality.

A flow decoder cannot decode tiles independently from independent noise: tiles would then be
different samples and disagree at their seams. Here every tile shares ONE trajectory instead:

1. the initial noise is drawn once at full data size (as an untiled decode draws it);
2. at every solver step the velocity is evaluated tile by tile on overlapping latent tiles and the
   matching data-space slices of the current state ``x_t``;
3. the tile velocities are blended in data space with windows that are zero near a tile's inner
   edges (where its missing context makes it wrong) and ramp linearly across the middle half of
   each overlap, then normalised by the summed weight.

The solver then steps the full-size state, so the next step's tiles start from one consistent
``x_t``. For a 1-step decoder this is the same as decoding each tile from its noise slice; for
many steps it keeps the tiles on a common path, at the cost of holding the full-size state (data
size, small next to the network's activations). Peak network memory is that of one tile.

Tiles and overlaps are in latent units along any subset of the latent axes (``None`` leaves an
axis whole). Causal axes (video time, ``n -> 1 + (n-1)/f``) are tiled in windows of ``1 + f·k``
data samples that overlap by at least one latent (:func:`latent_to_data_extent` converts the
extents with the shape rule); :func:`windowed_encode` encodes them exactly, window by window. A decoder whose receptive field (in data units) is at most a quarter of the overlap
gives exactly the untiled result; decoders with global operations (GroupNorm statistics, long
attention) give a close but not equal one, see ``tests/test_tiling.py`` for measured tolerances.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from core.latent.distribution import EncoderOutput
from core.samplers.solvers import VelocityFn

__all__ = ["TileSpec", "AxisTiles", "plan_axis", "blend_window", "resolve_tiles", "LatentTiling", "tiled_velocity",
           "latent_to_data_extent", "windowed_encode"]

TileSpec = int | Sequence[int | None] | None


class TileableModel(Protocol):
    """What tiling needs from a tokenizer (a :class:`~core.autoencoder.DiffusionAutoencoder`)."""

    spatial_dims: int
    shape_rule: Any  # core.shapes.ShapeRule: per-axis factors and causal flags

    def velocity(self, x_t: Tensor, t: Tensor, z: Tensor) -> Tensor: ...

    def data_shape(self, latent_shape: tuple[int, ...]) -> tuple[int, ...]: ...


@dataclass(frozen=True)
class AxisTiles:
    """The tiles along one latent axis: ``starts[i] : stops[i]`` in latent units."""

    starts: tuple[int, ...]
    stops: tuple[int, ...]

    def overlaps(self, i: int) -> tuple[int, int]:
        """Latent overlap of tile ``i`` with its previous and next tiles (0 at the data border)."""
        before = self.stops[i - 1] - self.starts[i] if i > 0 else 0
        after = self.stops[i] - self.starts[i + 1] if i + 1 < len(self.starts) else 0
        return max(before, 0), max(after, 0)


def plan_axis(size: int, tile: int | None, overlap: int) -> AxisTiles:
    """Tiles of ``tile`` latents every ``tile - overlap`` along an axis of ``size``; the last tile
    is moved back to end at ``size`` (so every tile is full size). ``tile=None`` or ``>= size``: one tile."""
    if tile is None or tile >= size:
        return AxisTiles((0,), (size,))
    starts = list(range(0, size - tile, tile - overlap)) + [size - tile]
    return AxisTiles(tuple(starts), tuple(s + tile for s in starts))


def blend_window(length: int, before: int, after: int, *, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(length,)`` data-space weights of a tile with ``before`` / ``after`` samples of overlap.

    Across an overlap of ``o`` samples: 0 for the first ``o/4`` (the neighbour owns them), a linear
    ramp over the middle ``o/2``, 1 after; mirrored at the far end. Two neighbours' ramps sum to 1.
    """
    position = torch.arange(length, device=device, dtype=torch.float64) + 0.5
    weight = torch.ones(length, device=device, dtype=torch.float64)
    if before > 0:
        weight = weight * ((position - before / 4) / (before / 2)).clamp(0, 1)
    if after > 0:
        weight = weight * ((length - position - after / 4) / (after / 2)).clamp(0, 1)
    return weight.to(dtype)


def latent_to_data_extent(start: int, stop: int, before: int, after: int, factor: int, causal: bool) -> tuple[slice, tuple[int, int]]:
    """Data slice and data overlaps of latent tile ``start:stop`` with latent overlaps ``before`` / ``after``.

    An ordinary axis scales everything by ``factor``. On a causal axis the tile's first latent is
    decoded as a clip's first latent, i.e. to ONE data sample, which lines up with the last sample
    of that latent's group: the tile covers data ``start·f .. (stop-1)·f`` (``1 + (stop-start-1)·f``
    samples, a valid clip length) and an overlap of ``o >= 1`` latents is ``(o-1)·f + 1`` samples.
    Converting blend extents with ``o·f`` instead is the FastVideo seam bug (spec §5).
    """
    if not causal:
        return slice(start * factor, stop * factor), (before * factor, after * factor)

    def samples(overlap: int) -> int:
        return (overlap - 1) * factor + 1 if overlap > 0 else 0

    return slice(start * factor, (stop - 1) * factor + 1), (samples(before), samples(after))


def _per_axis(value: TileSpec, dims: int, name: str) -> tuple[int | None, ...]:
    if value is None or isinstance(value, int):
        return (value,) * dims
    values = tuple(value)
    if len(values) != dims:
        raise ValueError(f"{name} has {len(values)} entries but the latents have {dims} spatial axes; "
                         f"give one int (all axes) or one entry per axis (None = not tiled)")
    return values


def _causal_axes(model: Any) -> set[int]:
    rule = getattr(model, "shape_rule", None)
    return {axis for axis, flag in enumerate(getattr(rule, "causal", ()) or ()) if flag}


def resolve_tiles(model: Any, tile: TileSpec, overlap: TileSpec = None) -> list[tuple[int | None, int]]:
    """Per latent axis ``(tile, overlap)`` (``(None, 0)`` for a whole axis), validated: the one
    place that checks tile arguments. ``overlap=None`` means ``tile // 4`` (at least 1 on a causal axis)."""
    dims = model.spatial_dims
    tiles, overlaps = _per_axis(tile, dims, "tile"), _per_axis(overlap, dims, "overlap")
    causal = _causal_axes(model)
    resolved = []
    for axis, (t, o) in enumerate(zip(tiles, overlaps)):
        if t is None:
            resolved.append((None, 0))
            continue
        if o is None and isinstance(t, int):
            o = max(t // 4, 1 if axis in causal and t > 1 else 0)
        if not isinstance(t, int) or not isinstance(o, int) or t < 1 or not 0 <= o < t:
            raise ValueError(f"axis {axis}: need int tile >= 1 and 0 <= overlap < tile (latent units), "
                             f"got tile={t!r}, overlap={o!r}")
        if axis in causal and o < 1:
            raise ValueError(f"axis {axis} is causal: its windows must overlap by >= 1 latent (a window's first latent "
                             f"decodes to one frame only, so overlap 0 leaves frames uncovered); got tile={t}, overlap={o}; "
                             f"use tile >= 2 with overlap >= 1")
        resolved.append((t, o))
    return resolved


class LatentTiling:
    """The tiles of one latent shape and their data-space blend (see the module docstring).

    Args:
        model: the tokenizer (its ``spatial_dims``, ``data_shape`` and, for :meth:`velocity`, ``velocity``).
        latent_shape: ``(B, C_z, *S/f)``.
        tile, overlap: see :func:`resolve_tiles`.
    """

    def __init__(self, model: TileableModel, latent_shape: tuple[int, ...], tile: TileSpec, overlap: TileSpec = None) -> None:
        dims = model.spatial_dims
        sizes = tuple(latent_shape[-dims:])
        self.model, self.dims = model, dims
        one, two = model.data_shape((1, 1, *(1,) * dims))[-dims:], model.data_shape((1, 1, *(2,) * dims))[-dims:]
        self.factors = tuple(b - a for a, b in zip(one, two))  # data samples per latent, per axis
        self.causal = tuple(axis in _causal_axes(model) for axis in range(dims))
        self.axes = [plan_axis(size, t, o) for size, (t, o) in zip(sizes, resolve_tiles(model, tile, overlap))]
        self.data_sizes = tuple(model.data_shape(tuple(latent_shape))[-dims:])

    @property
    def num_tiles(self) -> int:
        count = 1
        for axis in self.axes:
            count *= len(axis.starts)
        return count

    def _tiles(self) -> list[tuple[tuple[slice, ...], tuple[slice, ...], list[tuple[int, int]]]]:
        """(latent slices, data slices, per-axis data overlaps) of every tile."""
        per_axis = []
        for axis, f, causal in zip(self.axes, self.factors, self.causal):
            entries = []
            for i, (start, stop) in enumerate(zip(axis.starts, axis.stops)):
                before, after = axis.overlaps(i)
                data_slice, data_overlaps = latent_to_data_extent(start, stop, before, after, f, causal)
                entries.append((slice(start, stop), data_slice, data_overlaps))
            per_axis.append(entries)
        tiles = [((), (), [])]
        for entries in per_axis:
            tiles = [(lat + (e[0],), dat + (e[1],), ov + [e[2]]) for lat, dat, ov in tiles for e in entries]
        return tiles

    def _window(self, data_slices: tuple[slice, ...], overlaps: list[tuple[int, int]], like: Tensor) -> Tensor:
        """Product of the per-axis blend windows, shaped to broadcast over ``(B, C, *tile)``."""
        weight = torch.ones((1, 1) + (1,) * self.dims, device=like.device, dtype=like.dtype)
        for axis, (sl, (before, after)) in enumerate(zip(data_slices, overlaps)):
            shape = [1] * (2 + self.dims)
            shape[2 + axis] = sl.stop - sl.start
            weight = weight * blend_window(sl.stop - sl.start, before, after, device=like.device, dtype=like.dtype).view(shape)
        return weight

    def blend(self, fn: Callable[[Tensor, Tensor], Tensor], data: Tensor, z: Tensor) -> Tensor:
        """``fn(data_tile, z_tile) -> data-space tile`` on every tile, blended into a tensor like ``data``.

        ``data`` is a full-size data-space tensor (the state ``x_t``, or the initial noise) that is
        sliced per tile; ``z`` the full latents. Only one tile's ``fn`` output is alive at a time.
        """
        if tuple(data.shape[-self.dims:]) != self.data_sizes:
            raise ValueError(f"data {tuple(data.shape)} does not match the planned data size {self.data_sizes}")
        total = torch.zeros_like(data)
        weight_sum = torch.zeros((1, 1, *self.data_sizes), device=data.device, dtype=data.dtype)
        keep = (slice(None), slice(None))
        for latent_slices, data_slices, overlaps in self._tiles():
            out = fn(data[keep + data_slices], z[keep + latent_slices])
            window = self._window(data_slices, overlaps, data)
            total[keep + data_slices] += out * window
            weight_sum[keep + data_slices] += window
        return total / weight_sum

    def velocity(self, x_t: Tensor, t: Tensor, z: Tensor) -> Tensor:
        """The solver velocity: ``model.velocity`` tile by tile on the shared state, blended."""
        return self.blend(lambda x_tile, z_tile: self.model.velocity(x_tile, t, z_tile), x_t, z)


def tiled_velocity(model: TileableModel, latent_shape: tuple[int, ...], *, tile: TileSpec, overlap: TileSpec = None) -> VelocityFn:
    """The tiled solver velocity ``(x_t, t, z) -> u`` for latents of ``latent_shape`` (what
    ``DiffusionAutoencoder.decode(..., tile=...)`` integrates); ``overlap`` defaults to ``tile // 4``.

    Args:
        model: the tokenizer (its ``velocity``, ``spatial_dims`` and ``data_shape`` are used).
        latent_shape: ``(B, C_z, *S/f)``.
        tile: latent tile size: one int for every axis, or one entry per latent axis (None = whole axis).
        overlap: latent overlap between neighbouring tiles, same forms (default a quarter of the tile).
    """
    return LatentTiling(model, latent_shape, tile, overlap).velocity


def windowed_encode(model: Any, x: Tensor, *, window: int) -> EncoderOutput:
    """Encode ``x`` in windows of ``window`` latents along the rule's causal axis, exactly.

    The encoder runs on one data window at a time (memory bounded by the window) and carries its
    causal history in a cache dict passed to ``encoder(x_window, cache=cache)``: the first window
    has ``1 + (window-1)·f`` samples, every later one ``window·f``. The regularizer runs once on the
    concatenated raw latents (small), so the result equals ``model.encode(x)`` for any regularizer.

    Args:
        model: a tokenizer whose ``shape_rule`` has a causal axis and whose encoder's ``forward``
            accepts ``cache`` (e.g. ``causal_video_f4s8``).
        x: data ``(B, C, *S)``.
        window: latents per window along the causal axis (>= 1).

    Returns:
        :class:`~core.latent.distribution.EncoderOutput`, as ``model.encode``.
    """
    causal = sorted(_causal_axes(model))
    if len(causal) != 1:
        raise ValueError(f"windowed_encode needs a shape rule with exactly one causal axis, got {model.shape_rule.describe()}; "
                         f"encode non-causal data whole with model.encode")
    if "cache" not in inspect.signature(model.encoder.forward).parameters:
        raise ValueError(f"encoder {type(model.encoder).__name__} cannot stream (its forward takes no 'cache'); use model.encode")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1 (latents per window), got {window!r}")
    model.check_input(x)
    axis = 2 + causal[0]
    f = model.shape_rule.factors[causal[0]]
    length = x.shape[axis]
    cache: dict = {}
    raw, start = [], 0
    while start < length:
        stop = min(length, 1 + (window - 1) * f if start == 0 else start + window * f)
        raw.append(model.encoder(x.narrow(axis, start, stop - start), cache=cache))
        start = stop
    return EncoderOutput(latent_dist=model.regularizer(torch.cat(raw, dim=axis)))
