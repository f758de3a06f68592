"""Quickstart: train a small DiTo-style image tokenizer on the bundled photographs, on CPU, then
write a reconstruction grid, a loss plot and a metrics JSON (PSNR, SSIM, sharpness and rFID on
held-out photographs).

    python -m recipes.image.quickstart                       # defaults (700 steps; timings in docs/quickstart.md)
    python -m recipes.image.quickstart trainer.max_steps=50  # a smoke run

DiTo-style means: LDM-style conv encoder, LayerNorm latent, flow matching with
sigma_min = 1e-5, a consistency-decoder-style UNet conditioned by concatenating the
nearest-upsampled latent, Euler decoding from t = 1 on a uniform grid.

Deviations from the DiTo-B paper recipe (each chosen by a measured probe, run at 400 steps unless
stated; see docs/quickstart.md):

- widths and depths cut to fit a CPU (encoder base 16, 1 ResBlock per level; decoder stages
  16-32-64-64 with 1/1/2 blocks; DiTo-B: 128 and 3/2/4);
- compression f4c4 (one encoder level fewer; DiTo: f8c4): 1-step PSNR on the held-out crops at
  400 steps 16.6 dB (f8c4) / 16.2 (f8c16) / 17.7 (f4c8) / 19.1 (f4c4);
- training times t ~ logit-normal(0.5, 1) (SSDD's family, shifted towards t = 1 where every decode
  starts; DiTo: uniform): +2.3 dB at 10 steps over uniform t, and the 10- and 50-step decodes score
  above the 1-step one (mean −0.5 / 0 / 1 / 1.5 were measured too);
- data: the bundled photographs (:mod:`modalities.image.demo`) at a shorter side of
  :data:`RESIZE` px, random 32² training crops (DiTo: ImageNet, 256² crops);
- optimiser: AdamW at lr 3e-3 (DiTo: 1e-4), global-norm clip 1.0 (DiTo: none), and the rate
  annealed linearly to zero over the last half of the run (:class:`recipes.lr_decay.LinearDecayToZero`;
  DiTo: constant), because a few hundred steps end while the weights still take large steps;
- batch 16 and :data:`STEPS` steps (DiTo: 64 and 300K): the most that fits the 3-minute budget with
  room for a slower machine (400 / 700 / 800 / 1600 steps: 20.8 / 23.1 / 23.3 / 25.1 dB at 1 step on
  the held-out crops);
- evaluation on every 32² tile of the three held-out photographs at the training scale
  (:data:`REPORT_CROPS`, 64 crops: enough for an rFID) besides the 96² center crops of the grid.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from core.builder import ComponentConfig
from core.training.cli import Recipe, run_recipe
from core.training.config import ExperimentConfig, with_overrides
from core.training.skeleton import TrainResult
from recipes.image.cpu_demo import CPU_DEMO_DELTAS, cpu_dito_networks
from recipes.image.dito_common import dito_experiment
from recipes.image.report import CropSet, write_reconstruction_report
from recipes.lr_decay import train_with_decay

__all__ = ["QUICKSTART_DELTAS", "REPORT_CROPS", "LR_DECAY_FRACTION", "build_config", "write_report", "RECIPE"]

EVAL_STEPS = (1, 10, 50)
RESIZE = 128  # shorter side of every photograph, training and evaluation alike
STEPS = 700  # 2 idle cores: training 91 s (0.13 s/step), the whole command 124 s (2026-12-04); docs/quickstart.md has the frontier 400-1600
LR_DECAY_FRACTION = 0.5  # the rate falls linearly to zero over the last half of the run
REPORT_CROPS = CropSet(size=32)  # every 32² tile of the held-out photographs at RESIZE: 64 crops

# DiTo-B's paper run, changed only where a few CPU minutes demand it (see the module docstring)
QUICKSTART_DELTAS = {
    **CPU_DEMO_DELTAS,
    **cpu_dito_networks(encoder_res_blocks=1, decoder_channels=(16, 32, 64, 64), blocks=(1, 1, 2), downsample=4),
    "model.time_sampler": ComponentConfig("logit_normal", {"mean": 0.5, "std": 1.0}),  # leans to high t (probes: mean −0.5 / 0 / 0.5 / 1 / 1.5)
    "data.size": 32,  # 32² training crops (a 4x4 latent): small steps for a CPU
    "data.batch_size": 16,
    "data.options": {"resize": RESIZE, "eval_size": 96, "eval_resize": RESIZE, "samples_per_epoch": 256, "cache": True},
    "optim.lr": 3e-3,
    "optim.grad_clip": 1.0,
    "trainer.max_steps": STEPS,
    "trainer.checkpoint_every_n_steps": STEPS,
    "trainer.preview_every_n_steps": STEPS,
    "trainer.preview_steps": 10,  # 10 Euler steps keep previews cheap
    "trainer.eval_every_n_steps": STEPS // 2,  # two points of a held-out PSNR/SSIM curve, cheap enough for the budget
    "trainer.eval_steps": [1, 10],
}


def build_config() -> ExperimentConfig:
    """The quickstart experiment: :func:`dito_experiment` (DiTo-B) plus :data:`QUICKSTART_DELTAS`."""
    return with_overrides(dito_experiment("b", name="quickstart"), QUICKSTART_DELTAS)


def write_report(cfg: Any, result: TrainResult) -> dict[str, Any]:
    """Score the held-out photographs and their :data:`REPORT_CROPS` tiles with 1/10/50 Euler steps;
    write ``reconstructions.png``, ``loss.png``, ``metrics.json``."""
    return write_reconstruction_report(cfg, result, steps=EVAL_STEPS, crops=REPORT_CROPS)


RECIPE = Recipe(name="quickstart", build_config=build_config, after_train=write_report,
                train_fn=partial(train_with_decay, decay_fraction=LR_DECAY_FRACTION))


def main() -> None:
    run_recipe(RECIPE)


if __name__ == "__main__":
    main()
