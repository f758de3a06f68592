"""Training stack: train(cfg) outputs, NaN stop, resume checks, corrupt data, optimisers, EMA."""

from __future__ import annotations

import random

import pytest
import torch

from core.ema import EMA
from core.loss_terms import LossTerm
from core.pretrained import CheckpointMismatchError, from_pretrained
from core.registry import LOSS_TERMS
from core.training.config import DataConfig, EMAConfig, ExperimentConfig, OptimConfig, TrainerConfig
from core.training.module import NonFiniteLossError
from core.training.run import train
from core.training.skeleton import per_device_batch_size
from tests.conftest import tiny_config


def tiny_experiment(tmp_path, data_root, **trainer_overrides) -> ExperimentConfig:
    trainer = dict(max_steps=3, accelerator="cpu", devices=1, log_every_n_steps=1, checkpoint_every_n_steps=2,
                   preview_every_n_steps=2, preview_count=2, preview_steps=2, progress_bar=False)
    trainer.update(trainer_overrides)
    return ExperimentConfig(
        name="tiny", seed=0, output_dir=str(tmp_path / "run"), model=tiny_config(),
        data=DataConfig(root=str(data_root), size=16, batch_size=4, num_workers=0, options={"resize": 24, "cache": True}),
        optim=OptimConfig(lr=1e-3), trainer=TrainerConfig(**trainer),
    )


