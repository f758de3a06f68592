"""CPU evidence run for SSDD: a reduced SSDD (KL f8 conv encoder, U-ViT decoder with the paper's
4-level layout and windowed-attention middle, only narrower and shallower) trained briefly on the
bundled photographs with the paper's objective, then distilled into a single-step decoder whose
teacher is the run's own 8-step decode.

    python -m recipes.image.ssdd_cpu_evidence                                        # teacher
    python -m recipes.image.ssdd_cpu_evidence name=ssdd_cpu_evidence_distill \\
        distill.enabled=true distill.teacher=outputs/ssdd_cpu_evidence/export \\
        model.sampling.num_steps=1 ema.decay=0.99 \\
        trainer.max_steps=200 trainer.eval_every_n_steps=50 optim.lr=5e-4              # 1-step student

Both reports score the same 64 held-out 64² crops (every tile of the three held-out photographs at
a shorter side of 256) with the same seeded noise: PSNR, SSIM, sharpness and rFID (bundled
Inception) of the teacher's 1- and 8-step decodes and of the student's 1-step decode.

Follows ssdd.md §3–§6 (σmin = 0, logit-normal t, KL weight 1e-6, EMA 0.999 with the (1+n)/(10+n)
warm-up (the export holds the EMA weights), power-2 Euler grid, weight decay 1e-2 with none on
biases, shorter side drawn in [s, 2s] before the crop) except:

- the LPIPS and REPA terms are off: without the real VGG16 / DINOv2 weights (not downloadable on
  this machine) they would only add noise;
- latent f8c16 (paper: f8c4): the same 1,024 latent numbers per 64² crop as the DiTo evidence's
  f4c4 (the U-ViT decoder needs a factor of at least 8); the encoder is at 1/8 width;
- optimiser AdamW lr 2e-3, clip 1.0, the rate annealed linearly to zero over the last half of the run
  (:class:`recipes.lr_decay.LinearDecayToZero`, the distillation run too; paper: schedule-free RAdam,
  lr 8e-4 for decoder pre-training, clip 0.1). In probes at f8c16 (``docs/benchmarks.md``; held-out
  8-step PSNR at step 100) schedule-free RAdam reached 7.9 dB (lr 8e-4) and 9.2 dB (4e-3), AdamW
  11.8 dB (1e-3) and 13.0 dB (2e-3): the schedule-free average lags its iterates for longer than this
  run; 2,400 steps with the decay score 1.0–1.1 dB above a constant-rate 1,800-step run on the held-out
  tiles, 3,600 steps another 2.4 dB (20 minutes in all on two idle cores);
- EMA from step 0 (paper: 50K), batch 8 of 64² crops (paper: 256 of 128²), s = 128, 3,600 steps;
- distillation: 8 teacher steps (the teacher's own default decode; paper: 12), lr 5e-4
  (paper: 1e-4) for 200 steps, EMA 0.99.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from core.builder import ComponentConfig
from core.distill import DistillationConfig
from core.training.cli import Recipe, run_recipe
from core.training.config import ExperimentConfig, with_overrides
from core.training.skeleton import TrainResult
from recipes.image.cpu_demo import CPU_DEMO_DELTAS
from recipes.image.report import CropSet, write_reconstruction_report
from recipes.image.ssdd_common import ssdd_experiment
from recipes.lr_decay import train_with_decay

EVAL_STEPS = (1, 8)
REPORT_CROPS = CropSet(size=64)  # every 64² tile of the held-out photographs at eval_resize 256: 64 crops
REDUCED_DECODER = {"channels": 16, "channels_mult": [1, 2, 3, 3], "num_layers": 4, "heads": 2, "num_groups": 8}
REDUCED_ENCODER = {"base_channels": 16, "channels_mult": [1, 2, 4, 4], "num_res_blocks": 1, "num_groups": 8}

MAX_STEPS = 3600  # 1,197 s of training at two threads; held-out tiles 24.5–24.6 dB (docs/benchmarks.md)
LR_DECAY_FRACTION = 0.5  # the rate falls linearly to zero over the last half of the run

# SSDD's stage 0 (encoder and decoder trained jointly, the paper's objective), reduced (see the module docstring)
SSDD_CPU_DELTAS = {
    **CPU_DEMO_DELTAS,
    "output_dir": "outputs/${name}",  # follows name= (e.g. the distilled student in the docstring)
    "model.encoder": ComponentConfig("conv_encoder", dict(REDUCED_ENCODER)),  # the KL f8 encoder at 1/8 width
    "model.decoder": ComponentConfig("ssdd_tiny", dict(REDUCED_DECODER)),  # the U-ViT layout, narrower and shallower
    "model.latent_channels": 16,  # f8c16: the DiTo evidence's 1,024 latent numbers per 64² crop
    "model.loss_terms": {},  # no real VGG16 / DINOv2 weights here: LPIPS and REPA would only add noise
    "data.size": 64,  # 64² crops from a shorter side drawn in [128, 256] (the paper's [s, 2s] rule, scaled)
    "data.batch_size": 8,
    "data.options": {"resize": 128, "resize_max": 256, "eval_size": 128, "eval_resize": 256, "samples_per_epoch": 512, "cache": True},
    "optim.name": "adamw",  # schedule-free's averaged weights lag a run this short (probes in the docstring)
    "optim.lr": 2e-3,
    "optim.grad_clip": 1.0,
    "ema.start_step": 0,  # the EMA must start well inside the run (paper: 50K)
    "trainer.max_steps": MAX_STEPS,
    "trainer.checkpoint_every_n_steps": 100,
    "trainer.preview_every_n_steps": MAX_STEPS,
    "trainer.preview_steps": 8,  # the paper's 8-step decode
    "trainer.eval_every_n_steps": MAX_STEPS // 4,
    "trainer.eval_steps": [1, 8],  # one and eight steps: the gap distillation closes
    # a distill.enabled=true run learns the teacher's own 8-step decode (paper: 12 teacher steps)
    "distill.sampling": DistillationConfig(teacher_steps=8, grid="power", power=2.0),
}


def build_config() -> ExperimentConfig:
    """Reduced SSDD: :func:`ssdd_experiment` (stage 0, SSDD-M) plus :data:`SSDD_CPU_DELTAS`."""
    return with_overrides(ssdd_experiment("encoder", "m", name="ssdd_cpu_evidence"), SSDD_CPU_DELTAS)


def write_report(cfg: Any, result: TrainResult) -> dict[str, Any]:
    """Held-out PSNR/SSIM/sharpness/rFID with 1 and 8 Euler steps (power-2 grid), loss plot, metrics JSON."""
    return write_reconstruction_report(cfg, result, steps=EVAL_STEPS, crops=REPORT_CROPS)


RECIPE = Recipe(name="ssdd_cpu_evidence", build_config=build_config, after_train=write_report,
                train_fn=partial(train_with_decay, decay_fraction=LR_DECAY_FRACTION))


def main() -> None:
    run_recipe(RECIPE)


if __name__ == "__main__":
    main()
