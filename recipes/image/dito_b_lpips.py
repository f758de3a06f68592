"""DiTo-B (+LPIPS): LPIPS(x_t + t·u, x) with weight 0.5 added to the flow loss (paper App. E).

Needs the VGG16 weights of the ``lpips`` loss term (``DIFFTOK_VGG16_WEIGHTS`` or
``model.loss_terms.lpips.kwargs.vgg_weights=PATH``).

    python -m recipes.image.dito_b_lpips data.root=/data/imagenet trainer.devices=8
"""

from core.training.cli import run_recipe
from recipes.image.dito_common import dito_recipe

RECIPE = dito_recipe("b", "dito_b_lpips", lpips=True)

if __name__ == "__main__":
    run_recipe(RECIPE)
