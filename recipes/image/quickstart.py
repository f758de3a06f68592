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

from core.training.cli import Recipe, run_recipe
from core.training.config import ExperimentConfig, with_overrides
from core.training.skeleton import TrainResult
from recipes.image.cpu_demo import CPU_DEMO_DELTAS, cpu_dito_networks
from recipes.image.dito_common import dito_experiment
from recipes.image.report import write_reconstruction_report

EVAL_STEPS = (1, 10, 50)

# DiTo-B's paper run, changed only where a few CPU minutes demand it
QUICKSTART_DELTAS = {
    **CPU_DEMO_DELTAS,
    # one ResBlock per encoder level and 1/1/2 decoder blocks per stage at 16-64 channels: minutes on a CPU
    **cpu_dito_networks(encoder_res_blocks=1, decoder_channels=(16, 32, 64, 64), blocks=(1, 1, 2)),
    "data.size": 32,  # 32² crops of 96² photographs (a 4x4 latent): small steps for a CPU
    "data.batch_size": 16,
    "data.options": {"resize": 96, "eval_size": 96, "eval_resize": 96, "samples_per_epoch": 256, "cache": True},
    "optim.lr": 1e-3,  # 600 steps, not 300K: a 10x higher rate, held stable by clipping
    "optim.grad_clip": 1.0,
    "trainer.max_steps": 600,  # about 4 minutes on 2 CPU cores
    "trainer.checkpoint_every_n_steps": 200,
    "trainer.preview_every_n_steps": 200,
    "trainer.preview_steps": 10,  # 10 Euler steps keep previews cheap
    "trainer.eval_every_n_steps": 100,  # a held-out PSNR/SSIM curve with six points
    "trainer.eval_steps": [1, 10],
}


def build_config() -> ExperimentConfig:
    """The quickstart experiment: :func:`dito_experiment` (DiTo-B) plus :data:`QUICKSTART_DELTAS`."""
    return with_overrides(dito_experiment("b", name="quickstart"), QUICKSTART_DELTAS)


def write_report(cfg: Any, result: TrainResult) -> dict[str, Any]:
    """Evaluate held-out photographs and write ``reconstructions.png``, ``loss.png``, ``metrics.json``."""
    return write_reconstruction_report(cfg, result, steps=EVAL_STEPS)


RECIPE = Recipe(name="quickstart", build_config=build_config, after_train=write_report)


def main() -> None:
    run_recipe(RECIPE)


if __name__ == "__main__":
    main()
