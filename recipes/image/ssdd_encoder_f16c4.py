"""SSDD stage 0: the KL f16c4 encoder trained jointly with an M decoder at 128² (then frozen and shared by
every decoder size); see ``recipes.image.ssdd_common``.

    python -m recipes.image.ssdd_encoder_f16c4 data.root=/data/imagenet trainer.devices=8
"""

from core.training.cli import run_recipe
from recipes.image.ssdd_common import ssdd_recipe

RECIPE = ssdd_recipe("encoder", "m", "ssdd_encoder_f16c4", encoder="f16c4")

if __name__ == "__main__":
    run_recipe(RECIPE)
