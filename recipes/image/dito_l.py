"""DiTo-L tokenizer (338.5M decoder + 34.1M encoder), paper recipe; see ``recipes.image.dito_common``.

    python -m recipes.image.dito_l data.root=/data/imagenet trainer.devices=8 trainer.num_nodes=2
"""

from core.training.cli import run_recipe
from recipes.image.dito_common import dito_recipe

RECIPE = dito_recipe("l", "dito_l")

if __name__ == "__main__":
    run_recipe(RECIPE)
