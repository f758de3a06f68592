"""A run killed with SIGKILL resumes from its last checkpoint with the same step/optimizer/EMA state."""

from __future__ import annotations

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


def experiment(out: str, demo: str, max_steps: int, resume: str | None = None):
    from core.training.config import DataConfig, EMAConfig, ExperimentConfig, OptimConfig, TrainerConfig
    from tests.conftest import tiny_config

    return ExperimentConfig(
        name="resume", seed=0, output_dir=out, model=tiny_config(),
        data=DataConfig(root=demo, size=16, batch_size=4, num_workers=0, options={"resize": 24, "cache": True}),
        optim=OptimConfig(lr=1e-3), ema=EMAConfig(enabled=True, decay=0.99, start_step=0),
        trainer=TrainerConfig(max_steps=max_steps, accelerator="cpu", log_every_n_steps=1, checkpoint_every_n_steps=2,
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
    last = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)
    saved_step = last["global_step"]
    assert saved_step >= 4 and saved_step % 2 == 0  # last.ckpt may lag the newest step file by one save

    from core.training.run import train

    capture = CaptureStart()
    result = train(experiment(str(out), str(demo_dir), max_steps=saved_step + 2, resume="last"), callbacks=[capture])
    assert capture.step == saved_step and result.global_step == saved_step + 2
    opt_state = last["optimizer_states"][0]["state"][0]["exp_avg"]
    torch.testing.assert_close(capture.exp_avg, opt_state)
    torch.testing.assert_close(capture.ema, last["state_dict"]["ema.shadow_0"])
    torch.testing.assert_close(capture.weight, next(v for k, v in last["state_dict"].items() if k.startswith("autoencoder.")))
    # the loss history of the killed run survives next to the resumed one
    from recipes.report import read_loss_curve, run_loss_logs

    logs = run_loss_logs(out)
    assert len(logs) == 2
    steps, values = read_loss_curve(logs)
    assert steps[0] == 0 and steps[-1] == saved_step + 1
    killed_steps, _ = read_loss_curve([logs[0]])
    assert len(killed_steps) >= saved_step - 2  # rows are flushed every logging step, up to the kill
