"""Count a forward pass's FLOPs (2 × multiply-adds) with ``torch.utils.flop_counter.FlopCounterMode``.

Two categories:

- ``conv_linear``: convolutions and matrix products of Linear layers (``convolution``, ``mm``,
  ``addmm``);
- ``attention``: dense attention, ``4 · B · heads · N_q · N_k · head_dim`` (QKᵀ and AV). It is
  whatever kernel SDPA dispatches to: batched matmuls (math path), the CUDA kernels that
  ``FlopCounterMode`` already knows, or the CPU flash kernel, which ``FlopCounterMode`` counts as
  0 and is therefore given the same formula here. Each attention call is counted once, on
  whichever op it reaches. A window mask does not reduce the count (dense attention).

Normalisations, activations and other elementwise ops are not counted. Works on the meta device,
so large models cost no memory: build the model and inputs under ``torch.device("meta")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["FlopCount", "count_flops"]

aten = torch.ops.aten
CONV_LINEAR_OPS = {aten.convolution, aten._convolution, aten.mm, aten.addmm}


def _cpu_flash_attention_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    """``aten._scaled_dot_product_flash_attention_for_cpu``: q (B, H, Nq, d), k (B, H, Nk, d), v (B, H, Nk, dv)."""
    b, h, n_q, d = query_shape
    n_k, d_v = key_shape[2], value_shape[3]
    return 2 * b * h * n_q * n_k * d + 2 * b * h * n_q * n_k * d_v


def _custom_mapping() -> dict[Any, Callable[..., int]]:
    mapping: dict[Any, Callable[..., int]] = {}
    cpu_flash = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None:
        mapping[cpu_flash] = _cpu_flash_attention_flops
    return mapping


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one call, by category (all counts are FLOPs, not MACs)."""

    conv_linear: int
    attention: int
    by_op: dict[str, int]

    @property
    def total(self) -> int:
        return self.conv_linear + self.attention


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FlopCount:
    """FLOPs of ``fn(*args, **kwargs)`` (typically a module's forward), with no gradients.

    Raises:
        ValueError: an op outside the conv/linear/attention categories did FLOPs that
            ``FlopCounterMode`` counts (so nothing is silently mis-filed).
    """
    counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
    with torch.no_grad(), counter:
        fn(*args, **kwargs)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    conv_linear = attention = 0
    unexpected = []
    for op, n in counter.get_flop_counts().get("Global", {}).items():
        if op in CONV_LINEAR_OPS:
            conv_linear += int(n)
        elif "attention" in str(op) or op in (aten.bmm, aten.baddbmm):
            attention += int(n)  # SDPA's math path multiplies with bmm/baddbmm
        else:
            unexpected.append(str(op))
    if unexpected:
        raise ValueError(f"FLOPs from ops outside conv/linear/attention: {unexpected}; extend core.flops to classify them")
    return FlopCount(conv_linear=conv_linear, attention=attention, by_op=by_op)
