"""The reconstruction-evaluation loop shared by the offline command and in-training evaluation.

For every batch: encode to the latent mode, draw each sample's initial decode noise from its own
seed (:func:`~core.eval.runtime.per_sample_noise`, so no result depends on the batch size), decode
with every requested step count from that same noise, quantise the reconstructions like a saved
file would (the modality's :class:`~core.eval.protocol.Quantization`) and feed the modality's metric
accumulators and, for rFID, its feature extractor.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.eval.frechet import FeatureBank, frechet_distance
from core.eval.protocol import FeatureExtractor, Quantization, ReconstructionMetric
from core.eval.runtime import PhaseTimer, per_sample_noise

__all__ = ["ReconstructionResult", "evaluate_reconstructions", "step_key"]


def step_key(num_steps: int) -> str:
    """Report key of one decode step count: ``steps_<n>``."""
    return f"steps_{num_steps}"


@dataclass
class ReconstructionResult:
    """What :func:`evaluate_reconstructions` measured.

    Attributes:
        metrics: ``{"steps_<n>": {metric: value}}`` (plus ``rfid`` when features were extracted from >= 2 samples).
        num_samples: samples evaluated.
        skipped: every skipped sample by kind (``{"unreadable": n, "too_short": m}``; see
            :func:`~core.data.skips.skip_kind`), so short clips are not reported as corrupt files.
        num_features: samples whose reference features were extracted (0: no rFID).
        previews: the first ``preview_count`` samples, each ``(1 + len(steps), C, *spatial)``: original, then one
            (quantised) reconstruction per step count.
        arrays: with ``keep_arrays``: ``original`` and ``steps_<n>`` in the stored form, channels last.
    """

    metrics: dict[str, dict[str, float]]
    num_samples: int
    num_features: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    previews: list[Tensor] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def unreadable(self) -> int:
        """Samples skipped because they could not be read (not counting ``too_short`` ones)."""
        return self.skipped.get("unreadable", 0)


def _channels_last(x: Tensor) -> np.ndarray:
    return x.movedim(1, -1).cpu().numpy()


@torch.no_grad()
def evaluate_reconstructions(
    model: Any,
    batches: Iterable[dict[str, Any]],
    *,
    steps: Sequence[int],
    metrics: Callable[[], list[ReconstructionMetric]],
    seed: int = 0,
    quantization: Quantization | None = None,
    features: FeatureExtractor | None = None,
    solver: str | None = None,
    device: torch.device | str = "cpu",
    timer: PhaseTimer | None = None,
    preview_count: int = 0,
    keep_arrays: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> ReconstructionResult:
    """Reconstruct every sample with each step count and score the reconstructions.

    Args:
        model: a :class:`~core.autoencoder.DiffusionAutoencoder` in eval mode, on ``device``.
        batches: dicts with ``x`` ``(B, C, *spatial)`` in [-1, 1] (None or empty: nothing readable), and optionally
            ``index`` (each sample's position in the dataset, which seeds its noise; default: running position)
            ``unreadable`` (samples of this batch that were skipped) and ``skips`` (the same by kind, ``{kind: n}``).
        steps: decode step counts; all reuse the same noise.
        metrics: builds fresh accumulators (called once per step count).
        seed: noise seed.
        quantization: applied to reconstructions before metrics, features, previews and arrays (None: none).
        features: extractor for rFID (reference features of the originals, one bank per step count).
        solver: ODE solver (None: the model's).
        device: where the model runs.
        timer: accumulates phase times (``data``, ``encode``, ``decode_steps_<n>``, ``metrics``, ``features``).
        preview_count: keep this many samples for a comparison grid.
        keep_arrays: keep every original and reconstruction in the stored form (small runs only).
        on_batch: called with the number of samples of each batch (readable or not), e.g. a progress bar.
    """
    steps = [int(n) for n in steps]
    timer = timer or PhaseTimer(torch.device(device))
    accumulators = {n: metrics() for n in steps}
    real_bank, fake_banks = FeatureBank(), {n: FeatureBank() for n in steps}
    previews: list[Tensor] = []
    arrays: dict[str, list[np.ndarray]] = {"original": [], **{step_key(n): [] for n in steps}}
    quantize = quantization or (lambda x: x)
    position = evaluated = 0
    skips: Counter[str] = Counter()
    tick = time.perf_counter()
    for batch in batches:
        x = batch["x"]
        skipped = int(batch.get("unreadable", 0))
        # loaders that only count skips (no "skips" by kind) report them all as unreadable
        skips.update(batch.get("skips") or ({"unreadable": skipped} if skipped else {}))
        count = (0 if x is None else len(x)) + skipped
        indices = batch.get("index")
        if indices is None:
            indices = torch.arange(position, position + count)
        position += count
        if on_batch is not None:
            on_batch(count)
        if x is None or len(x) == 0:
            continue
        x = x.to(device)
        tick = timer.add("data", tick)
        z = model.encode(x).latent_dist.mode()  # (B, C_z, *latent_spatial)
        tick = timer.add("encode", tick)
        if features is not None:
            real_bank.update(features(x))
            tick = timer.add("features", tick)
        noise = per_sample_noise(tuple(x.shape[1:]), seed, indices).to(device)
        rows = [[x[i].cpu()] for i in range(min(len(x), preview_count - len(previews)))]
        if keep_arrays and quantization is not None:
            arrays["original"].append(_channels_last(quantization.store(x)))
        for n in steps:
            reconstruction = model.decode(z, n, noise=noise, solver=solver).sample
            tick = timer.add(f"decode_steps_{n}", tick)
            rec = quantize(reconstruction)
            for accumulator in accumulators[n]:
                accumulator.update(x, rec)
            tick = timer.add("metrics", tick)
            if features is not None:
                fake_banks[n].update(features(rec))
                tick = timer.add("features", tick)
            for i, row in enumerate(rows):
                row.append(rec[i].cpu())
            if keep_arrays:
                stored = quantization.store(reconstruction) if quantization is not None else rec
                arrays[step_key(n)].append(_channels_last(stored))
        if keep_arrays and quantization is None:
            arrays["original"].append(_channels_last(x))
        previews.extend(torch.stack(row) for row in rows)
        evaluated += len(x)
    if evaluated == 0:
        found = ", ".join(f"{n} {kind.replace('_', '-')}" for kind, n in sorted(skips.items())) or "none skipped"
        raise ValueError(f"no sample could be evaluated ({found}); check the evaluation data")

    results: dict[str, dict[str, float]] = {}
    for n in steps:
        values: dict[str, float] = {}
        for accumulator in accumulators[n]:
            values.update(accumulator.compute())
        results[step_key(n)] = values
    if features is not None and len(real_bank) >= 2:
        tick = time.perf_counter()
        real = real_bank.features()
        for n in steps:
            # the extractor names its distance (video: "rfvd"); Inception features give "rfid"
            results[step_key(n)][getattr(features, "metric_name", "rfid")] = frechet_distance(real, fake_banks[n].features())
        timer.add("fid_distance", tick)
    return ReconstructionResult(
        metrics=results, num_samples=evaluated, skipped=dict(skips),
        num_features=len(real_bank) if features is not None else 0,
        previews=previews, arrays={key: np.concatenate(parts) for key, parts in arrays.items() if parts},
    )
