"""The modality plugin contract.

A modality is registered by name in ``core.registry.MODALITIES`` as a factory returning a
:class:`Modality`. Core only uses this object; it never imports a plugin. Third-party packages
register through the ``difftok.modalities`` entry-point group (see :mod:`core.registry`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:  # annotations only: core.eval imports this module
    import torch
    from torch.utils.data import Dataset

    from core.eval.protocol import FeatureExtractor, MetricSuite, Quantization
    from core.eval.samples import CacheInputs, EvalSamples, SampleRequest

__all__ = ["Modality", "ToolSettings", "get_modality", "datamodule_eval_split", "with_data_options"]


@dataclass(frozen=True)
class ToolSettings:
    """The modality's settings dataclasses of the offline commands (``key=value`` schemas).

    Each subclasses the core one and adds where the samples come from: ``evaluate`` ->
    :class:`core.eval.command.EvalSettings`, ``latent_stats`` -> :class:`core.latent.stats_command.LatentStatsSettings`,
    ``cache_latents`` -> :class:`core.latent.cache_command.CacheLatentsSettings`. None: the command is not offered.
    """

    evaluate: type | None = None
    latent_stats: type | None = None
    cache_latents: type | None = None


@dataclass(frozen=True)
class Modality:
    """What core needs to train, evaluate and preview one kind of data.

    Attributes:
        name: registry name (``"image"``, ``"audio"``, ...).
        spatial_dims: number of spatial dims of ``(B, C, *spatial)`` samples.
        channels: default data channels.
        make_datamodule: ``(data_config, seed, per_device_batch) -> LightningDataModule`` yielding batches with
            key ``"x"`` of shape ``(B, C, *spatial)`` in [-1, 1]; the datamodule should offer
            ``preview_batch(n) -> Tensor`` for periodic reconstructions.
        write_preview: ``(originals, reconstructions, path)`` writes a side-by-side preview file
            and returns its path; ``preview_suffix`` is its file extension.
        description: one line for listings.
        write_samples: optional ``(samples, path)`` writes generated samples ``(B, C, *spatial)``
            (latent-generator previews) and returns the path.
        held_out_dataset: ``datamodule -> Dataset`` of held-out samples (items with ``"x"``) scored every
            ``trainer.eval_every_n_steps`` steps; needs ``reconstruction_metrics`` too. None: no in-training evaluation.
        reconstruction_metrics: ``(settings, device) -> MetricSuite``; ``settings`` is the offline command's
            (the modality's ``tool_settings.evaluate`` instance) or None during training.
        quantization: rounding to the stored precision, applied to reconstructions before every metric (image: 8 bits).
        feature_extractor: ``device -> FeatureExtractor`` for rFID / gFID (image: FID Inception). None: no FID.
        write_grid: ``(rows, path)`` writes a grid, one row per sample (each ``(K, C, *spatial)``: original then
            reconstructions) and returns the path; the offline evaluation's ``reconstructions<preview_suffix>``.
            A ``write_preview`` / ``write_samples`` / ``write_grid`` that declares an ``options`` keyword gets the
            run's data options (:func:`with_data_options`), e.g. the sample rate a WAV header must carry.
        select_eval_samples: ``SampleRequest -> EvalSamples``: the samples the offline evaluation, latent
            statistics and gFID references use.
        cache_inputs: ``settings -> CacheInputs``: the samples ``cache_latents`` encodes, in order (``settings``:
            the modality's ``tool_settings.cache_latents`` instance).
        tool_settings: settings dataclasses of the offline commands (:class:`ToolSettings`).
        sample_extent: ``data_config -> sizes`` of one training sample's axes after ``C`` (video: frames, height,
            width). None: ``(data.size,) * spatial_dims``. Sizes the latent grid of a generator trained on the fly.
        defaults: extra modality defaults (free-form, read by recipes).
    """

    name: str
    spatial_dims: int
    channels: int
    make_datamodule: Callable[[Any, int, int], Any]
    write_preview: Callable[[Tensor, Tensor, Path], Path] | None = None
    preview_suffix: str = ".png"
    description: str = ""
    write_samples: Callable[[Tensor, Path], Path] | None = None
    held_out_dataset: Callable[[Any], Dataset] | None = None
    reconstruction_metrics: Callable[[Any, torch.device], MetricSuite] | None = None
    quantization: Quantization | None = None
    feature_extractor: Callable[[torch.device], FeatureExtractor] | None = None
    write_grid: Callable[[list[Tensor], Path], Path] | None = None
    select_eval_samples: Callable[[SampleRequest], EvalSamples] | None = None
    cache_inputs: Callable[[Any], CacheInputs] | None = None
    tool_settings: ToolSettings = field(default_factory=ToolSettings)
    sample_extent: Callable[[Any], tuple[int, ...]] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)

    def data_extent(self, data_config: Any) -> tuple[int, ...]:
        """Axis sizes (after ``C``) of one training sample under ``data_config`` (see ``sample_extent``)."""
        if self.sample_extent is not None:
            return tuple(int(n) for n in self.sample_extent(data_config))
        return (int(data_config.size),) * self.spatial_dims

    def require_hooks(self, tool: str, *names: str) -> None:
        """Raise naming the unset fields when this modality cannot run ``tool``."""
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise ValueError(f"modality '{self.name}' cannot run {tool}: its Modality sets no {', '.join(missing)} "
                             f"(see core/modality.py for what each hook returns)")


def datamodule_eval_split(datamodule: Any) -> Dataset:
    """A ``held_out_dataset`` hook for datamodules with an ``eval_dataset()`` method (every built-in
    one): the held-out split, or the training samples when nothing is held out."""
    return datamodule.eval_dataset()


def with_data_options(writer: Callable[..., Path] | None, options: Mapping[str, Any] | None) -> Callable[..., Path] | None:
    """``writer`` with ``options=`` bound when it declares that keyword, else ``writer`` itself.

    ``options`` are the run's data options (training: ``cfg.data.options``; offline tools: their settings
    as a dict): what a writer needs beyond the tensors, such as the audio sample rate, which the
    tensors do not carry. Writers without the keyword (images, video) are called as before.
    """
    if writer is None or "options" not in inspect.signature(writer).parameters:
        return writer
    return functools.partial(writer, options=dict(options or {}))


def get_modality(name: str) -> Modality:
    """The registered modality ``name`` (plugins are loaded on first use)."""
    from core.registry import MODALITIES

    modality = MODALITIES.create(name)
    if not isinstance(modality, Modality):
        raise TypeError(f"modality factory '{name}' returned {type(modality).__name__}, expected core.modality.Modality")
    return modality
