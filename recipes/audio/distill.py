"""One-step distillation of an audio tokenizer (SSDD §4 through ``core.distill``, unchanged).

The student starts from the teacher (its export folder) and learns the teacher's 12-step
power-grid samples in one step, with the ``mrstft`` + ``mel_l1`` terms against the teacher's
sample; ``decode(z, num_steps=1)`` is then the one-step decoder::

    python -m recipes.audio.distill data.root=/data/speech distill.teacher=outputs/audio_dito_s/export
"""

from core.training.cli import Recipe, run_recipe
from core.training.config import ExperimentConfig, with_overrides
from recipes.audio.common import SPECTRAL_WEIGHTS, audio_experiment, check_audio_data

DISTILL_DELTAS = {
    "distill.enabled": True,
    "distill.sampling.teacher_steps": 12,
    "distill.sampling.grid": "power",
    "model.sampling.num_steps": 1,
    "model.noise_sync.p": 0.0,  # distillation trains at t = 1 only
    "trainer.max_steps": 20_000,
}


def build_config() -> ExperimentConfig:
    """``audio_s`` with the spectral terms, plus :data:`DISTILL_DELTAS`; ``distill.teacher`` is required."""
    base = audio_experiment("s", name="audio_distill", spectral=True)
    assert set(base.model.loss_terms) == set(SPECTRAL_WEIGHTS)
    return with_overrides(base, DISTILL_DELTAS)


RECIPE = Recipe(name="audio_distill", build_config=build_config, check=check_audio_data)

if __name__ == "__main__":
    run_recipe(RECIPE)
