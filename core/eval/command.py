"""The offline reconstruction-evaluation command for any modality (``recipes.image.evaluate`` for images).

The modality chooses the samples (``Modality.select_eval_samples``: e.g. a seeded class-stratified
subset), its metrics (``reconstruction_metrics``), the quantisation applied before them
(``quantization``), the rFID feature extractor (``feature_extractor``) and the comparison grid
(``write_grid``). Core runs :func:`~core.eval.reconstruction.evaluate_reconstructions` and writes
``metrics.json`` (every choice recorded), the grid, ``subset.txt`` and optionally ``arrays.npz``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from core.data.skips import skip_notes
from core.eval.reconstruction import evaluate_reconstructions
from core.eval.runtime import PhaseTimer, resolve_device
from core.eval.samples import LoadedSamples, SampleRequest, sample_loader
from core.modality import get_modality, with_data_options
from core.training.checkpoint_load import load_autoencoder

__all__ = ["EvalSettings", "evaluate_checkpoint", "format_table", "parse_steps"]


def parse_steps(steps: Any) -> list[int]:
    """``steps`` given as an int, a string or a list -> positive ints."""
    values = [int(s) for s in ([steps] if isinstance(steps, (int, str)) else list(steps))]
    if not values or min(values) < 1:
        raise ValueError(f"steps={steps!r}: give a positive step count or a list like [1,10,50]")
    return values


@dataclass
class EvalSettings:
    """Modality-independent settings of one evaluation run (all written to ``metrics.json``).

    A modality subclasses this with where its samples come from and implements :meth:`sample_request`
    (image: :class:`modalities.image.eval_suite.ImageEvalSettings`).
    """

    modality: str = ""
    checkpoint: Optional[str] = None  # save_pretrained folder or Lightning .ckpt
    steps: Any = 50  # int or list of ints
    batch_size: int = 16
    seed: int = 0  # subset selection and decode noise
    out: str = "outputs/eval"
    device: str = "auto"
    use_ema: bool = True  # Lightning checkpoints: EMA weights when present
    fid: bool = True
    solver: str = "euler"
    grid_count: int = 8
    num_workers: int = 2
    save_arrays: bool = False  # also write arrays.npz (stored-form originals and reconstructions; small runs only)
    progress: bool = True

    def step_list(self) -> list[int]:
        """The decode step counts as positive ints."""
        return parse_steps(self.steps)

    def sample_request(self) -> SampleRequest:
        """Which samples to evaluate; defined by the modality's subclass."""
        raise NotImplementedError(f"{type(self).__name__} does not say which samples to evaluate: use the modality's "
                                  f"settings class (Modality.tool_settings.evaluate), which defines sample_request()")


def _rfid_notes(num_features: int, extractor: Any, unit: str) -> list[str]:
    if num_features < 2:
        return ["rFID skipped: needs at least 2 samples"]
    if num_features < extractor.num_features:
        return [f"rFID from {num_features} < {extractor.num_features} {unit}s: rank-deficient covariances, biased upwards; "
                f"compare only at equal N"]
    return []


