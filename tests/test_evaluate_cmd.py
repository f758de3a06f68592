"""Offline evaluation command: stratified subsets, checkpoint loading, metrics.json, grid, PSNR definitions."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.builder import build_autoencoder
from core.data.subset import stratified_subset
from core.ema import EMA
from core.pretrained import save_pretrained
from core.training.checkpoint_load import load_autoencoder
from modalities.image.data import resize_shorter_side
from core.eval.selection import SourceData
from modalities.image.eval_suite import select_eval_images
from tests.conftest import tiny_config
from tests.image_folders import CLASS_FORMATS, write_class_folder


def _class_sorted_labels(sizes: list[int]) -> list[int]:
    """Labels laid out like a class-sorted folder listing (ImageNet val)."""
    return [c for c, n in enumerate(sizes) for _ in range(n)]


def test_stratified_subset_covers_classes_and_is_seeded():
    sizes = [10, 3, 7, 1, 9, 6]
    labels = _class_sorted_labels(sizes)
    picked = stratified_subset(labels, 6, seed=0)
    assert sorted(labels[i] for i in picked) == list(range(6))  # one per class, not the first classes
    twelve = stratified_subset(labels, 12, seed=0)
    counts = np.bincount([labels[i] for i in twelve], minlength=6)
    assert counts.min() >= 1 and counts.max() - min(counts[c] for c in range(6) if sizes[c] > 2) <= 1
    assert twelve[:6] == picked  # growing N keeps the earlier picks
    assert stratified_subset(labels, 12, seed=0) == twelve
    assert stratified_subset(labels, 12, seed=1) != twelve
    assert twelve != list(range(12))
    everything = stratified_subset(labels, 1000, seed=0)
    assert sorted(everything) == list(range(len(labels)))


def test_select_eval_images_from_class_folder(tmp_path):
    root = write_class_folder(tmp_path / "val", per_class=4, corrupt=False)
    selection = select_eval_images(SourceData(root=str(root)), 6, seed=0)
    assert selection.report["num_available"] == 12 and selection.report["num_classes"] == 3
    assert sorted({Path(r).parent.name for r in selection.refs}) == sorted(CLASS_FORMATS)
    assert [str(r) for r in select_eval_images(SourceData(root=str(root)), 6, seed=0).refs] == [str(r) for r in selection.refs]


def test_lightning_checkpoint_loads_ema_or_live_weights(tmp_path):
    torch.manual_seed(0)
    model = build_autoencoder(tiny_config())
    ema = EMA(model)
    for i, _ in enumerate(ema._names):  # an average that differs from the live weights
        getattr(ema, f"shadow_{i}").add_(0.5)
    state = {f"autoencoder.{k}": v for k, v in model.state_dict().items()}
    state |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "global_step": 7, "difftok": {"autoencoder": asdict(model.config)}}, path)
    averaged = load_autoencoder(path, modality="image")
    live = load_autoencoder(path, use_ema=False)
    assert (averaged.weights, live.weights, averaged.global_step) == ("ema", "live", 7)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(live.model.state_dict()[key], value)
    torch.testing.assert_close(averaged.model.state_dict(), ema.averaged_state_dict(model))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_pretrained(build_autoencoder(tiny_config()), tmp_path_factory.mktemp("tiny") / "export")


def _psnr(mse: np.ndarray) -> np.ndarray:
    return 10 * np.log10(255.0**2 / mse)


def test_evaluate_command_on_demo_photos(tiny_checkpoint, tmp_path):
    from recipes.image.evaluate import main

    out = tmp_path / "eval"
    main([f"checkpoint={tiny_checkpoint}", "data.demo=true", "num_images=2", "resolution=64", "steps=[1,2]",
          "batch_size=2", "seed=0", f"out={out}", "device=cpu", "num_workers=0", "save_arrays=true", "progress=false",
          "grid_count=2"])
    report = json.loads((out / "metrics.json").read_text())
    assert report["data"]["num_images"] == 2 and report["data"]["subset_seed"] == 0 and report["settings"]["steps"] == [1, 2]
    assert report["checkpoint"] == str(tiny_checkpoint.resolve()) and report["fid"]["computed"]
    assert any("LPIPS skipped" in n for n in report["notes"])
    arrays = np.load(out / "arrays.npz")
    original = arrays["original"].astype(np.float64)  # (2, 64, 64, 3)
    for n in (1, 2):
        metrics = report["metrics"][f"steps_{n}"]
        assert {"rfid", "psnr_mean_per_image", "psnr_dataset", "ssim"} <= set(metrics) and "lpips_vgg" not in metrics
        assert np.isfinite(metrics["rfid"]) and metrics["rfid"] > 0 and 0 < metrics["ssim"] < 1
        squared = (arrays[f"steps_{n}"].astype(np.float64) - original) ** 2
        assert metrics["psnr_mean_per_image"] == pytest.approx(_psnr(squared.reshape(2, -1).mean(1)).mean(), rel=1e-9)
        assert metrics["psnr_dataset"] == pytest.approx(_psnr(squared.mean()), rel=1e-9)
    # the originals are the eval transform of the subset's files: shorter side 64 (Lanczos), center crop
    files = [Path(line.split("\t")[0]) for line in (out / "subset.txt").read_text().splitlines()]
    for i, path in enumerate(files):
        image = resize_shorter_side(Image.open(path).convert("RGB"), 64)
        left, top = (image.width - 64) // 2, (image.height - 64) // 2
        np.testing.assert_array_equal(np.asarray(image.crop((left, top, left + 64, top + 64))), arrays["original"][i])
    grid = Image.open(out / "reconstructions.png")
    assert grid.size == (3 * 66 + 2, 2 * 66 + 2)  # one row per image: original | steps 1 | steps 2


def test_evaluate_rejects_unknown_keys(tiny_checkpoint):
    from recipes.image.evaluate import main

    with pytest.raises(SystemExit, match="num_imagez"):
        main([f"checkpoint={tiny_checkpoint}", "num_imagez=3"])


class _StubLPIPS(torch.nn.Module):
    """Stands in for modalities.image.lpips.LPIPS (same constructor and call): mean |x - y| per image."""

    def __init__(self, vgg_weights: str) -> None:
        super().__init__()
        self.vgg_weights = vgg_weights

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs().flatten(1).mean(1)


def test_lpips_is_computed_when_weights_are_given(tiny_checkpoint, tmp_path, monkeypatch):
    import sys
    import types

    from recipes.image.evaluate import main

    monkeypatch.setitem(sys.modules, "modalities.image.lpips", types.SimpleNamespace(LPIPS=_StubLPIPS))
    out = tmp_path / "eval"
    report = main([f"checkpoint={tiny_checkpoint}", "data.demo=true", "num_images=3", "resolution=32", "steps=1", "fid=false",
                   "lpips_vgg_weights=vgg.pth", f"out={out}", "device=cpu", "num_workers=0", "save_arrays=true", "progress=false"])
    arrays = np.load(out / "arrays.npz")
    expected = np.abs(arrays["steps_1"].astype(np.float64) - arrays["original"]).reshape(3, -1).mean(1).mean() / 127.5
    assert report["metrics"]["steps_1"]["lpips_vgg"] == pytest.approx(expected, rel=1e-5)
    assert "rfid" not in report["metrics"]["steps_1"] and not any("LPIPS skipped" in n for n in report["notes"])
