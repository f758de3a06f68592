"""A complete third-party modality built only on core: 1-D signals ``(B, 1, L)`` in [-1, 1].

Everything a modality supplies is here and nothing else (``docs/plugins.md`` walks through it):

- the data spec: ``.npy`` files (one ``(1, L)`` or ``(L,)`` float array each, values in [-1, 1]), opened
  from a path, a tar-shard member or raw bytes; typed options; a random-crop + time-reversal train
  transform and a center-crop eval transform; demo data (rows of the grayscale photographs bundled with
  scikit-image, one class folder per photograph);
- its shard format (``make_shards`` for signals), its metric (SNR in dB), a 16-bit quantisation, a
  spectral feature extractor for Fréchet distances, and preview/grid/sample writers (``.npz``);
- the offline tools' settings (evaluation, latent statistics, latent cache).

Core does the rest: folder/shard/demo sources, holdout, skip-and-count of unreadable files, shard
writing and streaming, training, the evaluation loop, latent statistics, the latent cache and the
latent generator. It is registered through the ``difftok.modalities`` entry-point group by
``tests/test_plugins.py``, exactly as an installed package would be.
"""

from __future__ import annotations

import io
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.data.datamodule import DataSpec, SampleDataModule
from core.data.folder_shards import FolderShardFormat
from core.data.options import SampleDataOptions
from core.data.sources import SampleRef, TarMember
from core.eval.command import EvalSettings
from core.eval.protocol import MetricSuite, Quantization
from core.eval.samples import CacheInputs, EvalSamples, SampleRequest
from core.eval.selection import CacheSource, SourceData, list_cache_inputs, select_samples
from core.latent.cache_command import CacheLatentsSettings
from core.latent.stats_command import LatentStatsSettings
from core.modality import Modality, ToolSettings
from core.registry import MODALITIES

__all__ = ["SIGNAL_DATA", "SIGNAL_SHARDS", "signal_modality", "register", "export_demo_signals", "open_signal_bytes"]

log = logging.getLogger("difftok.signal")
EXTENSIONS = (".npy",)
DEMO_PHOTOS = ("camera", "moon", "coins")  # grayscale photographs shipped with scikit-image
DEMO_LENGTH = 256


# ----------------------------------------------------------------------------------------------- reading
def open_signal_bytes(data: bytes) -> Tensor:
    """``.npy`` bytes -> ``(1, L)`` float32 in [-1, 1]; ValueError for anything else (counted as unreadable)."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:  # numpy raises ValueError, EOFError, OSError, ... on damaged files
        raise ValueError(f"not a .npy signal ({type(err).__name__}: {err})") from err
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[0] != 1 or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"expected a float (1, L) or (L,) array, got {array.dtype} {array.shape}")
    if not np.isfinite(array).all() or np.abs(array).max() > 1:
        raise ValueError("signal values must be finite and within [-1, 1]")
    return torch.from_numpy(array.astype(np.float32))


def open_signal(ref: SampleRef) -> Tensor:
    """A file or tar member -> ``(1, L)`` signal."""
    return open_signal_bytes(ref.read_bytes() if isinstance(ref, TarMember) else Path(ref).read_bytes())


def check_signal(ref: SampleRef) -> None:
    """The setup scan: raise unless ``ref`` opens."""
    open_signal(ref)


def check_signal_bytes(data: bytes, mode: str = "decode") -> None:
    """make_shards' check (``mode`` is irrelevant: opening a .npy is cheap)."""
    open_signal_bytes(data)


# ----------------------------------------------------------------------------------------------- transforms
@dataclass(frozen=True)
class SignalOptions(SampleDataOptions):
    """``data.options`` of the signal modality: the common keys plus ``eval_length`` (0: ``data.size``)."""

    eval_length: int = 0


@dataclass(frozen=True)
class SignalCrop:
    """Crop ``length`` samples (random position and 50 % time reversal in training, centered otherwise)."""

    length: int
    train: bool = True

    def __call__(self, signal: Tensor, rng: random.Random | None) -> Tensor:
        total = signal.shape[-1]
        if total < self.length:
            raise ValueError(f"signal of {total} samples is shorter than the crop {self.length}")
        start = rng.randint(0, total - self.length) if self.train and rng is not None else (total - self.length) // 2
        x = signal[..., start:start + self.length]
        if self.train and rng is not None and rng.random() < 0.5:
            x = x.flip(-1)
        return x

    def for_cache(self, signal: Tensor) -> Tensor:
        return signal

    def describe(self) -> str:
        return f"center crop of {self.length} samples"


def train_transform(options: SignalOptions, cfg: Any) -> SignalCrop:
    return SignalCrop(int(cfg.size), train=True)


def eval_transform(options: SignalOptions, cfg: Any) -> SignalCrop:
    return SignalCrop(options.eval_length or int(cfg.size), train=False)


def export_demo_signals(directory: str | None = None) -> Path:
    """Rows of scikit-image's grayscale photographs as signals: ``train/<photo>/`` and ``val/<photo>/``."""
    from skimage import data

    root = Path(directory) if directory is not None else Path.home() / ".cache" / "difftok" / "demo_signals"
    for photo in DEMO_PHOTOS:
        image = getattr(data, photo)().astype(np.float32) / 127.5 - 1.0  # (H, W) in [-1, 1]
        for row in range(0, 160, 8):
            split = "val" if row % 40 == 0 else "train"
            target = root / split / photo / f"row_{row:03d}.npy"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                np.save(target, np.ascontiguousarray(image[row, :DEMO_LENGTH])[None])
    return root


