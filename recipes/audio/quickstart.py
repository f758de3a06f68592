"""Audio quickstart: train ``audio_tiny`` on the bundled speech clips, on CPU, in a few minutes.

    python -m recipes.audio.quickstart                        # defaults
    python -m recipes.audio.quickstart trainer.max_steps=50   # a smoke run

16 kHz mono, 1.024 s crops (16,384 samples → 64 latent frames of 16 channels), the pure DiTo
objective with noise sync; evaluate the export with ``python -m recipes.audio.evaluate``.
"""

from core.training.cli import Recipe, run_recipe
from core.training.config import ExperimentConfig, with_overrides
from recipes.audio.common import audio_experiment, check_audio_data

QUICKSTART_DELTAS = {
    "data.demo": True,  # speech bundled with installed packages: nothing to download
    "data.num_workers": 0,
    "data.batch_size": 8,
    "optim.lr": 1e-3,  # hundreds of steps, not 200K: a 10x higher rate, held stable by clipping
    "trainer.accelerator": "cpu",
    "trainer.max_steps": 400,
    "trainer.log_every_n_steps": 10,
    "trainer.checkpoint_every_n_steps": 200,
    "trainer.preview_every_n_steps": 200,
    "trainer.preview_count": 2,
    "trainer.preview_steps": 10,
}


def build_config() -> ExperimentConfig:
    """:func:`recipes.audio.common.audio_experiment` for ``tiny`` plus :data:`QUICKSTART_DELTAS`."""
    return with_overrides(audio_experiment("tiny", name="audio_quickstart"), QUICKSTART_DELTAS)


RECIPE = Recipe(name="audio_quickstart", build_config=build_config, check=check_audio_data)

if __name__ == "__main__":
    run_recipe(RECIPE)
