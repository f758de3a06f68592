"""SSDD-M fine-tuning at 256² from the 128² pre-trained model (stage 2); see ``recipes.image.ssdd_common``.

    python -m recipes.image.ssdd_m_finetune_256 data.root=/data/imagenet init.weights=outputs/ssdd_m/export trainer.devices=8
"""

from core.training.cli import run_recipe
from recipes.image.ssdd_common import ssdd_recipe

RECIPE = ssdd_recipe("finetune", "m", "ssdd_m_finetune_256")

if __name__ == "__main__":
    run_recipe(RECIPE)
