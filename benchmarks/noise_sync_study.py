"""Noise-sync generation study (DiTo Table 2 at small scale): does noise synchronization make the
tokenizer's latents easier to generate?

Two tokenizers that differ only in noise sync (p = 0 vs 0.1) each get the same class-conditional
latent DiT; the script reports reconstruction (PSNR, SSIM, rFID on held-out crops) and generation
(gFID of CFG samples against the training crops) side by side.

    python -m benchmarks.noise_sync_study                                   # CPU: bundled photographs
    python -m benchmarks.noise_sync_study --tokenizer-plain A/export --tokenizer-sync B/export
    python -m benchmarks.noise_sync_study --data-root /data/imagenet --size 256 --crops-per-image 0 \\
        --tokenizer-plain dito_xl/export --tokenizer-sync dito_xl_noise_sync/export --dit-size xl --dit-steps 400000 \\
        --dit-lr 1e-4 --dit-ema 0.9999 --batch 256 --workers 8 --num-images 50000 --num-reference 50000 \\
        --num-recon 5000 --device cuda

Data: ``--data-root`` is a folder with ``train/`` and ``val/`` (ImageNet-style class folders or flat);
default: the photographs bundled with scikit-image (8 train, 2 held out). For small data the script
cuts a fixed set of ``--size`` crops from them (classes = source class folder, or the photograph for
flat folders): training crops for the DiT and as the gFID reference, held-out crops for
reconstruction. ``--crops-per-image 0`` uses the images as they are (DiTo's protocol: shorter side +
center crop; one GPU — multi-GPU runs use the ``latent_dit_*`` recipes).
Tokenizers are trained with ``--tokenizer-recipe`` (default: the reduced-width DiTo of
``recipes.image.dito_cpu_evidence``) unless given. Prints a table, writes JSON (default
``benchmarks/results/noise_sync_study_<device>.json``) and everything else under ``--out``.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import random
from datetime import date
from pathlib import Path
from typing import Any

import torch

from benchmarks.results_io import write_result
from core.builder import ComponentConfig
from core.eval.command import evaluate_checkpoint
from core.generation.config import GeneratorConfig
from core.training.config import DataConfig, EMAConfig, OptimConfig, TrainerConfig
from core.training.generator_config import GeneratorExperimentConfig, GeneratorSampleConfig
from core.training.generator_run import train_generator
from core.training.run import train
from modalities.image.data import list_images, open_image, resize_shorter_side
from modalities.image.demo import export_demo_dataset
from core.eval.selection import SourceData
from modalities.image.eval_suite import ImageEvalSettings
from modalities.image.generation_eval import GenerationEvalSettings, evaluate_generator

__all__ = ["make_crop_folder", "main"]

VARIANTS = {"plain": 0.0, "noise_sync": 0.1}


def make_crop_folder(source: Path, out: Path, *, size: int, per_image: int, seed: int) -> int:
    """Cut ``per_image`` random ``size``² crops from every image under ``source`` (shorter side
    resized to ``2·size`` first) into ``out/<class>/``; class = the image's class folder, or its
    file stem for a flat folder. Deterministic given ``seed``; returns the number of crops."""
    rng = random.Random(seed)
    files = list_images(source)
    if not files:
        raise FileNotFoundError(f"no images under {source}")
    count = 0
    for path in files:
        label = path.parent.name if path.parent != source else path.stem
        image = resize_shorter_side(open_image(path).convert("RGB"), 2 * size)
        (out / label).mkdir(parents=True, exist_ok=True)
        for k in range(per_image):
            left, top = rng.randint(0, image.width - size), rng.randint(0, image.height - size)
            target = out / label / f"{path.stem}_{k:04d}.png"
            if not target.exists():
                image.crop((left, top, left + size, top + size)).save(target)
            count += 1
    return count


def _train_tokenizer(args: argparse.Namespace, variant: str, out: Path) -> Path:
    recipe = importlib.import_module(args.tokenizer_recipe)
    cfg = recipe.build_config()
    cfg.name = f"tokenizer_{variant}"
    cfg.output_dir = str(out / cfg.name)
    cfg.model.noise_sync.p = VARIANTS[variant]
    resize = 2 * args.size if args.crops_per_image > 0 else args.size  # crops mode: the crops' own scale
    cfg.data = DataConfig(
        root=args.data_root, demo=args.data_root is None, size=args.size, batch_size=args.batch, num_workers=args.workers,
        options={"resize": resize, "eval_size": args.size, "eval_resize": resize, "cache": args.data_root is None},
    )
    cfg.trainer.max_steps = args.tokenizer_steps
    cfg.trainer.accelerator = "auto" if args.device == "cuda" else "cpu"
    cfg.trainer.eval_every_n_steps = 0
    cfg.trainer.checkpoint_every_n_steps = max(args.tokenizer_steps, 1)
    cfg.trainer.preview_every_n_steps = 0
    cfg.trainer.progress_bar = args.progress
    return train(cfg).export_dir


def _train_dit(args: argparse.Namespace, variant: str, tokenizer: Path, crops: Path, num_classes: int, out: Path) -> Path:
    cfg = GeneratorExperimentConfig(
        name=f"dit_{variant}", seed=args.seed, output_dir=str(out / f"dit_{variant}"), tokenizer=str(tokenizer),
        generator=GeneratorConfig(
            net=ComponentConfig(f"dit_{args.dit_size}_2", dict(args.dit_overrides)), num_classes=num_classes,
            label_drop_prob=0.1, sample_steps=args.sample_steps, cfg_scale=args.cfg_scale,
        ),
        data=DataConfig(root=str(crops), size=args.size, batch_size=args.batch, num_workers=args.workers,
                        options={"resize": args.size, "train_crop": "center", "labels": "folder", "cache": args.crops_per_image > 0}),
        optim=OptimConfig(name="adamw", lr=args.dit_lr, weight_decay=0.0),
        ema=EMAConfig(enabled=True, decay=args.dit_ema, warmup=False),
        trainer=TrainerConfig(
            max_steps=args.dit_steps, accelerator="auto" if args.device == "cuda" else "cpu",
            log_every_n_steps=max(1, min(25, args.dit_steps // 4)),
            checkpoint_every_n_steps=max(args.dit_steps, 1), preview_every_n_steps=0, progress_bar=args.progress,
        ),
        sample=GeneratorSampleConfig(count=min(16, 2 * num_classes), decode_steps=args.decode_steps),
    )
    result = train_generator(cfg)
    return result.export_dir


def _final_loss(run_dir: Path) -> float | None:
    import csv

    files = sorted(run_dir.glob("logs/csv/version_*/metrics.csv"))
    values = [float(row["train/fm"]) for f in files for row in csv.DictReader(f.open()) if row.get("train/fm")]
    return sum(values[-10:]) / len(values[-10:]) if values else None


def run_variant(args: argparse.Namespace, variant: str, crops_train: Path, crops_val: Path, num_classes: int, out: Path) -> dict[str, Any]:
    """Tokenizer (given or trained) -> reconstruction metrics -> DiT -> generation metrics."""
    given = getattr(args, f"tokenizer_{'plain' if variant == 'plain' else 'sync'}")
    tokenizer = Path(given) if given else _train_tokenizer(args, variant, out)
    recon = evaluate_checkpoint(ImageEvalSettings(
        checkpoint=str(tokenizer), data=SourceData(root=str(crops_val)), num_images=args.num_recon, resolution=args.size,
        steps=[args.decode_steps], batch_size=args.eval_batch, seed=args.seed, out=str(out / f"recon_{variant}"),
        device=args.device, num_workers=0, progress=args.progress,
    ))
    dit = _train_dit(args, variant, tokenizer, crops_train, num_classes, out)
    row: dict[str, Any] = {"variant": variant, "noise_sync_p": VARIANTS[variant], "tokenizer": str(tokenizer)}
    metrics = recon["metrics"][f"steps_{args.decode_steps}"]
    row.update({k: metrics.get(k) for k in ("psnr_mean_per_image", "ssim", "rfid")})
    row["dit_final_fm_loss"] = _final_loss(dit.parent)
    for scale in args.gfid_cfg:
        report = evaluate_generator(GenerationEvalSettings(
            generator=str(dit), reference=SourceData(root=str(crops_train)), num_reference=args.num_reference, num_images=args.num_images,
            resolution=args.size, steps=args.sample_steps, cfg_scale=scale, decode_steps=args.decode_steps,
            batch_size=args.eval_batch, seed=args.seed, out=str(out / f"gen_{variant}_cfg{scale:g}"), device=args.device,
            num_workers=0, progress=args.progress,
        ))
        row[f"gfid_cfg{scale:g}"] = report["gfid"]
    return row


def format_table(rows: list[dict[str, Any]], scales: list[float]) -> str:
    head = ["variant", "PSNR", "SSIM", "rFID", *[f"gFID (CFG {s:g})" for s in scales], "DiT FM loss"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(value: Any, digits: int) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    for r in rows:
        cells = [r["variant"], fmt(r["psnr_mean_per_image"], 2), fmt(r["ssim"], 3), fmt(r["rfid"], 1),
                 *[fmt(r[f"gfid_cfg{s:g}"], 1) for s in scales], fmt(r["dit_final_fm_loss"], 4)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="folder with train/ and val/ (default: bundled photographs)")
    p.add_argument("--size", type=int, default=64, help="crop / image resolution")
    p.add_argument("--crops-per-image", type=int, default=32,
                   help="random crops cut per image (small data); 0: use train/ and val/ as they are (full scale)")
    p.add_argument("--num-reference", type=int, default=0, help="gFID reference images from train/ (0: all)")
    p.add_argument("--num-recon", type=int, default=0, help="held-out images for reconstruction metrics (0: all)")
    p.add_argument("--tokenizer-plain", default=None, help="export dir of a trained plain tokenizer (skips training)")
    p.add_argument("--tokenizer-sync", default=None, help="export dir of a trained noise-sync tokenizer (skips training)")
    p.add_argument("--tokenizer-recipe", default="recipes.image.dito_cpu_evidence")
    p.add_argument("--tokenizer-steps", type=int, default=1000)
    p.add_argument("--dit-size", default="tiny", help="dit_<size>_2 from the generator registry")
    p.add_argument("--dit-override", action="append", default=[], metavar="KEY=INT",
                   help="DiT constructor override, e.g. --dit-override depth=6 (repeatable)")
    p.add_argument("--dit-steps", type=int, default=1500)
    p.add_argument("--dit-lr", type=float, default=1e-4)
    p.add_argument("--dit-ema", type=float, default=0.9999)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sample-steps", type=int, default=200)
    p.add_argument("--cfg-scale", type=float, default=2.0, help="the generator's default CFG scale")
    p.add_argument("--gfid-cfg", type=float, action="append", default=None, help="CFG scales to report gFID at (default: 2.0)")
    p.add_argument("--decode-steps", type=int, default=50)
    p.add_argument("--num-images", type=int, default=256, help="generated images per gFID")
    p.add_argument("--eval-batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/noise_sync_study")
    p.add_argument("--json", default=None)
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    args.gfid_cfg = args.gfid_cfg or [2.0]
    args.dit_overrides = [(k, int(v)) for k, v in (item.split("=", 1) for item in args.dit_override)]
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    source = Path(args.data_root) if args.data_root else export_demo_dataset()
    if args.crops_per_image > 0:  # small data: a fixed set of random crops per image, class = image (or its folder)
        crops_train, crops_val = out / "crops" / "train", out / "crops" / "val"
        n_train = make_crop_folder(source / "train", crops_train, size=args.size, per_image=args.crops_per_image, seed=args.seed)
        n_val = make_crop_folder(source / "val", crops_val, size=args.size, per_image=args.crops_per_image, seed=args.seed + 1)
    else:  # full scale: the images themselves (shorter side + center crop), classes from train/ class folders
        crops_train, crops_val = source / "train", source / "val"
        n_train, n_val = len(list_images(crops_train)), len(list_images(crops_val))
    num_classes = max(1, len([d for d in crops_train.iterdir() if d.is_dir()]))
    rows = [run_variant(args, variant, crops_train, crops_val, num_classes, out) for variant in VARIANTS]
    report = {
        "benchmark": "noise_sync_study", "date": date.today().isoformat(), "machine": platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
        "data": str(source), "train_crops": n_train, "val_crops": n_val, "num_classes": num_classes,
        "settings": {k: v for k, v in vars(args).items() if k not in ("dit_overrides",)}, "rows": rows,
    }
    table = format_table(rows, args.gfid_cfg)
    print(table)
    path = Path(args.json or f"benchmarks/results/noise_sync_study_{args.device}.json")
    write_result(report, path)
    return report


if __name__ == "__main__":
    main()
