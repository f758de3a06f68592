"""``audio_b44k``: the paper-scale music tokenizer (44.1 kHz stereo, hop 2048 → 21.5 Hz, C_z 64 = Oobleck's rate).

65,536-sample crops (1.486 s, about Stable Audio's 1.5 s), bf16 autocast, global batch 64 over
``trainer.devices × trainer.num_nodes`` with DDP; multi-node runs use Lightning's own keys::

    python -m recipes.audio.dito_b44k data.shards='/data/music/train-{000000..000999}.tar' \\
        trainer.devices=8 trainer.num_nodes=4          # under SLURM / torchrun, as for the image recipes
"""

from core.training.cli import Recipe, run_recipe
from core.training.config import ExperimentConfig, with_overrides
from recipes.audio.common import audio_experiment, check_audio_data

B44K_DELTAS = {
    "data.batch_size": 64,
    "trainer.devices": 8,
    "trainer.strategy": "ddp",
    "trainer.precision": "bf16-mixed",  # GPU only; the CPU smoke path overrides it with trainer.precision=32-true
    "trainer.max_steps": 400_000,
}


def build_config() -> ExperimentConfig:
    """:func:`recipes.audio.common.audio_experiment` for ``b44k`` plus :data:`B44K_DELTAS`."""
    return with_overrides(audio_experiment("b44k", name="audio_dito_b44k"), B44K_DELTAS)


RECIPE = Recipe(name="audio_dito_b44k", build_config=build_config, check=check_audio_data)

if __name__ == "__main__":
    run_recipe(RECIPE)
