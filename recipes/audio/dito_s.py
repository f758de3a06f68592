"""``audio_s`` speech tokenizer (16 kHz mono, hop 256 → 62.5 Hz, C_z 16), pure DiTo objective with noise sync.

    python -m recipes.audio.dito_s data.root=/data/speech trainer.devices=4
    python -m recipes.audio.dito_s data.shards='/data/speech/train-{000000..000099}.tar'
    # SSDD-analogue variant: add the spectral terms on x̂0
    python -m recipes.audio.dito_s data.root=/data/speech model.loss_terms.mrstft.weight=1 model.loss_terms.mel_l1.weight=1
"""

from core.training.cli import run_recipe
from recipes.audio.common import audio_recipe

RECIPE = audio_recipe("s", "audio_dito_s")

if __name__ == "__main__":
    run_recipe(RECIPE)
