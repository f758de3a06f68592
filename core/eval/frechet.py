"""Fréchet distance between feature sets (FID-style), for any modality's feature extractor.

Features are stored in float32 and the statistics and the distance computed in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["FeatureBank", "frechet_distance"]


class FeatureBank:
    """Collects (N, D) features of one sample set (float32 storage, float64 statistics)."""

    def __init__(self) -> None:
        self._chunks: list[Tensor] = []

    def update(self, features: Tensor) -> None:
        self._chunks.append(features.detach().float().cpu())

    def __len__(self) -> int:
        return sum(len(c) for c in self._chunks)

    def features(self) -> Tensor:
        """All collected features, ``(N, D)`` float64."""
        if not self._chunks:
            raise ValueError("no features collected")
        return torch.cat(self._chunks).double()


def frechet_distance(a: Tensor, b: Tensor, method: str = "auto") -> float:
    """Fréchet distance between Gaussians fitted to features ``a`` (N1, D) and ``b`` (N2, D), float64.

    ``||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr sqrt(S_a S_b)`` with unbiased covariances. The trace
    term is computed exactly either as the nuclear norm of ``C_a C_b^T / sqrt((N1-1)(N2-1))`` (centred
    features; cheap when N <= D) or from symmetric eigendecompositions of the D x D covariances
    (``method``: ``auto``, ``cross`` or ``covariance``).
    """
    a, b = a.double(), b.double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (N, D) feature matrices with equal D, got {tuple(a.shape)} and {tuple(b.shape)}")
    n_a, n_b, dim = a.shape[0], b.shape[0], a.shape[1]
    if min(n_a, n_b) < 2:
        raise ValueError(f"FID needs at least 2 samples per set, got {n_a} and {n_b}")
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)  # (N, D)
    mean_term = (a.mean(0) - b.mean(0)).square().sum()
    trace_a = centred_a.square().sum() / (n_a - 1)
    trace_b = centred_b.square().sum() / (n_b - 1)
    if method == "auto":
        method = "cross" if max(n_a, n_b) <= dim else "covariance"
    if method == "cross":
        cross = centred_a @ centred_b.T  # (N1, N2)
        sqrt_trace = torch.linalg.svdvals(cross).sum() / math.sqrt((n_a - 1) * (n_b - 1))
    elif method == "covariance":
        cov_a = centred_a.T @ centred_a / (n_a - 1)  # (D, D)
        cov_b = centred_b.T @ centred_b / (n_b - 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov_a)
        sqrt_a = (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T
        product = sqrt_a @ cov_b @ sqrt_a  # symmetric PSD, same eigenvalues as S_a S_b
        sqrt_trace = torch.linalg.eigvalsh((product + product.T) / 2).clamp(min=0).sqrt().sum()
    else:
        raise ValueError(f"method={method!r}; choose auto, cross or covariance")
    return float(mean_term + trace_a + trace_b - 2 * sqrt_trace)
