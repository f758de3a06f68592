"""Run modes beyond plain training: init from earlier weights, frozen shared encoder, distillation."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from core.builder import build_autoencoder
from core.pretrained import CheckpointMismatchError, save_pretrained
from core.distill import DistillationConfig
from core.training.config import DistillConfig, InitConfig
from core.training.run import train
from tests.conftest import tiny_config
from tests.test_training import tiny_experiment


@pytest.fixture
def source_export(tmp_path):
    """A tokenizer folder with weights unlike a fresh build (so 'loaded' is distinguishable)."""
    torch.manual_seed(123)
    model = build_autoencoder(tiny_config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return save_pretrained(model, tmp_path / "source")


def _weights(directory):
    return load_file(str(directory / "model.safetensors"))


def test_frozen_shared_encoder_is_loaded_and_never_updated(tmp_path, demo_dir, source_export):
    cfg = tiny_experiment(tmp_path, demo_dir, max_steps=3, preview_every_n_steps=0)
    cfg.optim.weight_decay = 0.1  # decoupled decay would move frozen weights if they reached the optimiser
    cfg.init = InitConfig(encoder_weights=str(source_export), freeze_encoder=True)
    result = train(cfg)
    source, trained = _weights(source_export), _weights(result.export_dir)
    encoder_keys = [k for k in source if k.startswith("encoder.")]
    decoder_keys = [k for k in source if k.startswith("decoder.")]
    assert encoder_keys and all(torch.equal(source[k], trained[k]) for k in encoder_keys)
    fresh = build_autoencoder(tiny_config()).state_dict()
    assert any(not torch.equal(fresh[k], trained[k]) for k in decoder_keys)  # the decoder did train
    assert all(not torch.equal(source[k], trained[k]) for k in decoder_keys if k.endswith("weight"))  # not taken from source


def test_init_weights_must_match_the_model(tmp_path, demo_dir, source_export):
    cfg = tiny_experiment(tmp_path, demo_dir, max_steps=1, preview_every_n_steps=0)
    cfg.model.decoder.kwargs = {**cfg.model.decoder.kwargs, "stage_channels": [8, 16, 32]}
    cfg.init = InitConfig(weights=str(source_export))
    with pytest.raises(CheckpointMismatchError, match="does not fit"):
        train(cfg)


def test_distillation_run_trains_a_one_step_student_from_the_teacher(tmp_path, demo_dir, source_export):
    cfg = tiny_experiment(tmp_path, demo_dir, max_steps=3, preview_every_n_steps=0, eval_every_n_steps=3, eval_steps=[1])
    cfg.model.sampling.num_steps = 1
    cfg.distill = DistillConfig(enabled=True, teacher=str(source_export), sampling=DistillationConfig(teacher_steps=3))
    result = train(cfg)
    module = result.module
    assert module.teacher is not None and not module.teacher.training
    assert list(module.teacher.parameters()) == []  # frozen: constants only, nothing for the optimiser
    source, student = _weights(source_export), _weights(result.export_dir)
    assert all(torch.equal(source[k], student[k]) for k in source if k.startswith("encoder."))  # encoder frozen
    changed = [k for k in source if k.startswith("decoder.") and not torch.equal(source[k], student[k])]
    assert changed, "the student decoder did not move away from the teacher"
    header = (result.metrics_csv.read_text().splitlines() or [""])[0]
    assert "train/distill_mse" in header and "eval/psnr_steps1" in header
    ckpt = torch.load(result.checkpoint_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert not [k for k in ckpt["state_dict"] if k.startswith("teacher.")]


def test_distillation_needs_a_teacher(tmp_path, demo_dir):
    cfg = tiny_experiment(tmp_path, demo_dir, max_steps=1)
    cfg.distill = DistillConfig(enabled=True)
    with pytest.raises(ValueError, match="distill.teacher"):
        train(cfg)


class CaptureStartWeights(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.state = {k: v.detach().clone() for k, v in pl_module.autoencoder.state_dict().items()}


def test_distillation_resumes_from_a_checkpoint_without_the_teacher(tmp_path, demo_dir, source_export):
    def cfg(max_steps, resume=None):
        c = tiny_experiment(tmp_path, demo_dir, max_steps=max_steps, preview_every_n_steps=0, checkpoint_every_n_steps=2, resume=resume)
        c.distill = DistillConfig(enabled=True, teacher=str(source_export), sampling=DistillationConfig(teacher_steps=2))
        return c

    first = train(cfg(2))
    last = torch.load(first.checkpoint_dir / "last.ckpt", map_location="cpu", weights_only=False)
    capture = CaptureStartWeights()
    resumed = train(cfg(4, resume="last"), callbacks=[capture])
    assert capture.step == 2 and resumed.global_step == 4
    saved = {k.removeprefix("autoencoder."): v for k, v in last["state_dict"].items() if k.startswith("autoencoder.")}
    assert all(torch.equal(capture.state[k], saved[k]) for k in saved)


def test_checkpoint_ema_is_current_with_its_weights(tmp_path, demo_dir):
    """The EMA saved in a checkpoint already includes that step's update (it equals the export)."""
    from core.training.config import EMAConfig

    cfg = tiny_experiment(tmp_path, demo_dir, max_steps=2, preview_every_n_steps=0, checkpoint_every_n_steps=2)
    cfg.ema = EMAConfig(enabled=True, decay=0.9, start_step=0, warmup=False)
    result = train(cfg)
    ckpt = torch.load(result.checkpoint_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["state_dict"]["ema.num_updates"].item() == 2 if "ema.num_updates" in ckpt["state_dict"] else True
    exported = _weights(result.export_dir)
    names = result.module.ema._names
    for i, key in enumerate(names):
        torch.testing.assert_close(ckpt["state_dict"][f"ema.shadow_{i}"], exported[key].float())
