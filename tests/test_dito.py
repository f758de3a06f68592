"""DiTo presets (sizes, shapes, paper config) and the DiTo training recipes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from core.builder import build_autoencoder
from core.registry import DECODERS, ENCODERS
from core.training.cli import compose_recipe
from core.training.run import to_experiment_config, train
from modalities.image.dito import DITO_SIZES, dito_config, dito_row_kwargs, dito_size
from recipes.report import read_loss_curve

MANIFESTS = Path(__file__).parent / "data" / "official_weights"
PAPER_DECODER_M = {"b": 162.78, "l": 338.52, "xl": 620.94}  # paper Table 3 (162.8 / 338.5 / 620.9)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def manifest_counts(size: str) -> tuple[int, int]:
    """(encoder, decoder) tensor element counts of the official state dict."""
    entries = json.loads((MANIFESTS / f"dito-{size.upper()}-f8c4.json").read_text())["state_dict"]
    encoder = sum(math.prod(s) for n, s in entries if n.startswith("encoder."))
    decoder = sum(math.prod(s) for n, s in entries if n.startswith("renderer."))
    return encoder, decoder


# ---------------------------------------------------------------- architecture
@pytest.fixture(scope="module")
def meta_models() -> dict:
    """Every size built once on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return {size: build_autoencoder(dito_config(size)) for size in DITO_SIZES}


@pytest.mark.parametrize("size", ["b", "l", "xl"])
def test_parameter_counts_match_the_paper_and_the_official_code(size, meta_models):
    model = meta_models[size]
    encoder, decoder = count(model.encoder), count(model.decoder)
    assert abs(encoder / 1e6 - 34.1) < 0.05
    assert abs(decoder / 1e6 - PAPER_DECODER_M[size]) < 0.01
    assert (encoder, decoder) == manifest_counts(size)  # exact, against the official layer list
    assert DITO_SIZES[size].paper_decoder_params_m == pytest.approx(decoder / 1e6, abs=0.05)


def test_every_registered_dito_component_instantiates():
    names = DECODERS.list("dito_*")
    assert names == ["dito_b", "dito_l", "dito_tiny", "dito_xl"]
    with torch.device("meta"):
        for name in names:
            decoder = DECODERS.create(name, spatial_dims=2, in_channels=3, latent_channels=4, upsample_factor=8)
            assert decoder.in_channels == 3 and decoder.upsample_factor == 8
        encoder = ENCODERS.create("ldm_f8c4", spatial_dims=2, in_channels=3, out_channels=4)
    assert encoder.downsample_factor == 8 and count(encoder) == 34_145_176
    assert 100_000 < count(DECODERS.create("dito_tiny")) < 1_000_000


@pytest.mark.parametrize("dims", [1, 3])
def test_ldm_f8c4_refuses_other_dimensionalities(dims):
    with pytest.raises(ValueError, match=f"2-D image encoder.*spatial_dims={dims}.*conv_encoder"):
        ENCODERS.create("ldm_f8c4", spatial_dims=dims, in_channels=3, out_channels=4)


