"""The modality plugin contract.

A modality is registered by name in ``core.registry.MODALITIES`` as a factory returning a
:class:`Modality`. Core only uses this object; it never imports a plugin. Third-party packages
register through the ``difftok.modalities`` entry-point group (see :mod:`core.registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

__all__ = ["Modality", "get_modality"]


@dataclass(frozen=True)
class Modality:
    """What core needs to train and preview one kind of data.

    Attributes:
        name: registry name (``"image"``, ``"audio"``, ...).
        spatial_dims: number of spatial dims of ``(B, C, *spatial)`` samples.
        channels: default data channels.
        make_datamodule: ``(data_config, seed, per_device_batch) -> LightningDataModule`` yielding batches with
            key ``"x"`` of shape ``(B, C, *spatial)`` in [-1, 1]; the datamodule should offer
            ``preview_batch(n) -> Tensor`` for periodic reconstructions.
        write_preview: ``(originals, reconstructions, path)`` writes a side-by-side preview file
            and returns its path; ``preview_suffix`` is its file extension.
        evaluate: optional ``(autoencoder, datamodule, num_steps) -> {metric: value}`` on held-out
            data, run periodically during training (``trainer.eval_every_n_steps``).
        description: one line for listings.
        write_samples: optional ``(samples, path)`` writes generated samples ``(B, C, *spatial)``
            (latent-generator previews) and returns the path.
    """

    name: str
    spatial_dims: int
    channels: int
    make_datamodule: Callable[[Any, int, int], Any]
    write_preview: Callable[[Tensor, Tensor, Path], Path] | None = None
    preview_suffix: str = ".png"
    evaluate: Callable[[Any, Any, int], dict[str, float]] | None = None
    description: str = ""
    write_samples: Callable[[Tensor, Path], Path] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)


def get_modality(name: str) -> Modality:
    """The registered modality ``name`` (plugins are loaded on first use)."""
    from core.registry import MODALITIES

    modality = MODALITIES.create(name)
    if not isinstance(modality, Modality):
        raise TypeError(f"modality factory '{name}' returned {type(modality).__name__}, expected core.modality.Modality")
    return modality
