"""SSDD recipes: paper settings per stage, refusals naming the fix, one CPU step per variant."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.builder import build_autoencoder
from core.training.cli import compose_recipe
from core.training.run import to_experiment_config, train
from modalities.image.ssdd.config import ssdd_config
from modalities.image.ssdd.sizes import size_row_kwargs
from recipes.image.ssdd_common import SSDDStageError, check_ssdd_stage
from recipes.report import read_loss_curve

PRETRAIN = ["ssdd_s", "ssdd_b", "ssdd_m", "ssdd_l", "ssdd_xl", "ssdd_h"]
ALL = PRETRAIN + ["ssdd_encoder_f8c4", "ssdd_encoder_f16c4", "ssdd_m_finetune_256", "ssdd_m_distill"]


def recipe(name: str):
    return importlib.import_module(f"recipes.image.{name}").RECIPE


@pytest.mark.parametrize("name", ALL)
def test_recipe_has_the_paper_settings(name, tmp_path):
    cfg = to_experiment_config(compose_recipe(recipe(name), [f"output_dir={tmp_path}"]))
    o, m, t = cfg.optim, cfg.model, cfg.trainer
    assert (o.name, o.weight_decay, o.grad_clip, o.no_decay_patterns) == ("radam_schedulefree", 1e-2, 0.1, ["*bias*"])
    assert cfg.data.batch_size == 256 and t.precision == "auto"
    assert (cfg.ema.enabled, cfg.ema.decay, cfg.ema.warmup) == (True, 0.999, True)
    assert (m.sigma_min, m.regularizer.name, m.regularizer_weight, m.time_sampler.name) == (0.0, "kl", 1e-6, "logit_normal")
    assert {k: v.weight for k, v in m.loss_terms.items()} == {"lpips": 0.5, "repa": 0.25}
    assert (m.sampling.grid, m.sampling.power) == ("power", 2.0)
    resolution = 256 if name.endswith("_256") else 128
    assert (cfg.data.size, cfg.data.options["resize"], cfg.data.options["resize_max"]) == (resolution, resolution, 2 * resolution)
    if name in PRETRAIN:
        assert m.decoder.name == name and cfg.init.freeze_encoder and cfg.ema.start_step == 50_000
        assert o.lr == (3e-4 if name == "ssdd_h" else 8e-4) and t.max_steps == 300 * 5005
    elif name.startswith("ssdd_encoder"):
        assert m.encoder.name == "kl_" + name.rsplit("_", 1)[1] and not cfg.init.freeze_encoder and o.lr == 1e-4
    elif name == "ssdd_m_distill":
        assert cfg.distill.enabled and cfg.distill.sampling.teacher_steps == 12 and m.sampling.num_steps == 1 and t.eval_steps == [1]
        assert o.lr == 1e-4 and t.max_steps == 10 * 5005
    else:
        assert o.lr == 1e-4 and t.max_steps == 100 * 5005 and m.sampling.num_steps == 8


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("ssdd_m", [], "data.root"),
        ("ssdd_m", ["data.demo=true"], "init.encoder_weights"),
        ("ssdd_m_distill", ["data.demo=true"], "distill.teacher"),
        ("ssdd_m_finetune_256", ["data.demo=true"], "init.weights"),
    ],
)
def test_missing_stage_inputs_are_refused_with_the_fix(name, overrides, message, tmp_path):
    with pytest.raises(SSDDStageError, match=message.replace(".", r"\.")):
        check_ssdd_stage(compose_recipe(recipe(name), [f"output_dir={tmp_path}", *overrides]))


def tiny_decoder_overrides() -> dict[str, object]:
    """The tiny decoder: its name and, since ssdd_config records the size's row in the kwargs, the row."""
    row = {f"model.decoder.kwargs.{k}": str(list(v)) if isinstance(v, tuple) else v for k, v in size_row_kwargs("tiny").items()}
    return {"model.decoder.name": "ssdd_tiny", **row}


def tiny_overrides(out: Path, **changes: object) -> list[str]:
    """A recipe at test scale: tiny decoder, small encoder, 32² crops, random LPIPS/DINO allowed."""
    values: dict[str, object] = {
        "output_dir": out, **tiny_decoder_overrides(), "model.encoder.name": "conv_encoder",
        "+model.encoder.kwargs.base_channels": 16, "+model.encoder.kwargs.num_res_blocks": 1,
        "+model.encoder.kwargs.num_groups": 8, "data.demo": "true", "data.size": 32, "data.batch_size": 2,
        "data.num_workers": 0, "data.options.resize": 40, "data.options.resize_max": 48, "data.options.eval_size": 32,
        "data.options.eval_resize": 40, "trainer.max_steps": 1, "trainer.accelerator": "cpu", "trainer.devices": 1,
        "trainer.eval_every_n_steps": 0, "trainer.preview_every_n_steps": 0, "trainer.progress_bar": "false",
        "trainer.log_every_n_steps": 1, "model.loss_terms.lpips.kwargs.allow_random_weights": "true",
        "model.loss_terms.repa.kwargs.allow_random_weights": "true",
        "+model.loss_terms.repa.kwargs.dino_config_overrides.num_hidden_layers": 1,
    }
    values.update(changes)
    return [f"{k}={v}" for k, v in values.items()]


