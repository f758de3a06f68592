"""CPU evidence run for SSDD: a reduced SSDD (KL f8 conv encoder, U-ViT decoder with the paper's
4-level layout and windowed-attention middle, only narrower and shallower) trained briefly on the
photographs bundled with scikit-image with the paper's objective and optimiser, then distilled
into a single-step decoder.

    python -m recipes.image.ssdd_cpu_evidence                                        # teacher
    python -m recipes.image.ssdd_cpu_evidence name=ssdd_cpu_evidence_distill \\
        distill.enabled=true distill.teacher=outputs/ssdd_cpu_evidence/export \\
        model.sampling.num_steps=1 trainer.max_steps=100 optim.lr=1e-4               # 1-step student

The LPIPS and REPA terms are off here: without the real VGG16 / DINOv2 weights (not downloadable
on this machine) they would only add noise. Everything else follows ssdd.md §3–§6: σmin = 0,
logit-normal t, KL weight 1e-6, schedule-free RAdam (lr 8e-4, wd 1e-2, no decay on biases, clip
0.1), EMA 0.999 with warm-up (the export holds the EMA weights), power-2 Euler grid.
"""

from __future__ import annotations

from typing import Any

from core.builder import ComponentConfig
from core.training.cli import Recipe, run_recipe
from core.training.config import DataConfig, DistillConfig, EMAConfig, ExperimentConfig, OptimConfig, TrainerConfig
from core.training.run import TrainResult
from modalities.image.ssdd.config import ssdd_config

EVAL_STEPS = (1, 8)
REDUCED_DECODER = {"channels": 16, "channels_mult": [1, 2, 3, 3], "num_layers": 4, "heads": 2, "num_groups": 8}
REDUCED_ENCODER = {"base_channels": 16, "channels_mult": [1, 2, 4, 4], "num_res_blocks": 1, "num_groups": 8}


def build_config() -> ExperimentConfig:
    """Reduced SSDD on 64² crops of the bundled photographs (held out: chelsea, coffee at 128²)."""
    model = ssdd_config("tiny", lpips_weight=0.0, repa_weight=0.0, decoder_kwargs=dict(REDUCED_DECODER), sample_steps=8)
    model.encoder = ComponentConfig("conv_encoder", dict(REDUCED_ENCODER))
    return ExperimentConfig(
        name="ssdd_cpu_evidence",
        seed=0,
        output_dir="outputs/${name}",
        model=model,
        data=DataConfig(
            demo=True, size=64, batch_size=8, num_workers=0,
            options={"resize": 96, "resize_max": 128, "eval_size": 128, "eval_resize": 128, "samples_per_epoch": 512, "cache": True},
        ),
        optim=OptimConfig(name="radam_schedulefree", lr=8e-4, weight_decay=1e-2, no_decay_patterns=["*bias*"], grad_clip=0.1),
        ema=EMAConfig(enabled=True, decay=0.999, start_step=0, warmup=True),
        distill=DistillConfig(enabled=False, teacher_steps=12, grid="power", power=2.0),
        trainer=TrainerConfig(
            max_steps=400, accelerator="cpu", devices=1, log_every_n_steps=10,
            checkpoint_every_n_steps=100, preview_every_n_steps=400, preview_count=2, preview_steps=8,
            eval_every_n_steps=100, eval_steps=[1, 8],
        ),
    )


def write_report(cfg: Any, result: TrainResult) -> dict[str, Any]:
    """Held-out PSNR/SSIM with 1 and 8 Euler steps (power-2 grid), loss plot, metrics JSON."""
    from recipes.image.report import write_reconstruction_report

    return write_reconstruction_report(cfg, result, steps=EVAL_STEPS)


RECIPE = Recipe(name="ssdd_cpu_evidence", build_config=build_config, after_train=write_report)


def main() -> None:
    run_recipe(RECIPE)


if __name__ == "__main__":
    main()
