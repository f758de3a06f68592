"""Local weight files for frozen loss/metric networks (VGG16, LPIPS heads, DINOv2).

Nothing is downloaded at run time: every file comes from an explicit path or an environment
variable. A missing file raises :class:`MissingWeightsError` saying which file, where to get it and
which variable to set.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["MissingWeightsError", "CorruptFileError", "resolve_weights_path", "read_safetensors", "load_tensor_file"]


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights of a frozen network were not given or not found; the message names the fix."""


class CorruptFileError(ValueError):
    """A weights or config file exists but cannot be read (truncated, corrupt, another format); the
    message names the file and the fix."""


def read_safetensors(path: str | os.PathLike[str], *, device: str = "cpu", fix: str) -> dict[str, Tensor]:
    """The tensors of the safetensors file ``path``; a file safetensors cannot parse raises
    :class:`CorruptFileError` naming it and ``fix`` (what to do about it)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except SafetensorError as err:
        raise CorruptFileError(
            f"{path} is not a readable safetensors file ({err}): it is truncated, corrupt or in another format; {fix}"
        ) from err


def resolve_weights_path(
    explicit: str | os.PathLike[str] | None, env_var: str | None, *, what: str, how_to_get: str
) -> Path | None:
    """The weights path from ``explicit`` or else ``$env_var`` (if given); None when neither is set.

    Raises:
        MissingWeightsError: a path was given but does not exist.
    """
    from_env = os.environ.get(env_var) if env_var else None
    value = explicit if explicit not in (None, "") else from_env or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.exists():
        source = "argument" if explicit not in (None, "") else f"${env_var}"
        raise MissingWeightsError(f"{what}: {path} (from the {source}) does not exist. {how_to_get}")
    return path


def load_tensor_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A flat ``{name: tensor}`` dict from ``.safetensors`` or a torch file (loaded with ``weights_only``)."""
    path = Path(path)
    fix = "replace it with an intact copy of the weights"
    if path.suffix == ".safetensors":
        return read_safetensors(path, fix=fix)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as err:  # truncated zip / not a torch file / refused pickle
        raise CorruptFileError(f"{path} cannot be loaded as a torch weights file ({type(err).__name__}: {err}); {fix}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CorruptFileError(
            f"{path} does not hold a flat state dict of tensors; pass the weights file itself, not a training checkpoint"
        )
    return state
