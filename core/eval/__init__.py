"""Evaluation for every modality: the reconstruction loop, the offline command, Fréchet distances, gFID.

The modality supplies samples, metrics, quantisation and a feature extractor through
:class:`core.modality.Modality`; nothing here knows what an image is.
"""

from core.eval.frechet import FeatureBank, frechet_distance
from core.eval.protocol import FeatureExtractor, MetricSuite, Quantization, ReconstructionMetric
from core.eval.reconstruction import ReconstructionResult, evaluate_reconstructions
from core.eval.runtime import PhaseTimer, per_sample_noise, resolve_device
from core.eval.samples import CacheInputs, EvalSamples, LoadedSamples, SampleRequest, sample_loader

__all__ = [
    "FeatureBank", "frechet_distance", "FeatureExtractor", "MetricSuite", "Quantization", "ReconstructionMetric",
    "ReconstructionResult", "evaluate_reconstructions", "PhaseTimer", "per_sample_noise", "resolve_device",
    "CacheInputs", "EvalSamples", "LoadedSamples", "SampleRequest", "sample_loader",
]
