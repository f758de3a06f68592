"""Import foreign (official-code) state dicts into difftok modules by renaming keys, with full accounting.

A foreign checkpoint is imported through a ``rename`` function that maps each foreign key to a
difftok parameter/buffer name (or ``None`` for a tensor that is deliberately dropped, which must be
listed). The import fails with :class:`WeightImportError` unless every foreign tensor is consumed
exactly once, every difftok tensor is filled, and every shape matches: nothing is reshaped, so a
silent layout mismatch cannot slip through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

__all__ = ["WeightImportError", "rename_state_dict", "import_state_dict"]


class WeightImportError(ValueError):
    """A foreign state dict does not map one-to-one onto the difftok model; the message lists why."""


def _head(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def rename_state_dict(
    foreign: Mapping[str, Tensor],
    rename: Callable[[str], str | None],
    *,
    source: str = "checkpoint",
) -> dict[str, Tensor]:
    """Apply ``rename`` to every key; raise if a key is unmapped or two keys map to one name.

    ``rename`` returns the difftok name, ``None`` to drop the tensor on purpose, or raises
    ``KeyError`` for a key it does not know (reported as unconsumed).
    """
    return _rename_with_origin(foreign, rename, source=source)[0]


def _rename_with_origin(
    foreign: Mapping[str, Tensor], rename: Callable[[str], str | None], *, source: str
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """:func:`rename_state_dict` plus ``{difftok name: foreign name}`` for error messages."""
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    unknown: list[str] = []
    duplicates: list[str] = []
    for key, value in foreign.items():
        try:
            new = rename(key)
        except KeyError:
            unknown.append(key)
            continue
        if new is None:
            continue
        if new in out:
            duplicates.append(f"{origin[new]} and {key} -> {new}")
            continue
        out[new], origin[new] = value, key
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} {source} tensors have no difftok counterpart: {_head(unknown)}")
    if duplicates:
        problems.append(f"{len(duplicates)} difftok names would be filled twice: {_head(duplicates)}")
    if problems:
        raise WeightImportError(f"cannot import {source}: " + "; ".join(problems))
    return out, origin


@torch.no_grad()
def import_state_dict(
    model: nn.Module,
    foreign: Mapping[str, Tensor],
    rename: Callable[[str], str | None],
    *,
    source: str = "checkpoint",
) -> None:
    """Copy ``foreign`` into ``model`` through ``rename``; every tensor on both sides must be used once.

    Nothing is copied unless the whole mapping is valid.

    Raises:
        WeightImportError: unconsumed foreign tensors, unfilled model tensors, or shape mismatches,
            each listed by name (with the foreign name it came from).
    """
    renamed, origin = _rename_with_origin(foreign, rename, source=source)
    target = model.state_dict()
    missing = [k for k in target if k not in renamed]
    unexpected = [f"{k} (from {origin[k]})" for k in renamed if k not in target]
    mismatched = [
        f"{k} (from {origin[k]}): {source} {tuple(v.shape)} vs difftok {tuple(target[k].shape)}"
        for k, v in renamed.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} renamed tensors do not exist in the difftok model: {_head(unexpected)}")
    if missing:
        problems.append(f"{len(missing)} difftok tensors were not filled: {_head(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shapes differ (nothing is reshaped): {_head(mismatched)}")
    if problems:
        raise WeightImportError(f"cannot import {source}: " + "; ".join(problems))
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in renamed.items()}, strict=True)
