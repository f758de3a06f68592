"""SSDD-XL decoder pre-training at 128² on the shared frozen f8c4 encoder (stage 1); see
``recipes.image.ssdd_common``.

    python -m recipes.image.ssdd_xl data.root=/data/imagenet init.encoder_weights=outputs/ssdd_encoder_f8c4/export trainer.devices=8
"""

from core.training.cli import run_recipe
from recipes.image.ssdd_common import ssdd_recipe

RECIPE = ssdd_recipe("pretrain", "xl", "ssdd_xl")

if __name__ == "__main__":
    run_recipe(RECIPE)