SIGNAL_DATA = DataSpec(
    noun="signal", extensions=EXTENSIONS, shard_extensions=("npy",), open_ref=open_signal, open_bytes=open_signal_bytes,
    check=check_signal, options_type=SignalOptions, train_transform=train_transform, eval_transform=eval_transform,
    export_demo=export_demo_signals, logger=log,
)
SIGNAL_SHARDS = FolderShardFormat(noun="signal", index_format="example-signal-shards", extensions=EXTENSIONS,
                                  check=check_signal_bytes, logger=log)


# ----------------------------------------------------------------------------------------------- metrics
class SignalToNoise:
    """Mean over signals of ``10 log10(||x||² / ||x - rec||²)`` (dB)."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, reference: Tensor, reconstruction: Tensor) -> None:
        power = reference.double().pow(2).flatten(1).sum(1)
        error = (reference.double() - reconstruction.double()).pow(2).flatten(1).sum(1).clamp_min(1e-20)
        self.total += float((10 * torch.log10(power / error)).sum())
        self.count += reference.shape[0]

    def compute(self) -> dict[str, float]:
        return {"snr_db": self.total / max(1, self.count)}


def signal_metrics(settings: Any, device: torch.device) -> MetricSuite:
    return MetricSuite(make=lambda: [SignalToNoise()], protocol={"snr_db": "mean over signals of 10 log10(|x|^2 / |x - rec|^2)"})


PCM16 = Quantization(store=lambda x: (x.clamp(-1, 1) * 32767).round().to(torch.int16), load=lambda q: q.float() / 32767,
                     description="16-bit integers")


class SpectrumFeatures:
    """Log-magnitude of the first 16 Fourier coefficients: a fixed feature for Fréchet distances."""

    num_features = 16
    info = {"features": "log(1 + |rfft(x)|), bins 0-15 of the channel mean"}

    def __call__(self, samples: Tensor) -> Tensor:
        spectrum = torch.fft.rfft(samples.double().mean(1), dim=-1).abs()  # (B, L/2 + 1)
        return torch.log1p(spectrum[:, : self.num_features])


def write_arrays(path: Path, **arrays: Tensor | list[Tensor]) -> Path:
    """Save tensors (or lists of equally shaped tensors, stacked) as ``path`` with suffix ``.npz``."""
    path = Path(path).with_suffix(".npz")
    np.savez(path, **{k: (torch.stack(v) if isinstance(v, list) else v).cpu().numpy() for k, v in arrays.items()})
    return path


# ----------------------------------------------------------------------------------------------- offline tools
class CenterCropLoader:
    """``ref -> (1, length)`` with the eval transform (picklable for loader workers)."""

    def __init__(self, length: int) -> None:
        self.crop = SignalCrop(length, train=False)

    def __call__(self, ref: SampleRef) -> Tensor:
        return self.crop(open_signal(ref), None)


@dataclass
class SignalEvalSettings(EvalSettings):
    modality: str = "signal"
    data: SourceData = field(default_factory=SourceData)
    num_signals: int = 0  # <= 0: all
    length: int = DEMO_LENGTH

    def sample_request(self) -> SampleRequest:
        return SampleRequest(self.data, self.num_signals, self.seed, self.length)


@dataclass
class SignalStatsSettings(LatentStatsSettings):
    modality: str = "signal"
    data: SourceData = field(default_factory=SourceData)
    num_signals: int = 0
    length: int = DEMO_LENGTH

    def sample_request(self) -> SampleRequest:
        return SampleRequest(self.data, self.num_signals, self.seed, self.length)


@dataclass
class SignalCacheSettings(CacheLatentsSettings):
    modality: str = "signal"
    data: CacheSource = field(default_factory=CacheSource)
    length: int = DEMO_LENGTH
    labels: str = "folder"


def select_signals(request: SampleRequest) -> EvalSamples:
    loader = CenterCropLoader(int(request.size))
    return select_samples(SIGNAL_DATA, request.data, request.count, request.seed, loader, loader.crop.describe())


def signal_cache_inputs(settings: SignalCacheSettings) -> CacheInputs:
    loader = CenterCropLoader(settings.length)
    return list_cache_inputs(SIGNAL_DATA, settings.data, settings.labels, loader, loader.crop.describe(),
                             shuffle=settings.shuffle, seed=settings.seed)


def signal_modality() -> Modality:
    """The ``signal`` modality: ``(B, 1, L)`` in [-1, 1], one spatial (time) axis."""
    return Modality(
        name="signal", spatial_dims=1, channels=1,
        make_datamodule=lambda cfg, seed, batch_size: SampleDataModule(cfg, SIGNAL_DATA, seed, batch_size),
        write_preview=lambda x, rec, path: write_arrays(path, original=x, reconstruction=rec), preview_suffix=".npz",
        write_samples=lambda samples, path: write_arrays(path, samples=samples),
        description="1-D signals (B, 1, L) in [-1, 1] (example plugin)",
        held_out_dataset=lambda datamodule: datamodule.eval_dataset(),
        reconstruction_metrics=signal_metrics, quantization=PCM16, feature_extractor=lambda device: SpectrumFeatures(),
        write_grid=lambda rows, path: write_arrays(path, rows=rows),
        select_eval_samples=select_signals, cache_inputs=signal_cache_inputs,
        tool_settings=ToolSettings(evaluate=SignalEvalSettings, latent_stats=SignalStatsSettings, cache_latents=SignalCacheSettings),
    )


def register() -> None:
    """Entry point of the ``difftok.modalities`` group."""
    MODALITIES.add("signal", signal_modality)

