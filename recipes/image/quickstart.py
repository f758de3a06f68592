"""Quickstart: train a small DiTo-style image tokenizer on the photographs bundled with
scikit-image, on CPU, in a few minutes, then write a reconstruction grid, a loss plot and a
metrics JSON (PSNR/SSIM on held-out photographs).

    python -m recipes.image.quickstart                       # defaults (about 4 min on 2 CPU cores)
    python -m recipes.image.quickstart trainer.max_steps=50  # a smoke run

DiTo-style means: f8c4 LDM-style conv encoder, LayerNorm latent, flow matching with
sigma_min = 1e-5 and t ~ U[0, 1], a consistency-decoder-style UNet conditioned by concatenating
the nearest-upsampled latent, Euler decoding from t = 1. Widths are reduced to fit a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.builder import AutoencoderConfig, ComponentConfig
from core.training.cli import Recipe, run_recipe
from core.training.config import DataConfig, EMAConfig, ExperimentConfig, OptimConfig, TrainerConfig
from core.training.run import TrainResult, to_experiment_config

EVAL_STEPS = (1, 10, 50)


def build_config() -> ExperimentConfig:
    """The quickstart experiment."""
    return ExperimentConfig(
        name="quickstart",
        seed=0,
        output_dir="outputs/quickstart",
        model=AutoencoderConfig(
            modality="image",
            spatial_dims=2,
            in_channels=3,
            latent_channels=4,
            encoder=ComponentConfig(
                "conv_encoder", {"base_channels": 16, "channels_mult": [1, 2, 4, 4], "num_res_blocks": 1, "num_groups": 8}
            ),
            decoder=ComponentConfig(
                "unet_decoder",
                {"stage_channels": [16, 32, 64, 64], "down_blocks": 1, "mid_blocks": 1, "up_blocks": 2,
                 "pe_dim": 64, "t_dim": 256, "num_groups": 8},
            ),
            regularizer=ComponentConfig("layernorm"),
            sigma_min=1e-5,
            time_sampler=ComponentConfig("uniform"),
            sample_steps=50,
            sample_grid="uniform",
        ),
        data=DataConfig(
            demo=True, size=32, batch_size=16, num_workers=0,
            options={"resize": 96, "eval_size": 96, "eval_resize": 96, "samples_per_epoch": 256, "cache": True},
        ),
        optim=OptimConfig(name="adamw", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01, grad_clip=1.0),
        ema=EMAConfig(enabled=False),
        trainer=TrainerConfig(
            max_steps=600, accelerator="cpu", devices=1, log_every_n_steps=10,
            checkpoint_every_n_steps=200, preview_every_n_steps=200, preview_count=2, preview_steps=10,
            eval_every_n_steps=100, eval_steps=[1, 10],
        ),
    )


def write_report(cfg: Any, result: TrainResult) -> dict[str, Any]:
    """Evaluate held-out photographs and write ``reconstructions.png``, ``loss.png``, ``metrics.json``."""
    from core.pretrained import from_pretrained
    from modalities.image.evaluate import evaluate_reconstructions
    from recipes.report import plot_loss_curve, run_loss_logs

    cfg = to_experiment_config(cfg)
    out = Path(cfg.output_dir)
    tokenizer = from_pretrained(result.export_dir, modality="image")
    dataset = result.datamodule.eval_dataset()
    metrics = evaluate_reconstructions(
        tokenizer, dataset, steps=EVAL_STEPS, batch_size=4, seed=cfg.seed, grid_path=out / "reconstructions.png"
    )
    logs = run_loss_logs(out)
    loss_png = plot_loss_curve(logs, out / "loss.png") if logs else None
    report = {
        "experiment": cfg.name,
        "global_step": result.global_step,
        "train_wall_time_s": round(result.wall_time_s, 1),
        "eval_images": [f.stem for f in dataset.files],  # files or shard members
        "eval_resolution": cfg.data.options.get("eval_size", cfg.data.size),
        "reconstruction": metrics,
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    print(f"\nquickstart finished in {result.wall_time_s:.0f}s of training ({result.global_step} steps)")
    for n in EVAL_STEPS:
        m = metrics[f"steps_{n}"]
        print(f"  held-out PSNR {m['psnr_mean_per_image']:.2f} dB, SSIM {m['ssim']:.3f} with {n} Euler step(s)")
    print(f"  reconstruction grid: {out / 'reconstructions.png'}")
    print(f"  loss plot:           {loss_png}")
    print(f"  metrics:             {out / 'metrics.json'}")
    print(f"  tokenizer export:    {result.export_dir}  (core.from_pretrained)")
    return report


RECIPE = Recipe(name="quickstart", build_config=build_config, after_train=write_report)


def main() -> None:
    run_recipe(RECIPE)


if __name__ == "__main__":
    main()
