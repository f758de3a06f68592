"""SSDD-M single-step distillation (stage 3): a student initialised from the teacher learns the
teacher's 12-step samples in one step; see ``recipes.image.ssdd_common`` and ``core.distill``.

    python -m recipes.image.ssdd_m_distill data.root=/data/imagenet distill.teacher=outputs/ssdd_m/export trainer.devices=8
"""

from core.training.cli import run_recipe
from recipes.image.ssdd_common import ssdd_recipe

RECIPE = ssdd_recipe("distill", "m", "ssdd_m_distill")

if __name__ == "__main__":
    run_recipe(RECIPE)
