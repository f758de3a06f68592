"""Latent DiT-XL/2 on a frozen tokenizer's latents (DiTo §6 recipe); see ``recipes.image.latent_dit_common``.

    python -m recipes.image.latent_dit_xl tokenizer=outputs/dito_xl/export data.root=/data/imagenet/train trainer.devices=8
    python -m recipes.image.latent_dit_xl tokenizer=outputs/dito_xl/export latents=/data/latents/dito_xl
"""

from core.training.cli import run_recipe
from recipes.image.latent_dit_common import latent_dit_recipe

RECIPE = latent_dit_recipe("xl", "latent_dit_xl")

if __name__ == "__main__":
    run_recipe(RECIPE)
