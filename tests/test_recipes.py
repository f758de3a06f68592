"""Every recipe composes with Hydra overrides and builds; the README quickstart runs end to end."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import recipes
from core.builder import LEGACY_FLAT_KEYS, build_autoencoder
from core.training.cli import Recipe, compose_recipe
from core.training.config import ExperimentConfig
from core.generation.config import build_generator
from core.training.generator_run import to_generator_config, train_generator
from core.training.run import to_experiment_config

ROOT = Path(__file__).resolve().parents[1]


def all_recipes() -> list[Recipe]:
    found = []
    for info in pkgutil.walk_packages(recipes.__path__, prefix="recipes."):
        module = importlib.import_module(info.name)
        if isinstance(getattr(module, "RECIPE", None), Recipe):
            found.append(module.RECIPE)
    return found


RECIPES = all_recipes()


def test_recipes_found():
    assert "quickstart" in [r.name for r in RECIPES]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_recipe_composes_and_instantiates(recipe, tmp_path, monkeypatch):
    overrides = [f"output_dir={tmp_path}", "trainer.max_steps=7", "data.batch_size=8"]
    if recipe.train_fn is train_generator:  # latent-generator recipes: a generator, not a tokenizer
        run = to_generator_config(compose_recipe(recipe, overrides))
        assert run.trainer.max_steps == 7 and run.data.batch_size == 8
        with torch.device("meta"):
            generator = build_generator(run.generator)
        assert generator.net.spatial_dims == run.generator.spatial_dims
        return
    terms = to_experiment_config(compose_recipe(recipe, overrides)).model.loss_terms
    for name, env in (("lpips", "DIFFTOK_VGG16_WEIGHTS"), ("repa", "DIFFTOK_DINOV2_WEIGHTS")):
        if name in terms:  # no VGG / DINOv2 weights are needed to build on meta
            monkeypatch.delenv(env, raising=False)
            overrides.append(f"model.loss_terms.{name}.kwargs.allow_random_weights=true")
    cfg = compose_recipe(recipe, overrides)
    exp = to_experiment_config(cfg)
    assert isinstance(exp, ExperimentConfig) and exp.trainer.max_steps == 7 and exp.data.batch_size == 8
    with torch.device("meta"):
        model = build_autoencoder(exp.model)
    assert model.spatial_dims == exp.model.spatial_dims
    assert OmegaConf.to_yaml(cfg)  # serialisable


def test_bad_override_is_rejected():
    from hydra.errors import ConfigCompositionException

    quick = next(r for r in RECIPES if r.name == "quickstart")
    with pytest.raises(ConfigCompositionException):
        compose_recipe(quick, ["trainer.max_stepz=3"])


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_readme_quickstart_runs_and_writes_outputs(tmp_path):
    out = tmp_path / "qs"
    # 64² evaluation scale: 16 held-out crops, too few for an rFID, which keeps this test fast
    proc = _run(["-m", "recipes.image.quickstart", f"output_dir={out}", "trainer.max_steps=20",
                 "trainer.checkpoint_every_n_steps=10", "trainer.preview_every_n_steps=10", "trainer.progress_bar=false",
                 "trainer.eval_every_n_steps=10", "data.options.eval_resize=64", "data.options.eval_size=64"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("reconstructions.png", "loss.png", "metrics.json", "export/model.safetensors", "export/config.json",
                 "checkpoints/last.ckpt", "previews/step_0000010.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 20 and metrics["eval_images"] == ["chelsea", "coffee", "grace_hopper"]
    crops = metrics["crops"]
    assert (crops["num_crops"], crops["crop_size"], crops["resize"]) == (16, 32, 64)
    assert crops["rfid_note"] == "rFID skipped: 16 crops, fewer than 64"
    for steps in ("steps_1", "steps_10", "steps_50"):
        assert 0 < metrics["reconstruction"][steps]["psnr_mean_per_image"] < 60
        assert 0 < crops[steps]["psnr_mean_per_image"] < 60 and crops[steps]["hf_ratio"] > 0 and "rfid" not in crops[steps]
    assert str(out / "metrics.json") in proc.stdout
    header = next(out.glob("logs/csv/version_*/metrics.csv")).read_text().splitlines()[0]
    assert "eval/psnr_steps1" in header and "train/fm" in header


FROZEN_CONFIGS = ROOT / "tests" / "data" / "recipe_configs"  # OmegaConf.to_yaml of each recipe before it became deltas


def _nest_settings(frozen: dict, stage: str) -> dict:
    """The frozen files predate the nested settings: move the flat teacher settings into ``distill.sampling``
    and the flat model settings into their nodes (``LEGACY_FLAT_KEYS``), and add the recipe's ``stage`` and ``overwrite``."""
    distill = dict(frozen["distill"])
    distill["sampling"] = {k: distill.pop(k) for k in ("teacher_steps", "grid", "power")}
    model = dict(frozen["model"])
    for flat, (node, key) in LEGACY_FLAT_KEYS.items():
        model.setdefault(node, {})[key] = model.pop(flat)
    return {**frozen, "stage": stage, "overwrite": False, "model": model, "distill": distill}


