"""DiTo-XL with noise synchronization (p = 0.1; official dito-XL-f8c4-noise-sync), for latent generation.

    python -m recipes.image.dito_xl_noise_sync data.root=/data/imagenet trainer.devices=8 trainer.num_nodes=4
"""

from core.training.cli import run_recipe
from recipes.image.dito_common import dito_recipe

RECIPE = dito_recipe("xl", "dito_xl_noise_sync", noise_sync=True)

if __name__ == "__main__":
    run_recipe(RECIPE)