@torch.no_grad()
def evaluate_checkpoint(settings: EvalSettings) -> dict[str, Any]:
    """Run the evaluation; writes ``metrics.json``, ``reconstructions<suffix>`` and ``subset.txt`` to ``settings.out``."""
    if not settings.checkpoint:
        raise ValueError("checkpoint=PATH is required (a save_pretrained folder or a Lightning .ckpt)")
    modality = get_modality(settings.modality)
    modality.require_hooks("evaluate", "select_eval_samples", "reconstruction_metrics")
    steps = settings.step_list()
    device = resolve_device(settings.device)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    timer, start = PhaseTimer(device), time.perf_counter()
    notes: list[str] = []

    tick = time.perf_counter()
    loaded = load_autoencoder(settings.checkpoint, modality=modality.name, use_ema=settings.use_ema)
    model = loaded.model.to(device).eval()
    suite = modality.reconstruction_metrics(settings, device)
    notes.extend(suite.notes)
    extractor = None
    if settings.fid:
        if suite.features is not None:
            extractor = suite.features
        elif suite.features_note:
            notes.append(suite.features_note)
        elif modality.feature_extractor is None:
            notes.append(f"rFID skipped: modality '{modality.name}' has no feature extractor")
        else:
            extractor = modality.feature_extractor(device)
    samples = modality.select_eval_samples(settings.sample_request())
    timer.add("load", tick)

    from tqdm import tqdm

    loader = sample_loader(LoadedSamples(samples.refs, samples.load), settings.batch_size, settings.num_workers)
    with tqdm(total=len(samples.refs), unit=samples.unit, desc="evaluating", disable=not settings.progress, dynamic_ncols=True) as bar:
        result = evaluate_reconstructions(
            model, loader, steps=steps, metrics=suite.make, seed=settings.seed, quantization=modality.quantization,
            features=extractor, solver=settings.solver, device=device, timer=timer, preview_count=settings.grid_count,
            keep_arrays=settings.save_arrays, on_batch=bar.update,
        )
    fid_info: dict[str, Any] = {"computed": False}
    if extractor is not None:
        notes.extend(_rfid_notes(result.num_features, extractor, samples.unit))
        if result.num_features >= 2:
            fid_info = {"computed": True, **extractor.info, f"num_{samples.unit}s": result.num_features}
    notes.extend(skip_notes(result.skipped, samples.unit))

    grid_path = None
    if result.previews and modality.write_grid is not None:
        write_grid = with_data_options(modality.write_grid, asdict(settings))
        grid_path = write_grid(result.previews, out / f"reconstructions{modality.preview_suffix}")
    (out / "subset.txt").write_text("".join(f"{ref}\t{label}\n" for ref, label in zip(samples.refs, samples.labels)))
    if settings.save_arrays:
        np.savez_compressed(out / "arrays.npz", **result.arrays)
    timings = timer.rounded()
    timings["total"] = round(time.perf_counter() - start, 3)
    unit = samples.unit
    report = {
        "checkpoint": str(Path(settings.checkpoint).resolve()),
        "checkpoint_format": loaded.format,
        "weights": loaded.weights,
        "global_step": loaded.global_step,
        "modality": modality.name,
        "settings": asdict(settings) | {"steps": steps},
        "data": samples.report | {"unit": unit, f"num_{unit}s": result.num_samples, "unreadable": result.unreadable,
                                 "skipped": dict(result.skipped)},
        "protocol": samples.protocol | {
            "latent": "mode", "noise": f"per-{unit} N(0, I) seeded by (seed, {unit} index)", "solver": settings.solver,
            "grid": model.sampling.grid,
            "quantisation": modality.quantization.description if modality.quantization is not None else "none",
        } | suite.protocol,
        "metrics": result.metrics,
        "fid": fid_info,
        "notes": notes,
        "timings_s": timings,
        "device": str(device),
        "torch": torch.__version__,
        "grid": str(grid_path) if grid_path else None,
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    return report


def format_table(report: dict[str, Any], columns: list[tuple[str, str]] | None = None) -> str:
    """Plain-text table of a report's metrics, one row per step count.

    Args:
        report: from :func:`evaluate_checkpoint`.
        columns: ``(metric key, title)`` pairs; default: every metric of the report except ``num_*`` counts.
    """
    if columns is None:
        keys = dict.fromkeys(k for values in report["metrics"].values() for k in values if not k.startswith("num_"))
        columns = [(key, key) for key in keys]
    header = f"{'steps':>6} " + " ".join(f"{title:>14}" for _, title in columns)
    lines = [header, "-" * len(header)]
    for name, values in report["metrics"].items():
        cells = [f"{values[key]:14.4f}" if key in values else f"{'-':>14}" for key, _ in columns]
        lines.append(f"{name.removeprefix('steps_'):>6} " + " ".join(cells))
    data, unit = report["data"], report["data"].get("unit", "sample")
    lines.append(f"{data.get(f'num_{unit}s', '?')} {unit}s ({data.get('source', '?')}: {data.get('location', '?')}), "
                 f"seed {report['settings']['seed']}, {report['timings_s']['total']:.1f}s")
    lines.extend(f"note: {n}" for n in report["notes"])
    return "\n".join(lines)
