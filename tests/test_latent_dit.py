"""Latent DiT training (train_generator), recipes, export and decoding of generated latents."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.builder import build_autoencoder
from core.builder import ComponentConfig
from core.generation.config import GeneratorConfig
from core.generation.pretrained import load_generator
from core.pretrained import save_pretrained
from core.training.cli import compose_recipe
from core.training.config import DataConfig, EMAConfig, OptimConfig, TrainerConfig
from core.training.generator_config import GeneratorExperimentConfig, GeneratorSampleConfig
from core.training.generator_run import decode_samples, train_generator
from modalities.image.demo import DEMO_TRAIN
from recipes.image.latent_dit_common import DIT_RECIPE_SIZES, LatentDiTSetupError, check_latent_dit_inputs, latent_dit_recipe
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory) -> Path:
    """A tiny f4 LayerNorm tokenizer (random weights) saved as an export folder."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tokenizer")
    save_pretrained(build_autoencoder(tiny_config()), out)
    return out


def tiny_run(tmp_path: Path, tokenizer: Path, **overrides) -> GeneratorExperimentConfig:
    cfg = GeneratorExperimentConfig(
        name="tiny_dit", output_dir=str(tmp_path / "run"), tokenizer=str(tokenizer),
        generator=GeneratorConfig(net=ComponentConfig("dit_tiny_2"), num_classes=len(DEMO_TRAIN), sample_steps=4, cfg_scale=2.0),  # labels=file
        data=DataConfig(demo=True, size=32, batch_size=4, num_workers=0,
                        options={"resize": 32, "train_crop": "center", "labels": "file", "cache": True}),
        optim=OptimConfig(name="adamw", lr=1e-3, weight_decay=0.0),
        ema=EMAConfig(enabled=True, decay=0.9999, warmup=False),
        trainer=TrainerConfig(max_steps=2, accelerator="cpu", log_every_n_steps=1, checkpoint_every_n_steps=1000,
                              preview_every_n_steps=0, progress_bar=False),
        sample=GeneratorSampleConfig(count=3, steps=3, decode_steps=2),
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


@pytest.mark.parametrize("size", DIT_RECIPE_SIZES)
def test_latent_dit_recipes_carry_the_paper_values(size):
    cfg = compose_recipe(latent_dit_recipe(size, f"latent_dit_{size}"), ["tokenizer=/x", "data.root=/y"])
    assert cfg.generator.net.name == f"dit_{size}_2"
    assert (cfg.data.batch_size, cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == (256, "adamw", 1e-4, 0.0)
    assert (cfg.ema.enabled, cfg.ema.decay, cfg.trainer.max_steps) == (True, 0.9999, 400_000)
    g = cfg.generator
    assert (g.num_classes, g.label_drop_prob, g.sigma_min, g.sample_steps, g.cfg_scale) == (1000, 0.1, 1e-5, 200, 2.0)
    assert g.time_sampler.name == "uniform" and list(g.latent_size) == [32, 32]
    assert cfg.data.options["train_crop"] == "center"


def test_latent_dit_recipe_refuses_missing_inputs(tmp_path, tiny_tokenizer):
    recipe = latent_dit_recipe("xl", "latent_dit_xl")
    with pytest.raises(LatentDiTSetupError, match="tokenizer=<save_pretrained folder> is required"):
        check_latent_dit_inputs(compose_recipe(recipe, ["data.root=/y"]))
    with pytest.raises(LatentDiTSetupError, match="has no config.json"):
        check_latent_dit_inputs(compose_recipe(recipe, [f"tokenizer={tmp_path}", "data.root=/y"]))
    with pytest.raises(LatentDiTSetupError, match="latents=<dir>"):
        check_latent_dit_inputs(compose_recipe(recipe, [f"tokenizer={tiny_tokenizer}"]))


def test_one_training_step_on_the_fly_exports_and_samples(tmp_path, tiny_tokenizer):
    result = train_generator(tiny_run(tmp_path, tiny_tokenizer))
    assert result.global_step == 2
    generator = load_generator(result.export_dir)
    cfg = generator.config
    # the latent grid and statistics come from the tokenizer (f4 on 32² crops)
    assert (cfg.latent_channels, list(cfg.latent_size), cfg.latent_shift, cfg.latent_scale) == (4, [8, 8], 0.0, 1.0)
    assert Path(cfg.tokenizer) == tiny_tokenizer.resolve()
    # the export holds the EMA weights, not the live ones
    module = result.module
    exported = generator.state_dict()
    live = module.generator.state_dict()
    ema = module.export_state_dict()
    changed = [k for k in live if not torch.equal(live[k], ema[k])]
    assert changed and all(torch.equal(exported[k], ema[k]) for k in exported)
    assert result.previews and result.previews[0].is_file()
    assert not any(k.startswith("tokenizer.") for k in torch.load(result.checkpoint_dir / "last.ckpt", weights_only=False)["state_dict"])


def test_decoded_samples_have_the_data_shape_and_range(tiny_tokenizer):
    from core.generation.config import build_generator
    from core.pretrained import from_pretrained

    tokenizer = from_pretrained(tiny_tokenizer)
    generator = build_generator(GeneratorConfig(net=ComponentConfig("dit_tiny_2"), latent_size=[6, 10], num_classes=5)).eval()
    torch.manual_seed(0)
    for p in generator.parameters():  # adaLN-Zero starts at zero output: randomise so samples are non-trivial
        p.data.normal_(0, 0.05)
    images = decode_samples(generator, tokenizer, torch.tensor([0, 4, 2]), GeneratorSampleConfig(steps=3, decode_steps=2))
    assert images.shape == (3, 3, 24, 40)
    assert torch.isfinite(images).all() and images.min() >= -1 and images.max() <= 1
    again = decode_samples(generator, tokenizer, torch.tensor([0, 4, 2]), GeneratorSampleConfig(steps=3, decode_steps=2))
    torch.testing.assert_close(images, again)


def test_center_train_crop_option_keeps_the_center_and_flips(demo_dir):
    from types import SimpleNamespace

    from modalities.image.data import ImageDataModule

    def dataset(crop: str):
        cfg = SimpleNamespace(root=str(demo_dir), shards=None, demo=False, size=32, batch_size=2, num_workers=0, holdout=0,
                              options={"resize": 48, "train_crop": crop, "labels": "file", "verify": False})
        return ImageDataModule(cfg, seed=0).train_dataset()

    center = dataset("center")
    views = {tuple(center[0]["x"][:, :2, :2].flatten().tolist()) for _ in range(12)}
    assert len(views) == 2  # only the center crop, flipped or not
    randomly = dataset("random")
    random_views = {tuple(randomly[0]["x"][:, :2, :2].flatten().tolist()) for _ in range(12)}
    assert len(random_views) > 2
    with pytest.raises(ValueError, match="train_crop"):
        dataset("middle")


def test_cache_then_train_round_trip(tmp_path, tiny_tokenizer, demo_dir, one_thread):
    """Latents cached by the command train the generator: the batches it sees are the cached
    latents, and a short run on them lowers the flow-matching loss."""
    from core.latent.cache import load_all_latents
    from core.training.generator_module import batch_latents
    from recipes.image.cache_latents import main as cache_main

    cache = tmp_path / "latents"
    cache_main([f"tokenizer={tiny_tokenizer}", f"data.root={demo_dir / 'train'}", "labels=file", "size=32",
                f"out={cache}", "batch_size=4", "num_workers=0", "samples_per_shard=3", "flip=true"])
    cached = load_all_latents(cache)
    n = len(DEMO_TRAIN)
    assert cached.mean.shape == (n, 4, 8, 8) and sorted(set(cached.labels.tolist())) == list(range(n))

    cfg = tiny_run(tmp_path, tiny_tokenizer, latents=str(cache))
    cfg.trainer.max_steps = 40
    cfg.optim.lr = 3e-3
    cfg.data.batch_size = 8
    result = train_generator(cfg)
    assert result.global_step == 40 and load_generator(result.export_dir).config.num_classes == n

    # the training batches are cached latents (either flip) with their labels
    batch = next(iter(result.datamodule.train_dataloader()))
    z, labels = batch_latents(batch, tokenizer=None)
    table = {(int(lbl), m.numpy().tobytes()) for lbl, m in zip(cached.labels, cached.mean)}
    table |= {(int(lbl), m.numpy().tobytes()) for lbl, m in zip(cached.labels, cached.mean_flip)}
    assert all((int(lbl), zi.numpy().tobytes()) in table for lbl, zi in zip(labels, z))

    import csv

    rows = [float(r["train/fm"]) for f in sorted(result.output_dir.glob("logs/csv/version_*/metrics.csv"))
            for r in csv.DictReader(f.open()) if r.get("train/fm")]
    first, last = sum(rows[:5]) / 5, sum(rows[-5:]) / 5
    assert last < 0.8 * first, (first, last)


def test_gfid_command_is_independent_of_the_batch_size(tmp_path, tiny_tokenizer, one_thread):
    from dataclasses import replace

    from core.generation.config import build_generator
    from core.generation.pretrained import save_generator
    from core.eval.selection import SourceData
    from modalities.image.generation_eval import GenerationEvalSettings, evaluate_generator

    config = GeneratorConfig(net=ComponentConfig("dit_tiny_2"), latent_size=[8, 8], num_classes=3, sample_steps=2,
                             tokenizer=str(tiny_tokenizer))
    generator = build_generator(config)
    torch.manual_seed(0)
    for p in generator.parameters():
        p.data.normal_(0, 0.05)
    save_generator(generator, tmp_path / "gen")
    settings = GenerationEvalSettings(generator=str(tmp_path / "gen"), reference=SourceData(demo=True), num_reference=6,
                                      num_images=5, resolution=32, decode_steps=2, batch_size=5, num_workers=0,
                                      progress=False, out=str(tmp_path / "a"))
    a = evaluate_generator(settings)
    b = evaluate_generator(replace(settings, batch_size=2, out=str(tmp_path / "b")))
    assert a["gfid"] == pytest.approx(b["gfid"], rel=1e-6) and a["gfid"] > 0
    assert (a["num_images"], a["num_reference"], a["steps"], a["cfg_scale"]) == (5, 6, 2, 2.0)
    assert (tmp_path / "a" / "samples.png").is_file() and (tmp_path / "a" / "metrics.json").is_file()
