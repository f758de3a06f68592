"""Audio reconstruction metrics, per-clip means, at the model rate (PESQ: at 16 kHz).

- ``si_sdr``: scale-invariant SDR in dB (torchmetrics; zero-mean), mean over clips (and channels);
- ``waveform_l1``: mean absolute sample difference;
- ``pesq_wb``: ITU-T P.862.2 wide-band PESQ (MOS-LQO, about 1.0-4.64) of the mono mix resampled to 16 kHz
  (the ``pesq`` package accepts only 8 / 16 kHz), when ``pesq`` is installed;
- ``stoi``: short-time objective intelligibility (0-1) of the mono mix, when ``pystoi`` is installed.

Extra metrics (e.g. multi-scale mel and MR-STFT distances) plug in through ``audio_metric_suite(extra=...)``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from core.eval.protocol import MetricSuite, ReconstructionMetric
from modalities.audio.io import resample

__all__ = ["METRIC_DEFINITIONS", "TABLE_COLUMNS", "PESQ_RATE", "ClipMean", "SiSdr", "WaveformL1", "Pesq", "Stoi",
           "audio_metric_suite"]

log = logging.getLogger("difftok.audio")
PESQ_RATE = 16000
METRIC_DEFINITIONS = {
    "si_sdr": "scale-invariant SDR in dB (torchmetrics, zero-mean), mean over clips and channels",
    "waveform_l1": "mean |x - x_hat| over samples, mean over clips",
    "pesq_wb": f"P.862.2 wide-band PESQ (pesq package) of the mono mix resampled to {PESQ_RATE} Hz, mean over scored clips",
    "stoi": "STOI (pystoi, classic) of the mono mix at the model rate, mean over clips",
    "mel_distance": "DAC multi-scale mel distance (log-mel L1, windows 32..2048) at the model rate, mean over clips",
    "mrstft": "DAC multi-resolution STFT distance (log-magnitude L1, windows 2048 / 512), mean over clips",
}
TABLE_COLUMNS = [("si_sdr", "SI-SDR dB"), ("mel_distance", "mel"), ("mrstft", "MR-STFT"), ("waveform_l1", "L1"),
                 ("pesq_wb", "PESQ-WB"), ("stoi", "STOI")]


class ClipMean:
    """Mean of a per-clip score: subclasses define ``name`` and ``score(reference, reconstruction) -> (B,)``."""

    name = "score"

    def __init__(self) -> None:
        self.total, self.clips = 0.0, 0

    def score(self, reference: Tensor, reconstruction: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, reference: Tensor, reconstruction: Tensor) -> None:
        values = self.score(reference.detach().float().cpu(), reconstruction.detach().float().cpu())
        self.total += float(values.double().sum())
        self.clips += int(values.numel())

    def compute(self) -> dict[str, float]:
        if self.clips == 0:
            return {}
        return {self.name: self.total / self.clips}


class SiSdr(ClipMean):
    """Scale-invariant SDR per clip (mean over its channels)."""

    name = "si_sdr"

    def score(self, reference: Tensor, reconstruction: Tensor) -> Tensor:
        from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

        return scale_invariant_signal_distortion_ratio(reconstruction, reference, zero_mean=True).mean(dim=-1)


class WaveformL1(ClipMean):
    """Mean absolute sample error per clip."""

    name = "waveform_l1"

    def score(self, reference: Tensor, reconstruction: Tensor) -> Tensor:
        return (reference - reconstruction).abs().flatten(1).mean(dim=1)


class _SpeechScore(ClipMean):
    """A per-clip score of a numpy speech measure on the mono mix; clips it cannot score are counted, not averaged."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        self.sample_rate, self.failed = sample_rate, 0

    def measure(self, reference: Any, reconstruction: Any) -> float:
        raise NotImplementedError

    def score(self, reference: Tensor, reconstruction: Tensor) -> Tensor:
        values = []
        for ref, rec in zip(reference.mean(dim=1), reconstruction.mean(dim=1)):
            try:
                values.append(self.measure(ref.numpy(), rec.numpy()))
            except Exception as err:  # noqa: BLE001  (pesq raises its own types, e.g. NoUtterancesError on silence)
                self.failed += 1
                log.warning("%s not computed for one clip: %s: %s", self.name, type(err).__name__, err)
        return torch.tensor(values, dtype=torch.float64)

    def compute(self) -> dict[str, float]:
        values = super().compute()
        return values | ({f"num_{self.name}_failed": float(self.failed)} if self.failed else {})


