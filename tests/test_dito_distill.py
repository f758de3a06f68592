"""One-step DiTo distillation recipes: settings, refusals naming the fix, the objective against the
decode it trains, and one real CPU step through the recipe."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from core.builder import build_autoencoder
from core.distill import distillation_losses, make_student
from core.flow.loss import per_sample_mse
from core.training.cli import compose_recipe
from core.training.run import to_experiment_config, train
from recipes.image.dito_common import DiToDataMissingError
from recipes.image.dito_distill_common import DiToDistillInitError, check_dito_distill
from recipes.report import read_loss_curve
from tests.conftest import tiny_config
from tests.test_dito import SMALL_ENCODER, one_step_overrides

FROZEN_CONFIGS = Path(__file__).parent / "data" / "recipe_configs"


def recipe(name: str):
    return importlib.import_module(f"recipes.image.{name}").RECIPE


@pytest.mark.parametrize("size", ["b", "xl"])
def test_distill_recipe_is_the_dito_run_with_the_distillation_stage(size, tmp_path):
    exp = to_experiment_config(compose_recipe(recipe(f"dito_{size}_distill"), [f"output_dir={tmp_path}", "init.weights=/runs/dito/export"]))
    model, optim, trainer, distill = exp.model, exp.optim, exp.trainer, exp.distill
    assert model.decoder.name == f"dito_{size}" and model.encoder.name == "ldm_f8c4" and model.sigma_min == 1e-5
    assert model.sampling.num_steps == 1 and model.noise_sync.p == 0.0 and not model.loss_terms
    assert exp.stage == "distill" and distill.enabled and not distill.train_encoder
    assert distill.teacher == exp.init.weights == "/runs/dito/export"  # the teacher follows the student's start
    assert (distill.sampling.teacher_steps, distill.sampling.grid) == (50, "uniform")  # DiTo's own decode
    assert (optim.name, optim.lr, optim.weight_decay, exp.data.batch_size, exp.ema.enabled) == ("adamw", 1e-4, 0.01, 64, False)
    assert trainer.max_steps == 20_019 and trainer.eval_steps == [1] and trainer.preview_steps == 1
    assert trainer.checkpoint_every_n_steps == trainer.eval_every_n_steps == 5_000
    other = to_experiment_config(compose_recipe(recipe(f"dito_{size}_distill"), ["init.weights=a", "distill.teacher=b"]))
    assert (other.init.weights, other.distill.teacher) == ("a", "b")  # a separate teacher stays possible


def test_missing_data_or_export_is_refused_with_the_fix(tmp_path):
    distill = recipe("dito_xl_distill")
    with pytest.raises(DiToDataMissingError, match=r"data\.root="):
        check_dito_distill(compose_recipe(distill, [f"output_dir={tmp_path}", "init.weights=/x"]))
    with pytest.raises(DiToDistillInitError, match=r"set init\.weights=<a DiTo export"):
        check_dito_distill(compose_recipe(distill, ["data.demo=true"]))
    with pytest.raises(DiToDistillInitError, match=rf"init\.weights={tmp_path} holds no model\.safetensors"):
        check_dito_distill(compose_recipe(distill, ["data.demo=true", f"init.weights={tmp_path}"]))
    (tmp_path / "model.safetensors").touch()
    with pytest.raises(DiToDistillInitError, match=r"distill\.teacher=/nowhere holds no model\.safetensors"):
        check_dito_distill(compose_recipe(distill, ["data.demo=true", f"init.weights={tmp_path}", "distill.teacher=/nowhere"]))
    check_dito_distill(compose_recipe(distill, ["data.demo=true", f"init.weights={tmp_path}"]))


def test_distillation_loss_is_the_one_step_decode_against_the_teachers_50_step_decode():
    """FM-consistency: the trained quantity is exactly what ``decode(z, 1)`` returns, and the target
    exactly the teacher's 50-step uniform Euler decode from the same noise."""
    torch.manual_seed(0)
    teacher = build_autoencoder(tiny_config(sigma_min=1e-5))
    student = make_student(teacher)
    with torch.no_grad():  # make the student differ from its teacher
        for p in student.decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    exp = to_experiment_config(compose_recipe(recipe("dito_b_distill")))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    losses = distillation_losses(student, teacher, x, config=exp.distill.sampling, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    z = teacher.encode(x).latent_dist.mode()
    student.sampling.num_steps = exp.model.sampling.num_steps
    one_step = student.decode(z, noise=noise).sample
    target = teacher.decode(z, 50, grid="uniform", noise=noise).sample
    expected = per_sample_mse(one_step, target).mean()
    assert expected > 1e-4
    torch.testing.assert_close(losses["distill_mse"].detach(), expected, rtol=1e-5, atol=0)


def test_one_cpu_distillation_step_through_the_recipe(tmp_path, one_thread):
    """A tiny DiTo trained one step, then one step of ``dito_b_distill`` from its export (50-step teacher)."""
    teacher_cfg = compose_recipe(recipe("dito_b"), one_step_overrides(tmp_path / "dito", **SMALL_ENCODER))
    teacher_run = train(teacher_cfg)
    cfg = compose_recipe(
        recipe("dito_b_distill"), one_step_overrides(tmp_path / "distill", **SMALL_ENCODER, **{"init.weights": teacher_run.export_dir})
    )
    check_dito_distill(cfg)
    run = train(cfg)
    assert run.global_step == 1
    steps, mse = read_loss_curve(run.metrics_csv, "train/distill_mse")
    assert steps == [0] and math.isfinite(mse[0]) and mse[0] > 0
    before, after = load_file(str(teacher_run.export_dir / "model.safetensors")), load_file(str(run.export_dir / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))  # same latents as the teacher
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))  # the student learned
    assert run.module.autoencoder.sampling.num_steps == 1 and run.module.distill_config.teacher_steps == 50


