"""Per-axis shape rule: how a tokenizer maps data sizes to latent sizes, one factor per data axis.

A :class:`ShapeRule` works on the *axis sizes only* (the part of a shape after ``(B, C)``);
:class:`~core.autoencoder.DiffusionAutoencoder` adds the batch and channel dims. An ordinary axis
of size ``n`` becomes ``n / f`` latent positions (``n`` must be a multiple of ``f``). A *causal*
axis (video time) keeps its first element on its own, ``n -> 1 + (n - 1) / f`` (``n = 1 + f·k``),
inverse ``n' -> 1 + (n' - 1)·f``: latent frame 0 covers data frame 0 and latent frame ``j >= 1``
covers data frames ``1 + (j - 1)·f .. j·f``. Images use :meth:`ShapeRule.isotropic`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ShapeRule", "upsample_nearest"]


@dataclass(frozen=True)
class ShapeRule:
    """Latent compression per data axis.

    Args:
        factors: compression factor of each data axis (after ``(B, C)``), each >= 1.
        causal: per axis, whether it is causal (first element kept alone); default: none causal.
    """

    factors: tuple[int, ...]
    causal: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        factors = tuple(int(f) for f in self.factors)
        causal = tuple(bool(c) for c in self.causal) if self.causal else (False,) * len(factors)
        if not factors or any(f < 1 for f in factors):
            raise ValueError(f"shape rule factors must be one integer >= 1 per data axis, got {self.factors}")
        if len(causal) != len(factors):
            raise ValueError(f"shape rule has {len(factors)} factors but {len(causal)} causal flags; give one flag per axis")
        object.__setattr__(self, "factors", factors)
        object.__setattr__(self, "causal", causal)

    @classmethod
    def isotropic(cls, factor: int, dims: int) -> "ShapeRule":
        """The same non-causal ``factor`` on each of ``dims`` axes (every image tokenizer)."""
        return cls(factors=(int(factor),) * int(dims))

    @property
    def dims(self) -> int:
        """Number of data axes the rule covers."""
        return len(self.factors)

    @property
    def is_isotropic(self) -> bool:
        """True when every axis has the same factor and none is causal."""
        return len(set(self.factors)) == 1 and not any(self.causal)

    def _check_dims(self, sizes: Sequence[int]) -> tuple[int, ...]:
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) != self.dims:
            raise ValueError(f"shape rule covers {self.dims} axes but got sizes {sizes}; pass only the axes after (B, C)")
        return sizes

    def problem(self, sizes: Sequence[int]) -> str | None:
        """Why data axis ``sizes`` cannot be encoded, naming the nearest valid sizes; None when it can."""
        sizes = self._check_dims(sizes)
        issues = []
        for axis, (n, f, causal) in enumerate(zip(sizes, self.factors, self.causal)):
            if causal and (n < 1 or (n - 1) % f):
                low = 1 + max(n - 1, 0) // f * f
                options = f"{low} or {low + f}" if low < n else f"{low}"
                issues.append(f"axis {axis} (causal): size {n} is not 1 + {f}k: use {options}")
            elif not causal and (n < f or n % f):
                low = n // f * f
                options = f"{low} or {low + f}" if low > 0 else f"{low + f}"
                issues.append(f"axis {axis}: size {n} is not a multiple of {f}: use {options}")
        if not issues:
            return None
        return f"size {sizes} does not fit {self.describe()}: " + "; ".join(issues) + f"; crop or pad, e.g. to {self.cropped(sizes)}"

    def cropped(self, sizes: Sequence[int]) -> tuple[int, ...]:
        """The largest valid sizes not above ``sizes`` (the smallest valid size where none is)."""
        sizes = self._check_dims(sizes)
        out = []
        for n, f, causal in zip(sizes, self.factors, self.causal):
            out.append(1 + max(n - 1, 0) // f * f if causal else max(n // f, 1) * f)
        return tuple(out)

    def describe(self) -> str:
        """Human-readable rule, e.g. ``factors (4, 8, 8) with axis 0 causal``."""
        causal = [str(i) for i, c in enumerate(self.causal) if c]
        return f"factors {self.factors}" + (f" with axis {', '.join(causal)} causal" if causal else "")

    def latent(self, sizes: Sequence[int]) -> tuple[int, ...]:
        """Latent axis sizes for data axis ``sizes``; ValueError (with the fix) when they do not fit."""
        message = self.problem(sizes)
        if message is not None:
            raise ValueError(message)
        return tuple(1 + (n - 1) // f if c else n // f for n, f, c in zip(sizes, self.factors, self.causal))

    def data(self, latent_sizes: Sequence[int]) -> tuple[int, ...]:
        """Data axis sizes decoded from latent axis sizes: the inverse of :meth:`latent`."""
        latent_sizes = self._check_dims(latent_sizes)
        if any(n < 1 for n in latent_sizes):
            raise ValueError(f"latent sizes must be >= 1, got {latent_sizes}")
        return tuple(1 + (n - 1) * f if c else n * f for n, f, c in zip(latent_sizes, self.factors, self.causal))

    def to_dict(self) -> dict[str, list[Any]]:
        """Plain JSON form (``config.json``'s ``latent`` section)."""
        return {"factors": list(self.factors), "causal": list(self.causal)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ShapeRule":
        """Inverse of :meth:`to_dict`."""
        unknown = set(data) - {"factors", "causal"}
        if unknown or "factors" not in data:
            raise ValueError(f"a shape rule dict needs 'factors' (and optionally 'causal'), got keys {sorted(data)}")
        return cls(factors=tuple(data["factors"]), causal=tuple(data.get("causal") or ()))


def upsample_nearest(z: Tensor, rule: ShapeRule) -> Tensor:
    """Repeat latent ``z`` ``(B, C, *S')`` up to the data grid ``(B, C, *rule.data(S'))``.

    Ordinary axes repeat each latent element ``f`` times (nearest upsampling); on causal axes
    latent element 0 maps to data element 0 alone and element ``j >= 1`` to ``1 + (j-1)f .. jf``.
    """
    if z.ndim != 2 + rule.dims:
        raise ValueError(f"expected latents (B, C, {rule.dims} axes), got shape {tuple(z.shape)}")
    if rule.is_isotropic:
        # the same kernel as before the rule existed, so image models keep bit-identical values AND
        # gradients (repeat_interleave's backward sums in another order)
        return F.interpolate(z, scale_factor=float(rule.factors[0]), mode="nearest")
    for axis, (f, causal) in enumerate(zip(rule.factors, rule.causal)):
        if f == 1:
            continue
        dim = 2 + axis
        if causal:
            rest = z.narrow(dim, 1, z.shape[dim] - 1).repeat_interleave(f, dim=dim)
            z = torch.cat([z.narrow(dim, 0, 1), rest], dim=dim)
        else:
            z = z.repeat_interleave(f, dim=dim)
    return z
