"""Third-party modality plugins: discovered through entry points, trained without editing core."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from core.registry import MODALITIES, load_plugins

PLUGIN_SOURCE = textwrap.dedent(
    '''
    """A throwaway 1-D modality: noisy sine waves."""
    import math
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, Dataset

    from core.modality import Modality
    from core.registry import MODALITIES


    class Waves(Dataset):
        def __init__(self, length, n=64):
            self.length, self.n = length, n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            freq = 1 + 4 * torch.rand(1, generator=g)
            t = torch.linspace(0, 1, self.length)
            return {"x": torch.sin(2 * math.pi * freq * t)[None] * 0.9}


    class WaveData(L.LightningDataModule):
        def __init__(self, cfg, seed, batch_size):
            super().__init__()
            self.cfg, self.batch_size = cfg, batch_size

        def train_dataloader(self):
            return DataLoader(Waves(self.cfg.size), batch_size=self.batch_size, shuffle=True, drop_last=True)

        def preview_batch(self, count):
            return torch.stack([Waves(self.cfg.size)[i]["x"] for i in range(count)])


    def write_preview(originals, reconstructions, path):
        path = path.with_suffix(".pt")
        torch.save({"x": originals, "rec": reconstructions}, path)
        return path


    def register():
        MODALITIES.add("toy_wave", lambda: Modality("toy_wave", 1, 1, lambda c, s, b: WaveData(c, s, b), write_preview, ".pt"))
    '''
)


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "toy_wave_plugin").mkdir(parents=True)
    (site / "toy_wave_plugin" / "__init__.py").write_text(PLUGIN_SOURCE)
    dist = site / "toy_wave_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-wave-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[difftok.modalities]\ntoy_wave = toy_wave_plugin:register\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    MODALITIES.remove("toy_wave")
    sys.modules.pop("toy_wave_plugin", None)


def test_entry_point_plugin_registers_and_trains(installed_plugin, tmp_path):
    from core.builder import AutoencoderConfig, ComponentConfig
    from core.training.config import DataConfig, ExperimentConfig, OptimConfig, TrainerConfig
    from core.training.run import train

    assert "toy_wave" not in MODALITIES.list()
    loaded = load_plugins(force=True)
    assert "toy_wave" in loaded and "toy_wave" in MODALITIES.list()
    cfg = ExperimentConfig(
        name="toy", output_dir=str(tmp_path / "run"),
        model=AutoencoderConfig(
            modality="toy_wave", spatial_dims=1, in_channels=1, latent_channels=2,
            encoder=ComponentConfig("conv_encoder", {"base_channels": 8, "channels_mult": [1, 2], "num_res_blocks": 1, "num_groups": 4}),
            decoder=ComponentConfig("unet_decoder", {"stage_channels": [8, 16], "down_blocks": 1, "mid_blocks": 1, "up_blocks": 2,
                                                     "pe_dim": 16, "t_dim": 32, "num_groups": 4}),
        ),
        data=DataConfig(size=64, batch_size=4, num_workers=0),
        optim=OptimConfig(lr=1e-3),
        trainer=TrainerConfig(max_steps=3, accelerator="cpu", log_every_n_steps=1, checkpoint_every_n_steps=3,
                              preview_every_n_steps=3, preview_count=2, preview_steps=2, progress_bar=False),
    )
    result = train(cfg)
    assert result.global_step == 3 and result.previews[0].suffix == ".pt"
    from core.pretrained import from_pretrained

    tok = from_pretrained(result.export_dir, modality="toy_wave")
    x = torch.sin(torch.linspace(0, 6, 64))[None, None]
    assert tok.encode(x).latent_dist.mode().shape == (1, 2, 32)


def test_broken_plugin_warns_without_breaking_core(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[difftok.modalities]\nbroken = does_not_exist_anywhere:register\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.warns(UserWarning, match="plugin 'broken'"):
        load_plugins(force=True)
    assert "image" in MODALITIES.list()
