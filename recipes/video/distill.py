"""One-step distillation of a video DiTo (core.distill, SSDD-style): the student starts from the
teacher export and learns its 12-step samples in one step; the encoder stays frozen.

    python -m recipes.video.distill distill.teacher=outputs/video_dito_s/export data.demo=true
    python -m recipes.video.distill distill.teacher=<b export> model.decoder.name=video_dito_b \\
        model.encoder.kwargs.size=b data.size=256 data.shards=... trainer.devices=8

Defaults are the ``s`` size (change ``model.*`` to match the teacher: the student must have its
architecture).
"""

from core.training.cli import run_recipe
from recipes.video.common import video_experiment, video_recipe, with_distillation

STEPS = 5_000


def build_config():
    """``video_dito_s``'s experiment turned into a distillation run."""
    cfg = video_experiment("s", name="video_distill", resolution=64, batch_size=8, steps=STEPS, cadence=1_000)
    return with_distillation(cfg, teacher_steps=12)


RECIPE = video_recipe("video_distill", build_config)

if __name__ == "__main__":
    run_recipe(RECIPE)
