"""DiTo-B tokenizer (162.8M decoder + 34.1M encoder), paper recipe; see ``recipes.image.dito_common``.

    python -m recipes.image.dito_b data.root=/data/imagenet trainer.devices=8
"""

from core.training.cli import run_recipe
from recipes.image.dito_common import dito_recipe

RECIPE = dito_recipe("b", "dito_b")

if __name__ == "__main__":
    run_recipe(RECIPE)
