"""Downstream: the core latent DiT trains on 1-D audio latents and its samples decode to audio."""

from __future__ import annotations

import pytest
import torch

from core.builder import ComponentConfig, build_autoencoder
from core.generation.config import GeneratorConfig, build_generator
from core.generation.sampling import sample_and_decode
from modalities.audio.models import audio_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_latent_dit_trains_on_audio_latents_and_samples_decode_to_audio():
    torch.manual_seed(0)
    tokenizer = build_autoencoder(audio_config("tiny")).eval()
    t = torch.arange(256 * 16) / 16000
    clips = torch.stack([0.5 * torch.sin(2 * torch.pi * f * t) for f in (220.0, 330.0, 440.0, 550.0)])[:, None]  # (4, 1, 4096)
    with torch.no_grad():
        z = tokenizer.normalize_latents(tokenizer.encode(clips).latent_dist.mode())  # (4, 16, 16)
    labels = torch.tensor([0, 0, 1, 1])
    gen = build_generator(GeneratorConfig(net=ComponentConfig("dit_tiny_2"), spatial_dims=1, latent_channels=16,
                                          latent_size=[16], num_classes=2, sample_steps=4, cfg_scale=2.0))
    assert gen.net.spatial_dims == 1

    def fixed_loss() -> float:
        gen.eval()
        with torch.no_grad():
            return float(gen.training_losses(z, labels, generator=torch.Generator().manual_seed(0))["loss"])

    before = fixed_loss()
    optimizer = torch.optim.AdamW(gen.parameters(), lr=1e-3, weight_decay=0.0)
    gen.train()
    for step in range(30):
        loss = gen.training_losses(z, labels, generator=torch.Generator().manual_seed(step))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = fixed_loss()
    assert after < before, (before, after)

    g = torch.Generator().manual_seed(1)
    audio = sample_and_decode(gen, tokenizer, torch.tensor([0, 1]), latent_noise=torch.randn(2, 16, 16, generator=g),
                              data_noise=torch.randn(2, 1, 4096, generator=g), decode_steps=2)
    assert audio.shape == (2, 1, 4096) and torch.isfinite(audio).all() and audio.abs().max() <= 1.0
