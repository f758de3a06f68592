"""Run state a checkpoint carries beyond weights, optimiser and step: every rank's random number
generators and the wall time of the segments before it.

Restoring the RNGs makes the noise and diffusion times a resumed run draws the ones the
uninterrupted run drew (the data position is the datamodule's, :mod:`core.data.resumable`).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist

__all__ = ["capture_rng_state", "restore_rng_state", "RunStateCallback"]

log = logging.getLogger("difftok")


def capture_rng_state() -> dict[str, Any]:
    """This process's torch (CPU and, once initialised, every CUDA device), numpy and Python RNG states,
    as tensors and plain containers (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _gathered(value: Any, world_size: int) -> list[Any]:
    """``value`` of every rank, in rank order (all ranks call this together)."""
    if world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return [value]
    values: list[Any] = [None] * world_size
    dist.all_gather_object(values, value)
    return values


def _pending_log_row(trainer: L.Trainer) -> dict[str, Any]:
    """The step's logged scalars that Lightning writes to the loggers only after the checkpoint hooks.

    Lightning has no public view of this row, hence its logger connector; the values are the ones
    Lightning itself would write (DDP-synchronised)."""
    connector = trainer._logger_connector
    step = trainer.fit_loop.epoch_loop._batches_that_stepped
    if not trainer.training or not connector.should_update_logs:
        return {"step": step, "metrics": {}}
    metrics = {k: float(v) for k, v in connector.metrics["log"].items()}
    return {"step": step, "metrics": {**metrics, "epoch": trainer.current_epoch}}


class RunStateCallback(L.Callback):
    """Puts every rank's RNG states and the run's total wall time into each checkpoint, and restores them.

    The states are captured when the checkpoint is written (after step N's optimiser and EMA update)
    and put back just before step N + 1 of the resumed run, so nothing the resume itself does (building
    the model, loaders, logging) shifts the random streams. Loggers are flushed with every checkpoint,
    and the checkpointed step's own log row (written by Lightning after the checkpoint) is kept in the
    checkpoint and written first by the resumed run, so the loss log has no gap whenever the kill comes.
    """

    def __init__(self, segment_start: float | None = None) -> None:
        self.segment_start = time.perf_counter() if segment_start is None else segment_start  # a time.perf_counter() value
        self.earlier_wall_time_s = 0.0  # segments before this one (from the resumed checkpoint)
        self.segments = 1
        self.pending_rng: dict[str, Any] | None = None  # this rank's states, applied at the first step
        self.pending_log_row: dict[str, Any] | None = None  # written into the resumed run's log at its start

    def total_wall_time_s(self) -> float:
        """Wall time of this segment plus the segments the resumed checkpoint descends from."""
        return self.earlier_wall_time_s + time.perf_counter() - self.segment_start

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = _gathered(capture_rng_state(), trainer.world_size)  # on every rank: dump_checkpoint runs on all
        checkpoint["difftok_run_state"] = {
            "rng_per_rank": states, "wall_time_s": self.total_wall_time_s(), "segments": self.segments,
            "pending_log": _pending_log_row(trainer),
        }
        for logger in trainer.loggers:
            logger.save()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("difftok_run_state")
        if saved is None:
            log.warning("the checkpoint holds no RNG state (written by an older difftok): the resumed run draws "
                        "other random numbers than the uninterrupted run would have")
            return
        self.earlier_wall_time_s, self.segments = float(saved["wall_time_s"]), int(saved["segments"]) + 1
        self.pending_log_row = saved.get("pending_log")
        states = saved["rng_per_rank"]
        if len(states) != trainer.world_size:
            log.warning("the checkpoint was written by %d rank(s), this run has %d: RNG states are not restored, the "
                        "resumed run is not an exact continuation", len(states), trainer.world_size)
            return
        self.pending_rng = states[trainer.global_rank]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = self.pending_log_row
        self.pending_log_row = None
        if row and row["metrics"]:  # the checkpointed step's losses, which a kill right after the checkpoint loses
            for logger in trainer.loggers:
                logger.log_metrics(row["metrics"], step=row["step"])

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.pending_rng is not None:
            restore_rng_state(self.pending_rng)
            self.pending_rng = None
