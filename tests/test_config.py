"""AutoencoderConfig: nested component settings, Hydra overrides, and the older flat config.json layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from core.autoencoder import SamplingConfig
from core.builder import LEGACY_FLAT_KEYS, AutoencoderConfig, build_autoencoder, config_from_dict
from core.latent.noise_sync import NoiseSyncConfig
from core.latent.stats import LatentStats
from core.pretrained import from_pretrained, read_weights, save_pretrained, write_latent_stats
from core.training.cli import compose_recipe
from core.training.run import to_experiment_config
from recipes.image.quickstart import RECIPE as QUICKSTART
from tests.conftest import tiny_config

# config.json written by the code before the settings were nested (flat noise_sync_p, sample_steps, latent_shift, ...)
LEGACY_EXPORT = Path(__file__).parent / "data" / "legacy_flat_export"


def test_nested_settings_are_the_components_own_dataclasses():
    cfg = AutoencoderConfig()
    assert isinstance(cfg.noise_sync, NoiseSyncConfig) and cfg.noise_sync.p == 0.0  # off by default
    assert isinstance(cfg.sampling, SamplingConfig) and isinstance(cfg.latent_stats, LatentStats)
    assert not set(LEGACY_FLAT_KEYS) & set(AutoencoderConfig.__dataclass_fields__)
    ae = build_autoencoder(tiny_config(sampling=SamplingConfig(num_steps=3, grid="power"), noise_sync=NoiseSyncConfig(p=0.2)))
    assert ae.sampling == SamplingConfig(num_steps=3, grid="power") and ae.noise_sync == NoiseSyncConfig(p=0.2)
    assert build_autoencoder(tiny_config()).noise_sync is None  # p = 0 disables noise sync


def test_hydra_overrides_reach_the_nested_settings(tmp_path):
    overrides = [f"output_dir={tmp_path}", "model.sampling.num_steps=8", "model.sampling.grid=power",
                 "model.noise_sync.p=0.1", "model.noise_sync.tau_max=0.5", "model.latent_stats.scale=2.0"]
    cfg = to_experiment_config(compose_recipe(QUICKSTART, overrides)).model
    assert cfg.sampling == SamplingConfig(num_steps=8, grid="power", power=2.0, solver="euler")
    assert cfg.noise_sync == NoiseSyncConfig(p=0.1, tau_max=0.5) and cfg.latent_stats == LatentStats(0.0, 2.0)
    ae = build_autoencoder(cfg)
    assert ae.sampling.num_steps == 8 and ae.noise_sync.p == 0.1 and ae.latent_stats.scale == 2.0


def test_bad_nested_values_fail_with_the_rule(tmp_path):
    with pytest.raises(Exception, match=r"noise-sync p must be in \[0, 1\]"):
        to_experiment_config(compose_recipe(QUICKSTART, [f"output_dir={tmp_path}", "model.noise_sync.p=2"]))
    with pytest.raises(ValueError, match=r"unknown keys \['steps'\] in autoencoder config 'sampling'"):
        config_from_dict({"sampling": {"steps": 3}})
    with pytest.raises(ValueError, match="sets both 'sample_steps' and 'sampling.num_steps'"):
        config_from_dict({"sample_steps": 3, "sampling": {"num_steps": 4}})


def test_legacy_flat_config_json_loads(tmp_path):
    legacy = json.loads((LEGACY_EXPORT / "config.json").read_text())["autoencoder"]
    assert {"noise_sync_p", "sample_steps", "latent_shift"} <= set(legacy)  # really the old layout
    cfg = config_from_dict(legacy)
    assert cfg.noise_sync == NoiseSyncConfig(p=0.1, tau_max=0.5)
    assert cfg.sampling == SamplingConfig(num_steps=7, grid="power", power=3.0, solver="heun")
    assert cfg.latent_stats == LatentStats(shift=0.25, scale=2.0)
    # the old folder's weights are those of this architecture; write them next to the old config.json
    folder = tmp_path / "old"
    shutil.copytree(LEGACY_EXPORT, folder)
    torch.manual_seed(0)
    saved = save_pretrained(build_autoencoder(cfg), tmp_path / "new")
    shutil.copy(saved / "model.safetensors", folder / "model.safetensors")
    old, new = from_pretrained(folder), from_pretrained(saved)
    assert (old.sampling, old.noise_sync, old.latent_stats) == (new.sampling, new.noise_sync, new.latent_stats)
    assert old.config == new.config
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    ra = old.reconstruct(x, generator=torch.Generator().manual_seed(1)).sample
    rb = new.reconstruct(x, generator=torch.Generator().manual_seed(1)).sample
    assert torch.equal(ra, rb)
    # recording stats into an old folder rewrites its config in the nested layout and keeps the weights
    before = read_weights(folder)
    write_latent_stats(folder, LatentStats(shift=-1.0, scale=3.0))
    meta = json.loads((folder / "config.json").read_text())["autoencoder"]
    assert "latent_shift" not in meta and meta["latent_stats"] == {"shift": -1.0, "scale": 3.0}
    assert meta["sampling"]["num_steps"] == 7
    after = read_weights(folder)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_save_pretrained_writes_nested_settings_and_stats_follow_the_model(tmp_path):
    ae = build_autoencoder(tiny_config())
    ae.latent_stats = LatentStats(shift=0.5, scale=4.0)
    assert ae.config.latent_stats == LatentStats(shift=0.5, scale=4.0)
    meta = json.loads((save_pretrained(ae, tmp_path) / "config.json").read_text())
    assert meta["autoencoder"]["latent_stats"] == {"shift": 0.5, "scale": 4.0}
    assert meta["autoencoder"]["sampling"] == {"num_steps": 50, "grid": "uniform", "power": 2.0, "solver": "euler"}
    assert (meta["latent"]["shift"], meta["latent"]["scale"]) == (0.5, 4.0)
