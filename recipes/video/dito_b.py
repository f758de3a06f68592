"""Video DiTo-B at paper scale on GPUs: 17×256² clips, 4×8×8×16 latents, 197.1M-parameter decoder.

    python -m recipes.video.dito_b data.shards='/data/clips/train-{000000..000999}.tar' \\
        trainer.devices=8 trainer.num_nodes=4 trainer.strategy=ddp

Global batch 32 clips (split over ``trainer.devices × trainer.num_nodes``; it must divide evenly),
bf16 autocast with fp32 losses (``trainer.precision=bf16-mixed``), DDP, AdamW 1e-4, 300K steps,
checkpoints and previews every 50K steps. Start from an image DiTo-B export with
``init.weights=<export>`` (inflation) and keep image quality with ``data.options.image_ratio=0.25``.
See docs/video.md ("Training at scale").
"""

from core.training.cli import run_recipe
from core.training.config import ExperimentConfig
from recipes.video.common import video_experiment, video_recipe

GLOBAL_BATCH = 32  # clips of 17 frames: about 8.5x the pixels of DiTo-B's 64 images per batch


def build_config() -> ExperimentConfig:
    """The paper-scale config (bf16 + DDP set explicitly: this recipe is meant for GPUs)."""
    cfg = video_experiment("b", name="video_dito_b", resolution=256, batch_size=GLOBAL_BATCH)
    cfg.trainer.precision = "bf16-mixed"
    cfg.trainer.strategy = "ddp"
    return cfg


RECIPE = video_recipe("video_dito_b", build_config)

if __name__ == "__main__":
    run_recipe(RECIPE)
