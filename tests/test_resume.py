"""Resume mechanics in-process: a SIGKILLed run continues from its newest checkpoint, torn and empty
checkpoints are skipped by name, ``weights_only`` holds against a crafted file, the resume modes,
the final-step checkpoint and file modes, and the resumable sampler. (Bit-exact kill-and-resume
runs are tests/test_fault_injection.py.)"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from core.training.resume import UnloadableCheckpointError, newest_checkpoint, resolve_resume

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from tests.test_resume import experiment
    from core.training.run import train
    train(experiment({out!r}, {demo!r}, max_steps=int(sys.argv[1]), resume=sys.argv[2] if len(sys.argv) > 2 else None))
    """
)


def experiment(out: str, demo: str, max_steps: int, resume: str | None = None, every: int = 2):
    from core.training.config import DataConfig, EMAConfig, ExperimentConfig, OptimConfig, TrainerConfig
    from tests.conftest import tiny_config

    return ExperimentConfig(
        name="resume", seed=0, output_dir=out, model=tiny_config(),
        data=DataConfig(root=demo, size=16, batch_size=4, num_workers=0, options={"resize": 24, "cache": True}),
        optim=OptimConfig(lr=1e-3), ema=EMAConfig(enabled=True, decay=0.99, start_step=0),
        trainer=TrainerConfig(max_steps=max_steps, accelerator="cpu", log_every_n_steps=1, checkpoint_every_n_steps=every,
                              preview_every_n_steps=0, resume=resume, progress_bar=False),
    )


