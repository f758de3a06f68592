"""Which checkpoint a run continues from (``trainer.resume``).

- ``auto``: the newest loadable checkpoint of the run folder, or a fresh start when there is none
  (the setting for preemptible jobs: the same command starts and continues the run);
- ``last``: the newest loadable checkpoint; refused when there is none;
- a path: that checkpoint file, which must load;
- empty / None: a fresh run.

"Newest" is by global step over ``last*.ckpt`` and ``step_*.ckpt`` (a kill between writing the step
file and ``last.ckpt`` leaves the step file newer). A file that does not load (torn, truncated, zero
bytes) is skipped with a warning naming it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.training.checkpoint_io import load_checkpoint_file

__all__ = ["ResumeChoice", "checkpoint_candidates", "newest_checkpoint", "resolve_resume", "remove_stale_temp_files",
           "UnloadableCheckpointError"]

log = logging.getLogger("difftok")

RESUME_MODES = ("auto", "last")


class UnloadableCheckpointError(RuntimeError):
    """A checkpoint named by ``trainer.resume`` cannot be read."""


@dataclass(frozen=True)
class ResumeChoice:
    """The checkpoint a run continues from: its path, step and (memory-mapped) contents."""

    path: Path
    global_step: int
    checkpoint: dict[str, Any]


def checkpoint_candidates(ckpt_dir: Path) -> list[Path]:
    """``last*.ckpt`` and ``step_*.ckpt`` files of ``ckpt_dir``."""
    if not ckpt_dir.is_dir():
        return []
    return sorted([*ckpt_dir.glob("last*.ckpt"), *ckpt_dir.glob("step_*.ckpt")])


def _read(path: Path) -> ResumeChoice:
    """Load ``path`` memory-mapped (tensors are not read) and check it is a training checkpoint."""
    try:
        checkpoint = load_checkpoint_file(path, mmap=True)
    except Exception as err:  # torch raises many types for a torn zip / pickle
        raise UnloadableCheckpointError(f"checkpoint {path} cannot be loaded ({type(err).__name__}: {err})") from err
    if not isinstance(checkpoint, dict) or "global_step" not in checkpoint or "state_dict" not in checkpoint:
        raise UnloadableCheckpointError(f"{path} is not a Lightning training checkpoint (no global_step/state_dict)")
    return ResumeChoice(path, int(checkpoint["global_step"]), checkpoint)


def newest_checkpoint(ckpt_dir: Path) -> ResumeChoice | None:
    """The loadable checkpoint with the highest global step (a step file wins a tie with ``last``: it
    is never rewritten); unloadable files are skipped with a warning naming them."""
    best: ResumeChoice | None = None
    for path in checkpoint_candidates(ckpt_dir):
        try:
            choice = _read(path)
        except UnloadableCheckpointError as err:
            log.warning("skipping %s; resuming from the newest checkpoint that loads", err)
            continue
        rank = (choice.global_step, path.name.startswith("step_"))
        if best is None or rank > (best.global_step, best.path.name.startswith("step_")):
            best = choice
    return best


def resolve_resume(resume: str | None, ckpt_dir: Path) -> ResumeChoice | None:
    """The checkpoint ``trainer.resume`` asks for (see the module docstring), or None for a fresh start."""
    if not resume:
        return None
    if resume in RESUME_MODES:
        choice = newest_checkpoint(ckpt_dir)
        if choice is None and resume == "last":
            raise FileNotFoundError(
                f"trainer.resume=last but {ckpt_dir} holds no loadable checkpoint; use trainer.resume=auto to start "
                f"fresh when there is none, or trainer.resume=<path to a .ckpt>"
            )
        if choice is None:
            log.info("trainer.resume=auto: no checkpoint in %s, starting a fresh run", ckpt_dir)
        else:
            log.info("resuming from %s (step %d)", choice.path, choice.global_step)
        return choice
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"trainer.resume={resume} does not exist; pass 'auto', 'last' or a checkpoint path")
    return _read(path)


def remove_stale_temp_files(ckpt_dir: Path) -> list[Path]:
    """Delete the ``.*.tmp`` files killed checkpoint writes left behind (only the folder's owner may)."""
    stale = sorted(ckpt_dir.glob(".*.tmp")) if ckpt_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.warning("removed %d unfinished checkpoint write(s) of an earlier run: %s", len(stale), ", ".join(p.name for p in stale))
    return stale
