"""Test helper: one tiny training run through the recipe command, with an optional self-inflicted SIGKILL.

Run as ``python tests/fault_train.py <hydra overrides>`` with the run described by the JSON in
``DIFFTOK_FAULT_SPEC`` (an environment variable, so the DDP worker processes Lightning re-launches
from this command line see it too):

- ``kind``: ``folder`` / ``shard`` (tokenizer on a folder or streamed shards), ``latent`` (generator on
  a latent cache) or ``generator`` (generator encoding folder images on the fly);
- ``out``, ``data`` (folder, shard directory or latent cache), ``tokenizer`` (generators), ``max_steps``,
  ``every`` (checkpoint cadence), ``workers``, ``devices``;
- ``kill``: None, or ``{"at": how, "step": K}`` with ``how`` one of ``step`` (before step K trains),
  ``ckpt_write`` (half-way through writing the step-K checkpoint), ``before_last`` (after the step-K
  file, before ``last.ckpt``), ``hold`` (write ``<out>.holding`` at step K and wait to be killed).

The whole process group is killed, as a scheduler preempting the job would (every DDP rank).
After training, the recipe's report step writes ``report_rank<r>.json``: only global rank 0 may.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # the uninterrupted and the resumed runs must use the same kernels

SPEC = json.loads(os.environ["DIFFTOK_FAULT_SPEC"])


def die() -> None:
    os.killpg(os.getpgid(0), signal.SIGKILL)


class KillBeforeStep(L.Callback):
    def __init__(self, step: int, hold: bool) -> None:
        self.step, self.hold = step, hold

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        if self.hold:
            Path(SPEC["out"] + ".holding").write_text(str(os.getpid()))
            time.sleep(600)
        die()


class LocalLossRecorder(L.Callback):
    """Each rank's own (not yet averaged) loss per step, to check the logged value is their mean."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        path = Path(SPEC["out"] + f".losses_rank{trainer.global_rank}.jsonl")
        with path.open("a") as handle:
            handle.write(json.dumps({"step": trainer.global_step - 1, "loss": float(outputs["loss"])}) + "\n")


def install_checkpoint_faults(how: str, step: int) -> None:
    """Patch the checkpoint writer to die mid-write or between the step file and ``last.ckpt``."""
    import core.training.checkpoint_io as checkpoint_io

    if how == "ckpt_write":
        real_save = torch.save

        def torn_save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("global_step") == step:
                buffer = io.BytesIO()
                real_save(obj, buffer)
                data = buffer.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                die()
            return real_save(obj, f, *args, **kwargs)

        checkpoint_io.torch.save = torn_save
    elif how == "before_last":
        real = checkpoint_io.AtomicCheckpointIO.save_checkpoint

        def save(self, checkpoint, path, storage_options=None):
            if Path(path).name.startswith("last") and checkpoint.get("global_step") == step:
                die()
            return real(self, checkpoint, path, storage_options)

        checkpoint_io.AtomicCheckpointIO.save_checkpoint = save


def trainer_config():
    from core.training.config import TrainerConfig

    return TrainerConfig(max_steps=SPEC["max_steps"], accelerator="cpu", devices=SPEC.get("devices", 1),
                         strategy="ddp" if SPEC.get("devices", 1) > 1 else "auto", log_every_n_steps=1,
                         checkpoint_every_n_steps=SPEC.get("every", 3), preview_every_n_steps=0, progress_bar=False)


def tokenizer_config():
    from core.training.config import DataConfig, EMAConfig, ExperimentConfig, OptimConfig
    from tests.conftest import tiny_config

    options = {"resize": 24, "cache": True}
    if SPEC["kind"] == "shard":
        data = DataConfig(shards=SPEC["data"], size=16, batch_size=4, num_workers=SPEC.get("workers", 0),
                          options={**options, "samples_per_epoch": 24, "shuffle_buffer": 8})
    else:
        data = DataConfig(root=SPEC["data"], size=16, batch_size=4, num_workers=SPEC.get("workers", 0), options=options)
    return ExperimentConfig(name=f"fault_{SPEC['kind']}", seed=0, output_dir=SPEC["out"], model=tiny_config(), data=data,
                            optim=OptimConfig(lr=1e-3), ema=EMAConfig(enabled=True, decay=0.9, start_step=0),
                            trainer=trainer_config())


def generator_config():
    from core.builder import ComponentConfig
    from core.generation.config import GeneratorConfig
    from core.training.config import DataConfig, EMAConfig, OptimConfig
    from core.training.generator_config import GeneratorExperimentConfig, GeneratorSampleConfig
    from modalities.image.demo import DEMO_TRAIN

    latents = SPEC["data"] if SPEC["kind"] == "latent" else None
    data = DataConfig(root=None if latents else SPEC["data"], size=32, batch_size=4, num_workers=SPEC.get("workers", 0),
                      options={"resize": 32, "labels": "file", "cache": True})
    return GeneratorExperimentConfig(
        name=f"fault_{SPEC['kind']}", output_dir=SPEC["out"], tokenizer=SPEC["tokenizer"], latents=latents,
        generator=GeneratorConfig(net=ComponentConfig("dit_tiny_2"), num_classes=len(DEMO_TRAIN), sample_steps=2, cfg_scale=2.0), data=data,
        optim=OptimConfig(name="adamw", lr=1e-3, weight_decay=0.0), ema=EMAConfig(enabled=True, decay=0.9, warmup=False),
        trainer=trainer_config(), sample=GeneratorSampleConfig(count=0),
    )


def report(cfg, result) -> None:
    """The recipe's end-of-run step: it must see this run's export (written before it, on rank 0)."""
    rank = int(os.environ.get("LOCAL_RANK", 0))
    export = Path(cfg.output_dir) / "export"
    if not (export / "config.json").is_file():
        raise FileNotFoundError(f"rank {rank} reports before the export exists in {export}")
    (Path(cfg.output_dir) / f"report_rank{rank}.json").write_text(json.dumps({"global_step": result.global_step}))


def main() -> None:
    from core.training.cli import Recipe, run_recipe
    from core.training.generator_run import train_generator
    from core.training.run import train

    callbacks: list[L.Callback] = [LocalLossRecorder()] if SPEC.get("record_losses") else []
    kill = SPEC.get("kill")
    if kill:
        if kill["at"] in ("step", "hold"):
            callbacks.append(KillBeforeStep(kill["step"], hold=kill["at"] == "hold"))
        else:
            install_checkpoint_faults(kill["at"], kill["step"])
    generator = SPEC["kind"] in ("latent", "generator")
    train_fn = train_generator if generator else train
    recipe = Recipe(name=f"fault_{SPEC['kind']}", build_config=generator_config if generator else tokenizer_config,
                    after_train=report, train_fn=lambda cfg: train_fn(cfg, callbacks=callbacks))
    run_recipe(recipe, sys.argv[1:])


if __name__ == "__main__":
    main()