@pytest.mark.parametrize("name", ["dito_b_distill", "dito_xl_distill"])
def test_recipe_resolves_to_its_frozen_config(name):
    """Any change to a setting of these recipes shows up here (regenerate the file on purpose only)."""
    frozen = OmegaConf.to_container(OmegaConf.load(FROZEN_CONFIGS / f"{name}.yaml"))
    assert OmegaConf.to_container(compose_recipe(recipe(name))) == frozen


# ---------------------------------------------------------------- CPU evidence
def test_cpu_distill_evidence_is_the_cpu_evidence_run_with_the_distillation_stage(tmp_path):
    from recipes.image.dito_cpu_evidence import build_config as teacher_config

    exp = to_experiment_config(compose_recipe(recipe("dito_distill_cpu_evidence"), [f"output_dir={tmp_path}"]))
    teacher = teacher_config()
    assert exp.model == teacher.model.__class__(**{**vars(teacher.model), "sampling": exp.model.sampling})  # same network and objective
    assert exp.model.sampling.num_steps == 1 and teacher.model.sampling.num_steps == 50
    assert exp.distill.teacher == exp.init.weights == "outputs/dito_cpu_evidence/export"
    assert (exp.distill.sampling.teacher_steps, exp.distill.sampling.grid, exp.trainer.max_steps) == (10, "uniform", 400)
    assert exp.data == teacher.data and exp.ema == teacher.ema


def test_held_out_tiles_cover_each_photograph_without_overlap(demo_dir):
    from PIL import Image

    from recipes.image.report import held_out_crops

    photo = demo_dir / "val" / "coffee.png"  # 600x400 -> 480x320 at a shorter side of 320: 7 x 5 tiles
    tiles = held_out_crops([photo], size=64, resize=320)
    assert tiles.shape == (35, 3, 64, 64) and -1 <= tiles.min() and tiles.max() <= 1
    image = Image.open(photo).convert("RGB").resize((480, 320), Image.LANCZOS)
    from modalities.image.data import to_tensor

    torch.testing.assert_close(tiles[8], to_tensor(image.crop((64, 64, 128, 128))))  # row 1, column 1
    with pytest.raises(ValueError, match="shorter side of at least 64"):
        held_out_crops([photo], size=64, resize=32)


def test_tile_scores_rank_a_sharp_decode_above_a_blurred_one():
    """The score_crops columns on a fake tokenizer whose 2-step decode is exact and 1-step decode blurred."""
    from types import SimpleNamespace

    from recipes.image.report import crop_table, score_crops

    class Fake:
        def encode(self, x):
            return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: x))

        def decode(self, z, n, noise=None, solver=None):
            blurred = torch.nn.functional.avg_pool2d(z, 5, 1, 2, count_include_pad=False)
            return SimpleNamespace(sample=z if n == 2 else blurred)

    crops = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    scores = score_crops(Fake(), crops, [1, 2], min_rfid_crops=2)  # rFID on 6 crops only to test its column
    blurred, sharp = scores["steps_1"], scores["steps_2"]
    assert sharp["psnr_mean_per_image"] > 40 and blurred["psnr_mean_per_image"] < 30
    assert sharp["hf_ratio"] == pytest.approx(1.0) and blurred["hf_ratio"] < 0.5
    assert sharp["rfid"] < blurred["rfid"] and sharp["decode_s_per_crop"] >= 0
    table = crop_table({"sharp": sharp, "blurred": blurred}, len(crops))
    assert table.count("\n") == 3 and "only 6 crops" in table


@pytest.mark.parametrize("name", ["dito_distill_cpu_evidence"])  # dito_cpu_evidence: tests/test_recipes.py
def test_cpu_evidence_recipe_resolves_to_its_frozen_config(name):
    frozen = OmegaConf.to_container(OmegaConf.load(FROZEN_CONFIGS / f"{name}.yaml"))
    assert OmegaConf.to_container(compose_recipe(recipe(name))) == frozen
