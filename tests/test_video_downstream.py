"""Downstream: core's latent DiT trains on video latents (a 3-D token grid) and its samples decode to clips."""

from __future__ import annotations

import lightning as L
import torch

import modalities.video  # noqa: F401
from core.builder import ComponentConfig, build_autoencoder
from core.generation.config import GeneratorConfig, build_generator
from core.generation.sampling import sample_and_decode
from core.training.config import EMAConfig, OptimConfig
from core.training.generator_module import GeneratorModule
from modalities.video.models import video_dito_config

CLIP = (3, 9, 16, 16)  # -> latents (16, 3, 2, 2): 3 latent frames of 2×2, 12 tokens at patch size 1


def test_latent_dit_trains_on_video_latents_and_decodes_a_sample_clip():
    torch.manual_seed(0)
    tokenizer = build_autoencoder(video_dito_config("tiny")).eval()
    latent_shape = tokenizer.latent_shape(CLIP)
    assert latent_shape == (16, 3, 2, 2)
    config = GeneratorConfig(
        net=ComponentConfig("dit_tiny_2", {"patch_size": 1}), spatial_dims=3, latent_channels=16,
        latent_size=list(latent_shape[1:]), num_classes=2, sample_steps=3, cfg_scale=1.5,
    )
    generator = build_generator(config)
    assert generator.net.token_grid(latent_shape[1:]) == (3, 2, 2)  # time is a token axis
    module = GeneratorModule(generator, OptimConfig(lr=1e-3, weight_decay=0.0), EMAConfig(enabled=False), tokenizer=tokenizer)
    clips = [{"x": torch.rand(4, *CLIP) * 2 - 1, "cls": torch.tensor([0, 1, 0, 1])} for _ in range(3)]
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    trainer = L.Trainer(max_steps=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(clips, batch_size=None))
    assert trainer.global_step == 3
    assert any(not torch.equal(before[k], v) for k, v in generator.state_dict().items())
    generator.eval()
    labels = torch.tensor([0, 1])
    g = torch.Generator().manual_seed(0)
    sample = sample_and_decode(
        generator, tokenizer, labels, latent_noise=torch.randn(2, *latent_shape, generator=g),
        data_noise=torch.randn(2, *CLIP, generator=g), decode_steps=2,
    )
    assert sample.shape == (2, *CLIP) and torch.isfinite(sample).all()
    assert sample.min() >= -1 and sample.max() <= 1 and sample.std() > 0


def test_generator_on_the_fly_sizes_its_latent_grid_from_the_clip_length():
    """``resolve_generator_config`` without a latent cache: the time axis comes from ``num_frames``, not ``data.size``."""
    from core.training.config import DataConfig
    from core.training.generator_config import GeneratorExperimentConfig
    from core.training.generator_run import resolve_generator_config

    tokenizer = build_autoencoder(video_dito_config("tiny"), with_loss_terms=False)
    cfg = GeneratorExperimentConfig(tokenizer="unused", data=DataConfig(demo=True, size=16, options={"num_frames": 9, "labels": "folder"}))
    resolved = resolve_generator_config(cfg, tokenizer)
    assert (resolved.spatial_dims, resolved.latent_channels, list(resolved.latent_size)) == (3, 16, [3, 2, 2])