def test_train_writes_checkpoints_export_logs_previews(tmp_path, demo_dir):
    result = train(tiny_experiment(tmp_path, demo_dir, eval_every_n_steps=2, eval_steps=[1, 2]))
    out = result.output_dir
    assert result.global_step == 3
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "checkpoints" / "step_0000002.ckpt").is_file()
    assert (out / "config.yaml").is_file() and (out / "train_summary.json").is_file()
    assert result.metrics_csv is not None and "train/fm" in result.metrics_csv.read_text().splitlines()[0]
    assert list((out / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert result.previews and all(p.is_file() for p in result.previews)
    # periodic held-out evaluation at step 2 and at the end (step 3), for both step counts
    from recipes.report import read_loss_curve

    for key in ("eval/psnr_steps1", "eval/psnr_steps2", "eval/ssim_steps1"):
        steps, values = read_loss_curve(result.metrics_csv, key)
        assert steps == [2, 3] and all(0 < v < 100 for v in values), (key, steps, values)
    tokenizer = from_pretrained(result.export_dir, modality="image")
    x = next(iter(result.datamodule.train_dataloader()))["x"]
    assert x.shape == (4, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert tokenizer.reconstruct(x, 2).sample.shape == x.shape
    assert not list((out / "checkpoints").glob(".*.tmp")), "temporary checkpoint files left behind"


class NaNAfter(LossTerm):
    """Test-only term that turns NaN on its third call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, inputs):
        self.calls += 1
        value = inputs.x0_hat.abs().mean() * 0
        return value + (float("nan") if self.calls >= 3 else 0.0)


def test_nan_loss_stops_with_step_number(tmp_path, demo_dir):
    from core.builder import LossTermConfig

    LOSS_TERMS.add("test_nan_after", NaNAfter, override=True)
    try:
        cfg = tiny_experiment(tmp_path, demo_dir, max_steps=10)
        cfg.model.loss_terms = {"test_nan_after": LossTermConfig(weight=1.0)}
        with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 2: .*test_nan_after"):
            train(cfg)
    finally:
        LOSS_TERMS.remove("test_nan_after")


def test_resume_with_other_architecture_is_refused(tmp_path, demo_dir):
    train(tiny_experiment(tmp_path, demo_dir, max_steps=2))
    cfg = tiny_experiment(tmp_path, demo_dir, max_steps=4, resume="last")
    cfg.model.decoder.kwargs["stage_channels"] = [8, 16, 32]
    with pytest.raises(CheckpointMismatchError, match="different model.*decoder"):
        train(cfg)


def test_global_batch_must_divide_over_devices():
    assert per_device_batch_size(64, 8, 1) == 8 and per_device_batch_size(64, 8, 4) == 2
    with pytest.raises(ValueError, match="not divisible by 3"):
        per_device_batch_size(64, 3, 1)


def test_corrupt_images_are_skipped_counted_and_training_continues(tmp_path, demo_dir, caplog):
    import shutil

    root = tmp_path / "images"
    shutil.copytree(demo_dir / "train", root)
    (root / "garbage.png").write_bytes(random.Random(0).randbytes(500))
    (root / "empty.jpg").write_bytes(b"")
    good = (root / "astronaut.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 3])
    cfg = tiny_experiment(tmp_path, root, max_steps=2, preview_every_n_steps=0)
    with caplog.at_level("WARNING", logger="difftok.image"):
        result = train(cfg)
    assert result.global_step == 2
    skipped = result.datamodule.skipped
    assert sorted(p.rsplit("/", 1)[-1] for p in skipped) == ["empty.jpg", "garbage.png", "truncated.png"]
    assert "skipped 3 unreadable image file(s)" in caplog.text


def test_dataset_skips_files_that_break_after_the_scan(tmp_path, demo_dir):
    from modalities.image.data import ImageFolderDataset, ImageTransform

    bad = tmp_path / "late.png"
    bad.write_bytes(b"not an image")
    files = [bad, demo_dir / "train" / "rocket.png"]
    ds = ImageFolderDataset(files, ImageTransform(16, 24, train=True))
    sample = ds[0]
    assert sample["key"] == "rocket" and str(bad) in ds.skipped


def test_schedule_free_optimizer_and_ema_export(tmp_path, demo_dir):
    cfg = tiny_experiment(tmp_path, demo_dir, max_steps=3, preview_every_n_steps=0)
    cfg.optim = OptimConfig(name="radam_schedulefree", lr=1e-3, weight_decay=1e-2, no_decay_patterns=["*bias*"], grad_clip=0.1)
    cfg.ema = EMAConfig(enabled=True, decay=0.9, start_step=1)
    result = train(cfg)
    module = result.module
    opt = module.trainer.optimizers[0]
    assert type(opt).__name__ == "RAdamScheduleFree" and len(opt.param_groups) == 2
    assert opt.param_groups[1]["weight_decay"] == 0.0
    exported = from_pretrained(result.export_dir)
    ema_state = module.ema.averaged_state_dict(module.autoencoder)
    for key, value in exported.state_dict().items():
        torch.testing.assert_close(value, ema_state[key])


def test_ema_warmup_and_start_step():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.999, start_step=5)
    assert ema.decay_at(3) == 0.0
    assert ema.decay_at(5) == pytest.approx(1 / 10) and ema.decay_at(15) == pytest.approx(11 / 20)
    assert ema.decay_at(10**7) == 0.999
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, step=0)  # before start: plain copy
    assert torch.equal(ema.averaged_state_dict(model)["weight"], model.weight)
    old = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model, step=5)  # decay 0.1
    torch.testing.assert_close(ema.averaged_state_dict(model)["weight"], 0.1 * old + 0.9 * model.weight)
    with ema.swapped_into(model):
        assert not torch.equal(model.weight, torch.full_like(model.weight, 3.0))
    assert torch.equal(model.weight, torch.full_like(model.weight, 3.0))


def test_precision_auto_is_fp32_on_cpu():
    from core.training.skeleton import resolve_precision

    expected = "bf16-mixed" if torch.cuda.is_available() else "32-true"
    assert resolve_precision("auto") == expected and resolve_precision("16-mixed") == "16-mixed"


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    from core.training.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, target)
    assert torch.load(target, weights_only=True)["step"] == 1

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["step"] == 1  # the old checkpoint survives intact
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_losses_stay_fp32_under_bf16_autocast_and_match_fp32():
    """The CUDA path trains under bf16 autocast; the CPU check runs the same code under CPU autocast."""
    torch.manual_seed(0)
    from core.builder import build_autoencoder

    ae = build_autoencoder(tiny_config())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    ref = ae.training_losses(x, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = ae.training_losses(x, generator=torch.Generator().manual_seed(0))
    assert low["fm"].dtype == torch.float32 and low["loss"].dtype == torch.float32
    torch.testing.assert_close(low["fm"], ref["fm"], rtol=0.05, atol=1e-3)


def test_dataclass_configs_are_resolved_and_validated():
    from core.training.run import to_experiment_config

    assert to_experiment_config(ExperimentConfig(name="abc")).output_dir == "outputs/abc"
    merged = to_experiment_config({"name": "x", "trainer": {"max_steps": 5}})
    assert merged.trainer.max_steps == 5 and merged.output_dir == "outputs/x"
    from omegaconf.errors import ConfigKeyError

    with pytest.raises(ConfigKeyError, match="max_stepz"):
        to_experiment_config({"trainer": {"max_stepz": 5}})


def test_crop_larger_than_resize_is_a_config_error(tmp_path, demo_dir):
    from modalities.image.data import ImageDataModule

    cfg = tiny_experiment(tmp_path, demo_dir).data
    cfg.options = {"resize": 8}
    with pytest.raises(ValueError, match="must be at least the crop sizes"):
        ImageDataModule(cfg)


def test_previews_and_evaluation_do_not_change_training(tmp_path, demo_dir):
    plain = train(tiny_experiment(tmp_path / "a", demo_dir, preview_every_n_steps=0, eval_every_n_steps=0))
    watched = train(tiny_experiment(tmp_path / "b", demo_dir, preview_every_n_steps=1, eval_every_n_steps=1))
    a, b = from_pretrained(plain.export_dir).state_dict(), from_pretrained(watched.export_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ema_can_be_switched_on_or_off_at_resume(tmp_path, demo_dir):
    import lightning as L

    first = train(tiny_experiment(tmp_path, demo_dir, max_steps=2, preview_every_n_steps=0))
    saved = torch.load(first.checkpoint_dir / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]

    class Capture(L.Callback):
        def on_train_start(self, trainer, pl_module):
            self.shadow = pl_module.ema.shadow_0.clone()

    capture = Capture()
    cfg = tiny_experiment(tmp_path, demo_dir, max_steps=4, preview_every_n_steps=0, resume="last")
    cfg.ema = EMAConfig(enabled=True, decay=0.99)
    second = train(cfg, callbacks=[capture])
    first_key = next(k for k, v in saved.items() if k.startswith("autoencoder.") and v.dtype.is_floating_point)
    torch.testing.assert_close(capture.shadow, saved[first_key].float())  # average starts at the checkpoint
    assert second.global_step == 4
    off = tiny_experiment(tmp_path, demo_dir, max_steps=5, preview_every_n_steps=0, resume="last")
    assert train(off).global_step == 5  # EMA weights in the checkpoint are dropped with a warning


def test_random_shorter_side_scale_augmentation():
    from PIL import Image

    from modalities.image.data import ImageTransform

    image = Image.new("RGB", (300, 200))
    fixed = ImageTransform(64, 96, train=True)
    scaled = ImageTransform(64, 96, train=True, resize_max=192)
    rng = random.Random(0)
    sides = {scaled.target_side(rng) for _ in range(200)}
    assert min(sides) >= 96 and max(sides) <= 192 and len(sides) > 20
    assert {fixed.target_side(rng) for _ in range(10)} == {96}
    assert ImageTransform(64, 96, train=False, resize_max=192).target_side(rng) == 96  # eval never rescales
    assert scaled(image, rng).shape == (3, 64, 64)


def _frozen_child_is_kept_out(module, name: str) -> None:
    child = getattr(module, name)
    assert list(child.parameters()) == [] and child.state_dict() == {}
    assert not [k for k in module.state_dict() if k.startswith(f"{name}.")]  # never in checkpoints
    assert {id(p) for p in module.parameters()} == {id(p) for p in module.trained_model.parameters()}  # nothing else trains
    module.train()
    assert module.trained_model.training and not any(m.training for m in child.modules())  # eval across .train()


def test_teacher_and_tokenizer_are_frozen_children_of_both_modules():
    from core.builder import ComponentConfig, build_autoencoder
    from core.generation.config import GeneratorConfig, build_generator
    from core.training.generator_module import GeneratorModule
    from core.training.module import TokenizerModule

    teacher, student = build_autoencoder(tiny_config()), build_autoencoder(tiny_config())
    expected = {k: v.clone() for k, v in teacher.state_dict().items()}
    distilling = TokenizerModule(student, OptimConfig(), teacher=teacher)
    _frozen_child_is_kept_out(distilling, "teacher")
    frozen_values = dict(distilling.teacher.named_buffers())
    assert all(torch.equal(frozen_values[k], v) for k, v in expected.items())  # frozen, not reset

    generator = build_generator(GeneratorConfig(net=ComponentConfig("dit_tiny_2"), latent_size=[4, 4], num_classes=2))
    on_the_fly = GeneratorModule(generator, OptimConfig(), tokenizer=build_autoencoder(tiny_config()))
    _frozen_child_is_kept_out(on_the_fly, "tokenizer")
