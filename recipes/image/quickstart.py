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

from typing import Any

from core.autoencoder import SamplingConfig
from core.builder import AutoencoderConfig, ComponentConfig
from core.training.cli import Recipe, run_recipe
from core.training.config import DataConfig, EMAConfig, ExperimentConfig, OptimConfig, TrainerConfig
from core.training.run import TrainResult

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
            sampling=SamplingConfig(num_steps=50, grid="uniform"),
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
    from recipes.image.report import write_reconstruction_report

    return write_reconstruction_report(cfg, result, steps=EVAL_STEPS)


RECIPE = Recipe(name="quickstart", build_config=build_config, after_train=write_report)


def main() -> None:
    run_recipe(RECIPE)


if __name__ == "__main__":
    main()
