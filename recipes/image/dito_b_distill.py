"""DiTo-B one-step distillation: the student starts from a DiTo-B export and learns the export's own
50-step Euler decodes in one step; see ``recipes.image.dito_distill_common`` and ``core.distill``.

    python -m recipes.image.dito_b_distill data.root=/data/imagenet init.weights=outputs/dito_b/export trainer.devices=8
"""

from core.training.cli import run_recipe
from recipes.image.dito_distill_common import dito_distill_recipe

RECIPE = dito_distill_recipe("b", "dito_b_distill")

if __name__ == "__main__":
    run_recipe(RECIPE)
