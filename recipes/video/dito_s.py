"""Video DiTo-S (1.9M encoder, 8.8M decoder) on 17×64² clips: the CPU evidence size.

    python -m recipes.video.dito_s data.demo=true trainer.max_steps=2000
    python -m recipes.video.dito_s data.root=/data/videos trainer.accelerator=gpu
"""

from core.training.cli import run_recipe
from recipes.video.common import size_recipe

RECIPE = size_recipe("s", "video_dito_s", resolution=64, batch_size=8, steps=20_000, cadence=2_000)

if __name__ == "__main__":
    run_recipe(RECIPE)
