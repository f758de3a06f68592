"""``python -m recipes.image.latent_stats``: stats of a tiny KL tokenizer on the bundled demo photographs."""

from __future__ import annotations

import json

import pytest
import torch

from core.builder import ComponentConfig, build_autoencoder
from core.pretrained import from_pretrained, save_pretrained
from modalities.image.data import ImageTransform, open_image
from core.eval.selection import SourceData
from modalities.image.eval_suite import select_eval_images
from recipes.image.latent_stats import main
from tests.conftest import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _independent_latents(tok, num_images: int, size: int, seed: int) -> torch.Tensor:
    """The same subset, center-cropped, encoded in ONE batch and sampled with a generator seeded by ``seed``."""
    refs = select_eval_images(SourceData(demo=True), num_images, seed).refs
    transform = ImageTransform(size, size, train=False)
    x = torch.stack([transform(open_image(ref), rng=None) for ref in refs])
    return tok.encode(x).latent_dist.sample(torch.Generator().manual_seed(seed))


def test_latent_stats_command_writes_stats_into_the_tokenizer(tmp_path, capsys):
    torch.manual_seed(0)
    tok = build_autoencoder(tiny_config(regularizer=ComponentConfig("kl"))).eval()
    export = save_pretrained(tok, tmp_path / "export")
    weights_before = (export / "model.safetensors").read_bytes()
    args = [f"tokenizer={export}", "data.demo=true", "num_images=4", "size=32", "batch_size=4", "seed=3", "num_workers=0", "progress=false"]

    copy = tmp_path / "with_stats"
    report = main(args + [f"out={copy}"])
    assert from_pretrained(export).latent_stats.to_dict() == {"shift": 0.0, "scale": 1.0}  # out= leaves the source alone
    z = _independent_latents(tok, 4, 32, seed=3).double()
    assert report["latent"] == "sample" and report["num_images"] == 4
    assert report["shift"] == pytest.approx(z.mean().item(), rel=1e-9, abs=1e-12)
    assert report["scale"] == pytest.approx(z.std(unbiased=False).item(), rel=1e-9)
    torch.testing.assert_close(torch.tensor(report["channel_mean"], dtype=torch.float64), z.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(torch.tensor(report["channel_std"], dtype=torch.float64), z.std(dim=(0, 2, 3), unbiased=False))
    assert "latent_dist.sample()" in capsys.readouterr().out

    in_place = main(args)  # default: update the tokenizer folder itself
    assert (in_place["shift"], in_place["scale"]) == (report["shift"], report["scale"])
    assert (export / "model.safetensors").read_bytes() == weights_before
    for folder in (export, copy):
        loaded = from_pretrained(folder)
        assert (loaded.latent_stats.shift, loaded.latent_stats.scale) == (report["shift"], report["scale"])
        saved = json.loads((folder / "latent_stats.json").read_text())
        assert (saved["shift"], saved["scale"], saved["num_images"]) == (report["shift"], report["scale"], 4)
        meta = json.loads((folder / "config.json").read_text())
        assert meta["latent"]["shift"] == report["shift"] and meta["extra"]["latent_stats"]["latent"] == "sample"
    x = torch.zeros(1, 3, 16, 16)
    torch.testing.assert_close(loaded.normalize_latents(x), (x - report["shift"]) / report["scale"])


def test_latent_stats_command_uses_the_mode_of_deterministic_latents(tmp_path, capsys):
    torch.manual_seed(0)
    export = save_pretrained(build_autoencoder(tiny_config()), tmp_path / "export")  # LayerNorm latent
    report = main([f"tokenizer={export}", "data.demo=true", "num_images=2", "size=32", "num_workers=0", "progress=false"])
    assert report["latent"] == "mode" and "latent_dist.mode()" in capsys.readouterr().out
    # LayerNorm latents are normalised per sample already: dataset mean 0, std 1
    assert abs(report["shift"]) < 1e-6 and report["scale"] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="not a save_pretrained folder"):
        main([f"tokenizer={export / 'model.safetensors'}", "data.demo=true"])