class Pesq(_SpeechScore):
    """Wide-band PESQ at 16 kHz (clips at other rates are resampled first)."""

    name = "pesq_wb"

    def score(self, reference: Tensor, reconstruction: Tensor) -> Tensor:
        if self.sample_rate != PESQ_RATE:
            reference = resample(reference.flatten(0, 1), self.sample_rate, PESQ_RATE).unflatten(0, reference.shape[:2])
            reconstruction = resample(reconstruction.flatten(0, 1), self.sample_rate, PESQ_RATE).unflatten(0, reconstruction.shape[:2])
        return super().score(reference, reconstruction)

    def measure(self, reference: Any, reconstruction: Any) -> float:
        from pesq import pesq

        return float(pesq(PESQ_RATE, reference, reconstruction, "wb"))


class Stoi(_SpeechScore):
    """Classic STOI at the model rate (pystoi resamples to 10 kHz internally)."""

    name = "stoi"

    def measure(self, reference: Any, reconstruction: Any) -> float:
        from pystoi import stoi

        return float(stoi(reference, reconstruction, self.sample_rate, extended=False))


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def audio_metric_suite(settings: Any | None, device: torch.device, extra: Sequence[Callable[[], ReconstructionMetric]] = ()) -> MetricSuite:
    """The audio modality's ``reconstruction_metrics`` hook.

    Offline (``settings``: :class:`~modalities.audio.eval_suite.AudioEvalSettings`, whose ``sample_rate`` is the
    clips' rate): SI-SDR, multi-scale mel and MR-STFT distances, waveform L1, and PESQ-WB / STOI when ``pesq`` / ``pystoi`` are installed and
    ``settings.speech`` is true. In training (``settings`` None): SI-SDR and L1 (cheap). ``extra``: factories
    of further accumulators (e.g. spectral distances), added in both cases.
    """
    metrics: list[Callable[[], ReconstructionMetric]] = [SiSdr, WaveformL1, *extra]
    notes: list[str] = []
    definitions = {k: METRIC_DEFINITIONS[k] for k in ("si_sdr", "waveform_l1")}
    if settings is not None:  # the spectral distances need the clips' rate, which only offline settings give
        from modalities.audio.spectral_metrics import MelDistanceMetric, MRSTFTDistanceMetric

        spectral_rate = int(getattr(settings, "sample_rate", PESQ_RATE))
        metrics += [lambda: MelDistanceMetric(spectral_rate), MRSTFTDistanceMetric]
        definitions.update({k: METRIC_DEFINITIONS[k] for k in ("mel_distance", "mrstft")})
    if settings is not None and getattr(settings, "fid", False):
        notes.append("FAD not computed: the audio modality has no offline Fréchet embedding (VGGish / CLAP / PANNs "
                     "need a weights download); drop fid=true")
    if settings is not None and getattr(settings, "speech", True):
        rate = int(getattr(settings, "sample_rate", PESQ_RATE))
        for module, name, factory in (("pesq", "pesq_wb", Pesq), ("pystoi", "stoi", Stoi)):
            if _installed(module):
                metrics.append(lambda factory=factory: factory(rate))
                definitions[name] = METRIC_DEFINITIONS[name]
            else:
                notes.append(f"{name} skipped: pip install {module} (in the audio / dev extras) to compute it")

    def make() -> list[ReconstructionMetric]:
        return [factory() for factory in metrics]

    return MetricSuite(make=make, notes=tuple(notes), protocol=definitions)
