"""Audio recipes compose with Hydra overrides, build their models and refuse to start without data."""

from __future__ import annotations

import pytest
import torch

from core.builder import build_autoencoder
from core.training.cli import compose_recipe
from core.training.run import to_experiment_config
from recipes.audio import dito_b44k, dito_s, distill, quickstart
from recipes.audio.common import AudioDataMissingError, check_audio_data
from tests.test_audio_models import _train_one_step

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPES = {"audio_quickstart": quickstart, "audio_dito_s": dito_s, "audio_dito_b44k": dito_b44k, "audio_distill": distill}


@pytest.mark.parametrize("name", RECIPES)
def test_audio_recipe_composes_and_builds(name, tmp_path):
    cfg = compose_recipe(RECIPES[name].RECIPE, [f"output_dir={tmp_path}", "trainer.max_steps=3"])
    exp = to_experiment_config(cfg)
    assert exp.model.modality == "audio" and exp.model.spatial_dims == 1 and exp.trainer.max_steps == 3
    options = exp.data.options
    assert set(options) == {"sample_rate", "channels", "crop_seconds", "min_seconds"}
    crop = round(options["crop_seconds"] * options["sample_rate"])
    assert crop == exp.data.size
    with torch.device("meta"):
        model = build_autoencoder(exp.model)
    assert crop % model.shape_rule.factors[0] == 0 and model.in_channels == options["channels"]


def test_recipe_settings():
    quick = to_experiment_config(compose_recipe(quickstart.RECIPE))
    assert quick.data.demo and quick.trainer.accelerator == "cpu" and quick.model.encoder.name == "audio_tiny"
    assert quick.data.options["crop_seconds"] == 1.024 and quick.model.noise_sync.p == 0.1
    big = to_experiment_config(compose_recipe(dito_b44k.RECIPE, ["trainer.num_nodes=4"]))
    assert (big.model.in_channels, big.data.size, big.data.options["sample_rate"]) == (2, 65536, 44100)
    assert big.trainer.precision == "bf16-mixed" and big.trainer.num_nodes == 4 and big.trainer.strategy == "ddp"
    dist = to_experiment_config(compose_recipe(distill.RECIPE, ["distill.teacher=/t"]))
    assert dist.distill.enabled and dist.distill.sampling.teacher_steps == 12 and dist.model.sampling.num_steps == 1
    assert {k: v.weight for k, v in dist.model.loss_terms.items()} == {"mrstft": 1.0, "mel_l1": 1.0}
    spectral = to_experiment_config(compose_recipe(dito_s.RECIPE, ["model.loss_terms.mel_l1.weight=0.5"]))
    with torch.device("meta"):
        assert list(build_autoencoder(spectral.model).loss_terms) == ["mel_l1"]


def test_recipes_refuse_to_start_without_data():
    cfg = compose_recipe(dito_s.RECIPE)
    with pytest.raises(AudioDataMissingError, match="data.root=/path/to/audio"):
        check_audio_data(cfg)
    check_audio_data(compose_recipe(dito_s.RECIPE, ["data.root=/somewhere"]))


def test_quickstart_model_trains_a_step_through_core_on_synthetic_audio():
    torch.manual_seed(0)
    exp = to_experiment_config(compose_recipe(quickstart.RECIPE))
    logged = _train_one_step(build_autoencoder(exp.model))
    assert logged["train/fm"] > 0
