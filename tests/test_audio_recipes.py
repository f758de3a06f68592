"""Audio recipes compose with Hydra overrides, build their models, refuse to start without data, and train end to end
on the bundled speech through the real data path (one CPU step per variant: plain, noise sync, mrstft + mel, distill)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.builder import build_autoencoder
from core.data.options import parse_options
from core.training.cli import compose_recipe, run_recipe
from core.training.run import to_experiment_config, train
from modalities.audio.data import AudioDataOptions
from recipes.audio import dito_b44k, dito_s, distill, quickstart
from recipes.audio.common import AudioDataMissingError, check_audio_data
from recipes.audio.cpu_evidence import markdown_table
from tests.test_audio_models import _train_one_step

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPES = {"audio_quickstart": quickstart, "audio_dito_s": dito_s, "audio_dito_b44k": dito_b44k, "audio_distill": distill}


@pytest.mark.parametrize("name", RECIPES)
def test_audio_recipe_composes_and_builds(name, tmp_path):
    cfg = compose_recipe(RECIPES[name].RECIPE, [f"output_dir={tmp_path}", "trainer.max_steps=3"])
    exp = to_experiment_config(cfg)
    assert exp.model.modality == "audio" and exp.model.spatial_dims == 1 and exp.trainer.max_steps == 3
    options = parse_options(AudioDataOptions, exp.data.options)  # the data path's own parser: every key is known
    crop = options.crop_length(options.crop_seconds)
    assert crop == exp.data.size == round(options.min_length_seconds() * options.sample_rate)
    with torch.device("meta"):
        model = build_autoencoder(exp.model)
    assert options.hop == model.shape_rule.factors[0] and crop % options.hop == 0 and model.in_channels == options.channels


def test_recipe_settings():
    quick = to_experiment_config(compose_recipe(quickstart.RECIPE))
    assert quick.data.demo and quick.trainer.accelerator == "cpu" and quick.model.encoder.name == "audio_tiny"
    assert quick.data.options["crop_seconds"] == 1.024 and quick.model.noise_sync.p == 0.1
    big = to_experiment_config(compose_recipe(dito_b44k.RECIPE, ["trainer.num_nodes=4"]))
    assert (big.model.in_channels, big.data.size, big.data.options["sample_rate"], big.data.options["hop"]) == (2, 65536, 44100, 2048)
    assert parse_options(AudioDataOptions, big.data.options).crop_length(big.data.options["crop_seconds"]) == 65536
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


def test_s50hz_options_use_its_hop():
    from recipes.audio.common import audio_data_options

    options = parse_options(AudioDataOptions, audio_data_options("s50hz"))
    assert options.hop == 320 and options.crop_length(options.crop_seconds) == 16000


# the real data path at a CPU-test size: the bundled speech, 0.256 s crops (16 latent frames of audio_tiny)
TINY_RUN = ["data.demo=true", "data.options.crop_seconds=0.256", "data.options.min_seconds=0.256", "data.batch_size=2",
            "data.num_workers=0", "trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.max_steps=1",
            "trainer.progress_bar=false", "trainer.log_every_n_steps=1", "trainer.checkpoint_every_n_steps=10",
            "trainer.preview_every_n_steps=0"]
VARIANTS = {  # (recipe, overrides, a logged key only this variant has, noise sync on)
    "plain": (quickstart, ["model.noise_sync.p=0"], "train/fm", False),
    "noise_sync": (quickstart, [], "train/fm", True),
    "mrstft_mel": (quickstart, ["model.loss_terms.mrstft.weight=1", "model.loss_terms.mel_l1.weight=1"], "train/mel_l1", True),
}


def _logged_keys(result) -> list[str]:
    return Path(result.metrics_csv).read_text().splitlines()[0].split(",")


def _train_recipe(recipe, tmp_path: Path, demo: Path, overrides: list[str]):
    cfg = compose_recipe(recipe.RECIPE, [*TINY_RUN, f"data.root={demo}", f"output_dir={tmp_path}", *overrides])
    recipe.RECIPE.check(cfg)
    return train(cfg)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("audio_demo")


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, demo):
    torch.manual_seed(0)
    recipe, overrides, _, _ = VARIANTS["plain"]
    return _train_recipe(recipe, tmp_path_factory.mktemp("plain"), demo, overrides)


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_cpu_train_step_per_variant_on_bundled_speech(variant, plain_run, demo, tmp_path):
    recipe, overrides, key, synced = VARIANTS[variant]
    torch.manual_seed(0)
    result = plain_run if variant == "plain" else _train_recipe(recipe, tmp_path, demo, overrides)
    assert result.global_step == 1 and (result.export_dir / "model.safetensors").is_file()
    assert (result.module.autoencoder.noise_sync is not None) == synced
    assert key in _logged_keys(result) and ("train/mrstft" in _logged_keys(result)) == (variant == "mrstft_mel")
    datamodule = result.module.trainer.datamodule
    assert sum(datamodule.skip_counts.values()) == 0  # the bundled speech decodes and is long enough


def test_distill_recipe_trains_a_one_step_student_from_a_trained_teacher(plain_run, demo, tmp_path):
    from core.pretrained import from_pretrained

    torch.manual_seed(0)
    overrides = ["model.encoder.name=audio_tiny", "model.decoder.name=audio_tiny", f"distill.teacher={plain_run.export_dir}",
                 "distill.sampling.teacher_steps=2"]
    result = _train_recipe(distill, tmp_path, demo, overrides)
    assert result.global_step == 1 and result.module.teacher is not None
    assert {"train/mrstft", "train/mel_l1"} <= set(_logged_keys(result))
    student = from_pretrained(result.export_dir, modality="audio")
    teacher = from_pretrained(plain_run.export_dir, modality="audio")
    changed = [k for k, v in student.decoder.state_dict().items() if not torch.equal(v, teacher.decoder.state_dict()[k])]
    assert changed and student.sampling.num_steps == 1  # started from the teacher, moved, decodes in one step


def test_quickstart_command_smoke(demo, tmp_path):
    run_recipe(quickstart.RECIPE, [*TINY_RUN, "trainer.max_steps=2", "trainer.preview_every_n_steps=2", f"data.root={demo}",
                                   f"output_dir={tmp_path / 'run'}", "hydra/job_logging=none", "hydra/hydra_logging=none"])
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
    previews = sorted((tmp_path / "run" / "previews").glob("*.png"))
    assert previews and list(previews[-1].parent.glob(f"{previews[-1].stem}_0_1.wav"))


def test_cpu_evidence_run_scores_the_held_out_clip_over_training_and_a_student(tmp_path):
    from recipes.audio.cpu_evidence import main

    torch.manual_seed(0)
    evidence = main([f"out={tmp_path}", "steps=2", "eval_every=1", "batch_size=2", "seconds=0.256", "steps_during=[1]",
                     "steps_final=[1,2]", "distill_steps=1", "teacher_steps=2"])
    assert list(evidence["scores"]) == ["0", "1", "2"] and list(evidence["scores"]["2"]["metrics"]) == ["steps_1", "steps_2"]
    for score in evidence["scores"].values():
        assert "data.root=" in score["command"] and str(tmp_path / "demo" / "val") in score["command"]  # held out only
        assert "hop=16 " in score["command"]  # the default size's hop (tiny_hop16), not tiny's 256
        assert all(isinstance(score["metrics"]["steps_1"][m], float) for m in ("si_sdr", "mel_distance", "pesq_wb"))
    assert evidence["teacher"]["global_step"] == 2 and evidence["student"]["global_step"] == 1
    assert list(evidence["student"]["metrics"]) == ["steps_1"] and "evaluate" in evidence["student"]["score"]["command"]
    for model in ("untrained", "teacher/export", "student/export"):  # one architecture throughout: the size's
        config = json.loads((tmp_path / model / "config.json").read_text())
        assert config["autoencoder"]["encoder"]["name"] == config["autoencoder"]["decoder"]["name"] == "audio_tiny_hop16", model
        assert config["latent"]["channels"] == 4 and config["latent"]["downsample_factor"] == 16, model
    saved = json.loads((tmp_path / "evidence.json").read_text())
    assert saved["scores"].keys() == evidence["scores"].keys() and "| 1-step student | +1 distill | 1 |" in markdown_table(saved)