class CaptureStart(L.Callback):
    def on_train_start(self, trainer, pl_module):
        opt = trainer.optimizers[0]
        first = opt.param_groups[0]["params"][0]
        self.step = trainer.global_step
        self.exp_avg = opt.state[first]["exp_avg"].clone()
        self.ema = pl_module.ema.shadow_0.clone()
        self.weight = next(pl_module.autoencoder.parameters()).detach().clone()


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, demo_dir):
    out = tmp_path / "run"
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT.format(root=str(ROOT), out=str(out), demo=str(demo_dir)))
    proc = subprocess.Popen([sys.executable, str(script), "100000"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt_dir = out / "checkpoints"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and not (ckpt_dir / "step_0000006.ckpt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        assert (ckpt_dir / "step_0000006.ckpt").exists(), "training never reached step 6"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    newest = newest_checkpoint(ckpt_dir)
    assert newest is not None and newest.global_step >= 6 and newest.global_step % 2 == 0
    saved_step = newest.global_step
    saved = torch.load(newest.path, map_location="cpu", weights_only=True)

    from core.training.run import train

    capture = CaptureStart()
    result = train(experiment(str(out), str(demo_dir), max_steps=saved_step + 2, resume="last"), callbacks=[capture])
    assert capture.step == saved_step and result.global_step == saved_step + 2
    torch.testing.assert_close(capture.exp_avg, saved["optimizer_states"][0]["state"][0]["exp_avg"])
    torch.testing.assert_close(capture.ema, saved["state_dict"]["ema.shadow_0"])
    torch.testing.assert_close(capture.weight, next(v for k, v in saved["state_dict"].items() if k.startswith("autoencoder.")))
    # the loss history of the killed run survives next to the resumed one
    from recipes.report import read_loss_curve, run_loss_logs

    logs = run_loss_logs(out)
    assert len(logs) == 2
    steps, _ = read_loss_curve(logs)
    assert steps == list(range(saved_step + 2))
    killed_steps, _ = read_loss_curve([logs[0]])
    assert killed_steps[-1] >= saved_step - 2  # flushed with every checkpoint (its own step's row goes to the next segment)


def test_torn_and_empty_checkpoints_are_skipped_by_name(tmp_path, demo_dir, caplog):
    from core.training.run import train

    out = tmp_path / "run"
    train(experiment(str(out), str(demo_dir), max_steps=4))
    ckpt_dir = out / "checkpoints"
    good = (ckpt_dir / "step_0000004.ckpt").read_bytes()
    (ckpt_dir / "step_0000006.ckpt").write_bytes(good[: len(good) // 2])  # torn by a crash outside the atomic writer
    (ckpt_dir / "last.ckpt").write_bytes(b"")
    (ckpt_dir / ".step_0000008.ckpt.abc.tmp").write_bytes(good[:100])  # a killed write
    with caplog.at_level(logging.WARNING, logger="difftok"):
        choice = newest_checkpoint(ckpt_dir)
    assert choice is not None and choice.path.name == "step_0000004.ckpt" and choice.global_step == 4
    assert "step_0000006.ckpt cannot be loaded" in caplog.text and "last.ckpt cannot be loaded" in caplog.text
    result = train(experiment(str(out), str(demo_dir), max_steps=6, resume="last"))
    assert result.global_step == 6
    assert not list(ckpt_dir.glob(".*.tmp")) and not list(ckpt_dir.glob("*-v*.ckpt"))
    assert torch.load(ckpt_dir / "step_0000006.ckpt", weights_only=True)["global_step"] == 6  # the torn file is rewritten


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['DIFFTOK_EXPLOIT_MARKER']}",))


def test_checkpoints_load_weights_only_even_when_the_environment_says_otherwise(tmp_path, monkeypatch):
    from core.training.checkpoint_io import AtomicCheckpointIO

    marker = tmp_path / "pwned"
    monkeypatch.setenv("DIFFTOK_EXPLOIT_MARKER", str(marker))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    crafted = tmp_path / "crafted.ckpt"
    torch.save({"global_step": 1, "state_dict": {}, "payload": _Exploit()}, crafted)
    with pytest.raises(UnloadableCheckpointError, match="crafted.ckpt cannot be loaded"):
        resolve_resume(str(crafted), tmp_path)
    with pytest.raises(Exception):
        AtomicCheckpointIO().load_checkpoint(crafted)
    with pytest.raises(ValueError, match="weights_only=True only"):
        AtomicCheckpointIO().load_checkpoint(crafted, weights_only=False)
    assert not marker.exists(), "loading a checkpoint ran code"


def test_resume_modes(tmp_path):
    empty = tmp_path / "checkpoints"
    assert resolve_resume(None, empty) is None and resolve_resume("auto", empty) is None
    with pytest.raises(FileNotFoundError, match="resume=last but .* holds no loadable checkpoint; use trainer.resume=auto"):
        resolve_resume("last", empty)
    with pytest.raises(FileNotFoundError, match="does not exist; pass 'auto', 'last' or a checkpoint path"):
        resolve_resume(str(tmp_path / "missing.ckpt"), empty)


def test_every_zero_keeps_only_the_final_checkpoint_with_the_umask_mode(tmp_path, demo_dir):
    from core.training.run import train

    out = tmp_path / "run"
    result = train(experiment(str(out), str(demo_dir), max_steps=3, every=0))
    names = sorted(p.name for p in result.checkpoint_dir.glob("*.ckpt"))
    assert names == ["last.ckpt", "step_0000003.ckpt"]
    mask = os.umask(0o022)
    os.umask(mask)
    for path in result.checkpoint_dir.glob("*.ckpt"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, (path, oct(path.stat().st_mode))


def test_final_step_is_checkpointed_off_the_cadence(tmp_path, demo_dir):
    from core.training.run import train

    result = train(experiment(str(tmp_path / "run"), str(demo_dir), max_steps=5, every=2))
    names = sorted(p.name for p in result.checkpoint_dir.glob("*.ckpt"))
    assert names == ["last.ckpt", "step_0000002.ckpt", "step_0000004.ckpt", "step_0000005.ckpt"]
    assert torch.load(result.checkpoint_dir / "last.ckpt", weights_only=True)["global_step"] == 5


def test_resumable_sampler_continues_the_uninterrupted_order():
    from core.data.resumable import ResumableSampler

    def draws(start_batch: int, epochs: int, rank: int = 0, world: int = 1) -> list[tuple[int, int]]:
        sampler = ResumableSampler(10, 2, seed=5, rank=rank, world_size=world, start_batch=start_batch)
        return [item for _ in range(epochs) for item in sampler]

    full = draws(0, 3)
    assert len(full) == 30 and len({d for _, d in full}) == 30  # every draw numbered once
    assert sorted(i for i, _ in full[:10]) == list(range(10)) and full[:10] != full[10:20]  # a new permutation per epoch
    for start in (1, 5, 7):  # mid-epoch and on an epoch boundary
        assert draws(start, 3)[: 30 - 2 * start] == full[2 * start:]
    ranks = [draws(0, 1, r, 2) for r in (0, 1)]
    assert not {i for i, _ in ranks[0]} & {i for i, _ in ranks[1]}  # ranks split each epoch
    with pytest.raises(ValueError, match="cannot fill one batch"):
        ResumableSampler(3, 2, world_size=2)