@pytest.mark.parametrize("size", ["tiny", "b", "l", "xl"])
def test_shapes_at_256_and_512(size, meta_models):
    """Fully convolutional: 512² works too (paper Table 8), on the meta device."""
    model = meta_models[size]
    for resolution in (256, 512):
        x = torch.empty(2, 3, resolution, resolution, device="meta")
        z = model.regularizer(model.encoder(x)).mode()
        u = model.decoder(x, torch.empty(2, device="meta"), z)
        assert z.shape == (2, 4, resolution // 8, resolution // 8) == model.latent_shape(tuple(x.shape))
        assert u.shape == x.shape


def test_tiny_model_runs_for_real(photo_batch, one_thread):
    torch.manual_seed(0)
    model = build_autoencoder(dito_config("tiny"))
    x = photo_batch[:2, :, :16, :16]
    losses = model.training_losses(x, generator=torch.Generator().manual_seed(0))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and model.decoder.stem.weight.grad.abs().sum() > 0
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0  # the flow loss trains the encoder too
    z = model.encode(x).latent_dist.mode()
    flat = z.flatten(1)  # LayerNorm latent: mean 0, std 1 per sample over (C, H, W)
    torch.testing.assert_close(flat.mean(1), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.var(1, unbiased=False), torch.ones(2), atol=1e-3, rtol=0)
    out = model.decode(z, 3, generator=torch.Generator().manual_seed(0)).sample
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_paper_config_values():
    cfg = dito_config("xl")
    assert (cfg.encoder.name, cfg.decoder.name, cfg.regularizer.name) == ("ldm_f8c4", "dito_xl", "layernorm")
    assert cfg.sigma_min == 1e-5 and cfg.time_sampler.name == "uniform" and cfg.latent_channels == 4
    assert (cfg.sampling.num_steps, cfg.sampling.grid, cfg.sampling.solver) == (50, "uniform", "euler")
    assert cfg.noise_sync.p == 0.0 and cfg.loss_terms == {}
    synced = dito_config("XL", noise_sync=True)
    assert synced.noise_sync.p == 0.1 and synced.noise_sync.tau_max == 1.0
    lpips = dito_config("b", lpips_weight=0.5, lpips_kwargs={"vgg_weights": "/w/vgg16.pth"})
    assert lpips.loss_terms["lpips"].weight == 0.5
    assert lpips.loss_terms["lpips"].kwargs == {"vgg_weights": "/w/vgg16.pth", "allow_random_weights": False}


def test_size_names():
    assert dito_size("DiTo-XL").name == dito_size("dito_xl").name == dito_size("XL").name == "xl"
    assert DITO_SIZES["l"].stage_channels == (192, 384, 768, 768) and DITO_SIZES["xl"].nodes == 4
    with pytest.raises(KeyError, match="unknown DiTo size 'h'; choose one of tiny, b, l, xl"):
        dito_size("h")


# ---------------------------------------------------------------- recipes
def dito_recipes() -> dict:
    from recipes.image import dito_b, dito_b_lpips, dito_l, dito_xl, dito_xl_lpips, dito_xl_noise_sync

    modules = (dito_b, dito_l, dito_xl, dito_xl_noise_sync, dito_b_lpips, dito_xl_lpips)
    return {m.RECIPE.name: m.RECIPE for m in modules}


EXPECTED = {  # recipe -> (decoder, noise-sync p, lpips weight)
    "dito_b": ("dito_b", 0.0, None),
    "dito_l": ("dito_l", 0.0, None),
    "dito_xl": ("dito_xl", 0.0, None),
    "dito_xl_noise_sync": ("dito_xl", 0.1, None),
    "dito_b_lpips": ("dito_b", 0.0, 0.5),
    "dito_xl_lpips": ("dito_xl", 0.0, 0.5),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_recipe_has_the_paper_settings(name, tmp_path):
    recipe = dito_recipes()[name]
    exp = to_experiment_config(compose_recipe(recipe, [f"output_dir={tmp_path}", "data.root=/data/imagenet"]))
    decoder, p, lpips = EXPECTED[name]
    model, data, optim, trainer = exp.model, exp.data, exp.optim, exp.trainer
    assert model.decoder.name == decoder and model.encoder.name == "ldm_f8c4" and model.noise_sync.p == p
    assert (model.loss_terms["lpips"].weight if lpips else None) == lpips and len(model.loss_terms) == bool(lpips)
    assert model.sigma_min == 1e-5 and model.regularizer.name == "layernorm" and model.time_sampler.name == "uniform"
    assert data.size == 256 and data.batch_size == 64 and data.root == "/data/imagenet"
    assert data.options == {"resize": 256, "eval_size": 256, "eval_resize": 256}
    assert (optim.name, optim.lr, tuple(optim.betas), optim.weight_decay) == ("adamw", 1e-4, (0.9, 0.999), 0.01)
    assert optim.grad_clip == 0.0 and optim.no_decay_patterns == [] and not exp.ema.enabled
    assert trainer.max_steps == 300_000 and trainer.precision == "auto"
    assert trainer.checkpoint_every_n_steps == trainer.preview_every_n_steps == trainer.eval_every_n_steps == 50_000
    assert trainer.eval_steps == [50]


def test_recipe_without_data_fails_early_with_the_fix(tmp_path, capsys):
    from core.training.cli import run_recipe
    from recipes.image.dito_common import DiToDataMissingError, check_dito_data

    recipe = dito_recipes()["dito_xl"]
    cfg = compose_recipe(recipe, [f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(DiToDataMissingError, match=r"set data\.root=.* or data\.shards=.*data\.demo=true"):
        check_dito_data(cfg)
    check_dito_data(compose_recipe(recipe, ["data.shards='/data/train-{000000..000009}.tar'"]))
    with pytest.raises(SystemExit):  # the command line stops before anything is built or written
        run_recipe(recipe, [f"output_dir={tmp_path / 'run'}", "hydra/job_logging=none", "hydra/hydra_logging=none"])
    assert "no training data" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_recipe_refuses_an_evaluation_set_too_large_to_decode(tmp_path, demo_dir):
    from recipes.image import dito_common
    from recipes.image.dito_common import DiToDataMissingError, check_dito_data

    recipe = dito_recipes()["dito_b"]
    check_dito_data(compose_recipe(recipe, [f"data.root={demo_dir}"]))  # train/ + small val/
    flat = demo_dir / "train"  # no val/ folder and no holdout: every image would be evaluated
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dito_common, "MAX_EVAL_IMAGES", 2)
        with pytest.raises(DiToDataMissingError, match=r"all of .* is \d+ images for the evaluation every 50000 steps"):
            check_dito_data(compose_recipe(recipe, [f"data.root={flat}"]))
        check_dito_data(compose_recipe(recipe, [f"data.root={flat}", "data.holdout=2"]))
        check_dito_data(compose_recipe(recipe, [f"data.root={flat}", "trainer.eval_every_n_steps=0"]))


def tiny_decoder_overrides() -> dict[str, object]:
    """The tiny decoder: its name and, since dito_config records the size's row in the kwargs, the row."""
    row = {f"model.decoder.kwargs.{k}": str(list(v)) if isinstance(v, tuple) else v for k, v in dito_row_kwargs("tiny").items()}
    return {"model.decoder.name": "dito_tiny", **row}


def one_step_overrides(tmp_path: Path, **changes: object) -> list[str]:
    """The recipe at test scale: tiny decoder, 16² crops, 2 images, one CPU step."""
    values: dict[str, object] = {
        "output_dir": tmp_path, **tiny_decoder_overrides(), "data.demo": "true", "data.size": 16,
        "data.batch_size": 2, "data.num_workers": 0, "data.options.resize": 24, "data.options.eval_size": 16,
        "data.options.eval_resize": 24, "trainer.max_steps": 1, "trainer.accelerator": "cpu", "trainer.devices": 1,
        "trainer.eval_every_n_steps": 0, "trainer.preview_every_n_steps": 0, "trainer.progress_bar": "false",
        "trainer.log_every_n_steps": 1,
    }
    values.update(changes)
    return [f"{k}={v}" for k, v in values.items()]


def run_one_step(name: str, tmp_path: Path, **changes: object):
    from recipes.image.dito_common import check_dito_data

    recipe = dito_recipes()[name]
    cfg = compose_recipe(recipe, one_step_overrides(tmp_path, **changes))
    check_dito_data(cfg)
    result = train(cfg)
    assert result.global_step == 1
    steps, fm = read_loss_curve(result.metrics_csv, "train/fm")
    assert steps == [0] and math.isfinite(fm[0]) and fm[0] > 0
    return result


# the variants only change the objective, so they run with a small encoder as well (4x faster)
SMALL_ENCODER = {"model.encoder.name": "conv_encoder", "+model.encoder.kwargs.base_channels": 16,
                 "+model.encoder.kwargs.num_res_blocks": 1, "+model.encoder.kwargs.num_groups": 8}


def test_one_real_training_step_through_the_recipe(tmp_path, one_thread):
    result = run_one_step("dito_b", tmp_path)
    meta = json.loads((result.export_dir / "config.json").read_text())["autoencoder"]
    assert (meta["encoder"]["name"], meta["decoder"]["name"], meta["noise_sync"]["p"]) == ("ldm_f8c4", "dito_tiny", 0.0)
    assert result.module.autoencoder.noise_sync is None


def test_one_real_training_step_with_noise_sync(tmp_path, one_thread):
    result = run_one_step("dito_xl_noise_sync", tmp_path, **SMALL_ENCODER)
    meta = json.loads((result.export_dir / "config.json").read_text())["autoencoder"]
    assert meta["decoder"]["name"] == "dito_tiny" and meta["noise_sync"]["p"] == 0.1
    assert result.module.autoencoder.noise_sync.p == 0.1 and result.module.autoencoder.noise_sync.tau_max == 1.0


def test_one_real_training_step_with_lpips(tmp_path, monkeypatch, one_thread):
    pytest.importorskip("modalities.image.lpips")
    monkeypatch.delenv("DIFFTOK_VGG16_WEIGHTS", raising=False)
    changes = {**SMALL_ENCODER, "data.size": 32, "data.options.resize": 40, "data.options.eval_size": 32, "data.options.eval_resize": 40,
               "model.loss_terms.lpips.kwargs.allow_random_weights": "true"}
    result = run_one_step("dito_b_lpips", tmp_path, **changes)
    _, lpips = read_loss_curve(result.metrics_csv, "train/lpips")
    assert math.isfinite(lpips[0]) and result.module.autoencoder.loss_weights == {"lpips": 0.5}


def test_every_decoder_size_kwarg_overrides_without_plus(tmp_path):
    recipe = dito_recipes()["dito_b"]
    cfg = to_experiment_config(compose_recipe(recipe, [f"output_dir={tmp_path}", *[f"{k}={v}" for k, v in tiny_decoder_overrides().items()],
                                                       "model.decoder.kwargs.pe_dim=16"]))
    assert set(cfg.model.decoder.kwargs) == set(dito_row_kwargs("tiny"))
    decoder = build_autoencoder(cfg.model).decoder
    reference = DECODERS.create("dito_tiny", pe_dim=16)
    assert [(n, p.shape) for n, p in decoder.named_parameters()] == [(n, p.shape) for n, p in reference.named_parameters()]
    with pytest.raises(ValueError, match="size-table kwargs of 'dito_b'"):
        build_autoencoder(to_experiment_config(compose_recipe(recipe, [f"output_dir={tmp_path}", "model.decoder.name=dito_tiny"])).model)