def run_stage(name: str, out: Path, **changes: object):
    cfg = compose_recipe(recipe(name), tiny_overrides(out, **changes))
    check_ssdd_stage(cfg)
    result = train(cfg)
    assert result.global_step == 1
    return result


@pytest.fixture
def no_weight_env(monkeypatch):
    monkeypatch.delenv("DIFFTOK_VGG16_WEIGHTS", raising=False)
    monkeypatch.delenv("DIFFTOK_DINOV2_WEIGHTS", raising=False)


def test_stages_run_one_cpu_step_each(tmp_path, no_weight_env):
    # stage 0: encoder + decoder jointly, all four loss terms
    encoder_run = run_stage("ssdd_encoder_f8c4", tmp_path / "enc")
    header = encoder_run.metrics_csv.read_text().splitlines()[0]
    for term in ("train/fm", "train/lpips", "train/repa", "train/regularizer"):
        assert term in header
        _, values = read_loss_curve(encoder_run.metrics_csv, term)
        assert math.isfinite(values[0])
    encoder_export = encoder_run.export_dir
    # stage 1: a decoder on the shared frozen encoder
    pretrain = run_stage("ssdd_m", tmp_path / "dec", **{"init.encoder_weights": encoder_export})
    source, trained = load_file(str(encoder_export / "model.safetensors")), load_file(str(pretrain.export_dir / "model.safetensors"))
    assert all(torch.equal(source[k], trained[k]) for k in source if k.startswith("encoder."))
    # stage 3: distillation of the stage-1 export into a one-step student
    distill = run_stage("ssdd_m_distill", tmp_path / "dist", **{"distill.teacher": pretrain.export_dir, "distill.sampling.teacher_steps": 2})
    _, mse = read_loss_curve(distill.metrics_csv, "train/distill_mse")
    assert math.isfinite(mse[0]) and distill.module.autoencoder.sampling.num_steps == 1


def test_every_decoder_size_kwarg_overrides_without_plus(tmp_path):
    """Bug: model.decoder.kwargs.window=4 failed (only +model.decoder.kwargs.window=4 worked)."""
    overrides = [f"output_dir={tmp_path}", "model.decoder.kwargs.window=4", "model.decoder.kwargs.num_layers=3"]
    cfg = to_experiment_config(compose_recipe(recipe("ssdd_m"), overrides))
    assert set(size_row_kwargs("m")) == set(cfg.model.decoder.kwargs)  # every column of the size table is there
    with torch.device("meta"):
        decoder = build_autoencoder(cfg.model, with_loss_terms=False).decoder
    tables = [p.shape for n, p in decoder.named_parameters() if p.ndim == 3 and "mid_block" in n]
    assert tables and all(shape[:2] == (7, 7) for shape in tables)  # (2w - 1, 2w - 1, heads) for w = 4
    assert decoder.mid_block.window == 4 and len(decoder.mid_block.transformer_blocks) == 3


def test_size_config_builds_the_same_decoder_as_the_bare_name():
    torch.manual_seed(0)
    recorded = build_autoencoder(ssdd_config("tiny", lpips_weight=0, repa_weight=0)).decoder.state_dict()
    torch.manual_seed(0)
    bare = ssdd_config("tiny", lpips_weight=0, repa_weight=0)
    bare.decoder.kwargs = {}  # how exports written before the size table moved into the config look
    plain = build_autoencoder(bare).decoder.state_dict()
    assert list(recorded) == list(plain) and all(torch.equal(recorded[k], plain[k]) for k in plain)


def test_renaming_the_decoder_of_a_size_config_is_refused_with_the_fix(tmp_path):
    cfg = to_experiment_config(compose_recipe(recipe("ssdd_m"), [f"output_dir={tmp_path}", "model.decoder.name=ssdd_tiny"]))
    with pytest.raises(ValueError, match=r"size-table kwargs of 'ssdd_m'.*ssdd_config\('tiny'\)"):
        build_autoencoder(cfg.model, with_loss_terms=False)


@pytest.mark.parametrize(
    ("name", "renamed", "needs"),
    [("ssdd_m_finetune_256", "my_run", "init.weights"), ("ssdd_m", "my_finetune_256", None)],
)
def test_stage_check_follows_the_stage_field_not_the_recipe_name(name, renamed, needs, tmp_path):
    overrides = [f"output_dir={tmp_path}", f"name={renamed}", "data.demo=true", "init.encoder_weights=/some/export"]
    cfg = compose_recipe(recipe(name), overrides)
    assert cfg.stage == ("finetune" if needs else "pretrain")
    if needs:
        with pytest.raises(SSDDStageError, match=needs.replace(".", r"\.")):
            check_ssdd_stage(cfg)
    else:
        check_ssdd_stage(cfg)  # the name ends in finetune_256 but the stage is pre-training


def test_unknown_stage_is_refused(tmp_path):
    cfg = compose_recipe(recipe("ssdd_m"), [f"output_dir={tmp_path}", "data.demo=true", "init.encoder_weights=/e", "stage=finetun"])
    with pytest.raises(SSDDStageError, match="not an SSDD stage"):
        check_ssdd_stage(cfg)
