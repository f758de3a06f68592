"""Lightning checkpoint files: atomic writes (temporary file, fsync, rename) with the user's file mode,
and loads restricted to tensors and plain containers (``weights_only=True``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from core.fileio import atomic_output

__all__ = ["AtomicCheckpointIO", "load_checkpoint_file"]


def load_checkpoint_file(path: str | os.PathLike[str], map_location: Any = "cpu", *, mmap: bool = False) -> dict[str, Any]:
    """``torch.load`` of a checkpoint with ``weights_only=True`` passed explicitly: a crafted file cannot
    run code, whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says. ``mmap`` maps tensors instead of reading them."""
    return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)


class AtomicCheckpointIO(TorchCheckpointIO):
    """A run killed mid-write leaves the previous checkpoint intact (``os.replace`` is atomic); files
    get the mode of any new file (not ``mkstemp``'s 0600); loading never unpickles code."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(target) as tmp, open(tmp, "wb") as handle:  # fsync + rename + umask mode in atomic_output
            torch.save(checkpoint, handle)

    def load_checkpoint(self, path: str | os.PathLike[str], map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if weights_only is False:
            raise ValueError("difftok checkpoints are loaded with weights_only=True only (tensors and plain containers)")
        return load_checkpoint_file(path, map_location if map_location is not None else "cpu")