@pytest.mark.parametrize("name, stage", [("quickstart", ""), ("dito_cpu_evidence", ""), ("ssdd_cpu_evidence", "encoder")])
def test_cpu_recipes_as_paper_recipe_plus_deltas_resolve_to_the_frozen_config(name, stage):
    module = importlib.import_module(f"recipes.image.{name}")
    frozen = _nest_settings(OmegaConf.to_container(OmegaConf.load(FROZEN_CONFIGS / f"{name}.yaml")), stage)
    assert OmegaConf.to_container(compose_recipe(module.RECIPE)) == frozen


def test_overrides_name_the_missing_field():
    from core.training.config import with_overrides

    base = ExperimentConfig()
    changed = with_overrides(base, {"optim.lr": 0.5, "data.options": {"cache": True}, "data.options.resize": 64})
    assert (changed.optim.lr, changed.data.options) == (0.5, {"cache": True, "resize": 64})
    assert base.optim.lr == 1e-4 and base.data.options == {}  # the base is not changed
    with pytest.raises(KeyError, match="OptimConfig has no field 'learning_rate'.*lr"):
        with_overrides(base, {"optim.learning_rate": 1e-3})


@pytest.mark.parametrize("module_name", ["recipes.image.quickstart", "recipes.image.ssdd_cpu_evidence"])
def test_cpu_recipe_trains_with_the_learning_rate_decay(monkeypatch, module_name):
    import importlib

    import recipes.lr_decay as lr_decay
    from recipes.lr_decay import LinearDecayToZero

    module = importlib.import_module(module_name)
    seen = {}
    monkeypatch.setattr(lr_decay, "train", lambda cfg, callbacks=None: seen.setdefault("callbacks", callbacks))
    module.RECIPE.train_fn(compose_recipe(module.RECIPE))
    (decay,) = seen["callbacks"]
    assert isinstance(decay, LinearDecayToZero) and decay.decay_fraction == module.LR_DECAY_FRACTION


def test_ssdd_evidence_student_composes_with_the_teachers_8_step_decode(tmp_path):
    from recipes.image.ssdd_cpu_evidence import EVAL_STEPS, RECIPE as SSDD_EVIDENCE

    overrides = ["name=ssdd_cpu_evidence_distill", "distill.enabled=true", f"distill.teacher={tmp_path}/export",
                 "model.sampling.num_steps=1", "trainer.max_steps=100", "optim.lr=3e-4"]  # the docstring's command
    cfg = to_experiment_config(compose_recipe(SSDD_EVIDENCE, overrides))
    assert cfg.output_dir == "outputs/ssdd_cpu_evidence_distill" and cfg.distill.enabled
    teacher = to_experiment_config(compose_recipe(SSDD_EVIDENCE))
    assert (cfg.distill.sampling.teacher_steps, cfg.distill.sampling.grid) == (max(EVAL_STEPS), teacher.model.sampling.grid)
    assert teacher.model.sampling.num_steps == max(EVAL_STEPS) and cfg.model.sampling.num_steps == 1
