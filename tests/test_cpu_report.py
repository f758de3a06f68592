"""The CPU recipes' report pieces: bundled demo photographs, held-out crops, the sharpness measure, the LR decay."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from modalities.image.demo import DEMO_TRAIN, DEMO_VAL, demo_photographs, export_demo_dataset
from modalities.image.sharpness import HighFrequencyEnergy, laplacian_energy
from recipes.image.report import held_out_crops
from recipes.lr_decay import LinearDecayToZero, decay_factor


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return demo_photographs()


def _thumbnail(array: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(array).convert("L").resize((32, 32), Image.BILINEAR), dtype=np.float64)


def test_demo_photographs_are_rgb_and_no_held_out_photo_is_in_training(photos):
    assert set(photos) == set(DEMO_TRAIN) | set(DEMO_VAL) and not set(DEMO_TRAIN) & set(DEMO_VAL)
    assert len(DEMO_TRAIN) >= 8 and "grace_hopper" in DEMO_VAL
    for name, array in photos.items():
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3 and min(array.shape[:2]) >= 300, name
    # skimage.data.cat is chelsea: a copy (or a resized copy) of a held-out photograph in training would leak it
    for held_out in DEMO_VAL:
        for name in DEMO_TRAIN:
            difference = np.abs(_thumbnail(photos[held_out]) - _thumbnail(photos[name])).mean()
            assert difference > 10, f"{name} looks like the held-out {held_out}"


def test_export_writes_the_split(tmp_path):
    root = export_demo_dataset(tmp_path)
    assert sorted(p.stem for p in (root / "train").glob("*.png")) == sorted(DEMO_TRAIN)
    assert sorted(p.stem for p in (root / "val").glob("*.png")) == sorted(DEMO_VAL)


def test_held_out_crops_tile_the_resized_photographs(tmp_path, photos):
    Image.fromarray(photos["coffee"]).save(tmp_path / "coffee.png")  # 600x400 -> 96x64 at shorter side 64
    crops = held_out_crops([tmp_path / "coffee.png"], size=32, resize=64)
    assert crops.shape == (6, 3, 32, 32)
    resized = Image.open(tmp_path / "coffee.png").convert("RGB").resize((96, 64), Image.LANCZOS)
    expected = torch.from_numpy(np.asarray(resized.crop((32, 32, 64, 64))).copy()).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(crops[4], expected)  # row 2, column 2
    with pytest.raises(ValueError, match="shorter side of at least 32"):
        held_out_crops([tmp_path / "coffee.png"], size=32, resize=16)


@pytest.mark.parametrize("recipe", ["quickstart", "ssdd_cpu_evidence"])
def test_the_cpu_recipes_score_at_least_64_held_out_crops(demo_dir, recipe):
    import importlib

    module = importlib.import_module(f"recipes.image.{recipe}")
    cfg = module.build_config()
    resize = module.REPORT_CROPS.resize or cfg.data.options["eval_resize"]
    assert len(held_out_crops(sorted((demo_dir / "val").glob("*.png")), size=module.REPORT_CROPS.size, resize=resize)) >= 64


def test_high_frequency_energy_tells_blur_from_speckle(photo_batch):
    blurred = F.avg_pool2d(F.pad(photo_batch, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    speckled = photo_batch + 0.1 * torch.randn(photo_batch.shape, generator=torch.Generator().manual_seed(0))
    scores = {}
    for name, images in (("same", photo_batch), ("blurred", blurred), ("speckled", speckled)):
        metric = HighFrequencyEnergy()
        metric.update(photo_batch[:2], images[:2])
        metric.update(photo_batch[2:], images[2:])  # batches accumulate
        scores[name] = metric.compute()
    assert scores["same"] == {"hf_ratio": 1.0}
    assert scores["blurred"]["hf_ratio"] < 0.7 and scores["speckled"]["hf_ratio"] > 1.3


def test_laplacian_energy_of_a_known_image_and_bad_shapes():
    ramp = torch.arange(5, dtype=torch.float64).expand(1, 1, 5, 5)  # linear: zero Laplacian
    checker = ((torch.arange(5)[:, None] + torch.arange(5)[None]) % 2).double().expand(1, 1, 5, 5)  # Laplacian ±4 everywhere
    assert laplacian_energy(ramp).item() == 0.0 and laplacian_energy(checker).item() == 16.0
    with pytest.raises(ValueError, match="at least 3x3"):
        laplacian_energy(torch.zeros(1, 3, 2, 8))
    with pytest.raises(ValueError, match="no images"):
        HighFrequencyEnergy().compute()


def test_linear_decay_to_zero_schedule_and_callback():
    assert [decay_factor(s, 100, 0.4) for s in (0, 60, 80, 99, 100)] == pytest.approx([1.0, 1.0, 0.5, 0.025, 0.0])
    assert decay_factor(50, 100, 1.0) == 0.5
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    callback = LinearDecayToZero(0.5)
    for step, expected in ((0, 0.2), (75, 0.1), (90, 0.04)):
        callback.on_train_batch_start(SimpleNamespace(global_step=step, max_steps=100, optimizers=[optimizer]), None, None, 0)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    assert optimizer.param_groups[0]["initial_lr"] == 0.2  # kept with the optimiser state: a resume continues the schedule
    with pytest.raises(ValueError, match=r"decay_fraction must be in \(0, 1\]"):
        LinearDecayToZero(0.0)
