"""One owner per run folder: a lock file held for the whole run, and the rule that a fresh run does
not start in a folder an earlier run used.

The lock (``<output_dir>/.difftok.lock``) is an ``flock`` on a file naming the owner's PID and host.
The kernel drops an ``flock`` when its process dies (SIGKILL included), so a killed run never blocks
its own resume; a lock file naming a live process on this host, or any process on another host
(which cannot be checked from here), refuses the run with a message naming the owner. Only the
launching process of global rank 0 takes it: DDP workers of the same run share the folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "LOCK_NAME", "OutputFolderBusyError", "OutputFolderUsedError", "launch_rank_is_zero", "own_output_folder",
    "folder_was_used", "check_fresh_start", "clear_previous_outputs",
]

log = logging.getLogger("difftok")

LOCK_NAME = ".difftok.lock"
# what a run writes into its folder (overwrite=true removes exactly these)
RUN_OUTPUTS = ("checkpoints", "logs", "export", "previews", "samples", "config.yaml", "train_summary.json", "metrics.json")

_held: dict[Path, tuple[int, int]] = {}  # resolved folder -> (lock fd, nesting depth) for this process


class OutputFolderBusyError(RuntimeError):
    """Another live run owns the output folder."""


class OutputFolderUsedError(FileExistsError):
    """A fresh run was pointed at a folder that holds an earlier run."""


def launch_rank_is_zero() -> bool:
    """Whether this process will be global rank 0 (read from the launcher's environment, before any
    trainer exists): torchrun/SLURM set ``RANK``/``SLURM_PROCID``; Lightning's own launcher sets
    ``LOCAL_RANK`` (and ``NODE_RANK``) for the processes it starts."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        value = os.environ.get(name)
        if value not in (None, "") and int(value) != 0:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_owner(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        owner = json.loads(raw.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _busy(folder: Path, owner: dict) -> OutputFolderBusyError:
    who = f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, started {owner.get('started', '?')}"
    return OutputFolderBusyError(
        f"output folder {folder} is in use by another run ({who}). Wait for it to finish or stop it, or choose "
        f"another output_dir; if that run is certainly dead, delete {folder / LOCK_NAME}"
    )


def _acquire(folder: Path) -> int:
    """Open, lock and claim ``folder/LOCK_NAME``; returns the locked descriptor."""
    path = folder / LOCK_NAME
    host = socket.gethostname()
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            owner = _read_owner(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _busy(folder, owner) from None
            raise
        try:
            same_file = os.fstat(fd).st_ino == path.stat().st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # the previous owner removed the file between our open and lock: retry on the new one
            os.close(fd)
            continue
        owner = _read_owner(fd)
        pid = owner.get("pid")
        if owner and owner.get("host") != host:
            os.close(fd)  # flock may not reach across hosts on a shared file system: trust the file
            raise _busy(folder, owner)
        if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
            os.close(fd)  # file systems without flock: the named process still runs
            raise _busy(folder, owner)
        if owner:
            log.warning("taking over the stale lock of %s (pid %s on this host is gone)", folder, pid)
        record = {"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
        return fd


@contextlib.contextmanager
def own_output_folder(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder``'s lock for the block (created if missing); re-entrant within a process.

    Raises:
        OutputFolderBusyError: another live run holds it.
    """
    folder = Path(folder)
    if not launch_rank_is_zero():
        yield folder
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
    else:
        fd = _acquire(folder)
        _held[key] = (fd, 1)
    try:
        yield folder
    finally:
        fd, depth = _held[key]
        if depth > 1:
            _held[key] = (fd, depth - 1)
        else:
            del _held[key]
            (folder / LOCK_NAME).unlink(missing_ok=True)  # while still locked: no one can claim the old file
            os.close(fd)
            if created:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # a run that stopped before writing anything leaves no empty folder


def folder_was_used(folder: Path) -> list[str]:
    """The earlier-run outputs present in ``folder`` (empty: a fresh folder)."""
    found = [name for name in RUN_OUTPUTS if (folder / name).exists()]
    ckpt_dir = folder / "checkpoints"
    if "checkpoints" in found and not any(ckpt_dir.glob("*.ckpt")) and not any(ckpt_dir.glob(".*.tmp")):
        found.remove("checkpoints")
    return found


def check_fresh_start(folder: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse a fresh run (``trainer.resume`` unset) in a used folder unless ``overwrite``."""
    if overwrite and resume:
        raise ValueError(f"overwrite=true discards the run in {folder} but trainer.resume={resume} continues it; pass one of them")
    if resume or overwrite:
        return
    used = folder_was_used(folder)
    if used:
        raise OutputFolderUsedError(
            f"output folder {folder} holds an earlier run ({', '.join(used)}). Continue it with trainer.resume=auto "
            f"(or last / a checkpoint path), start over with overwrite=true (deletes those outputs), or choose another output_dir"
        )


def clear_previous_outputs(folder: Path) -> list[str]:
    """Delete the earlier run's outputs (:data:`RUN_OUTPUTS`) for ``overwrite=true``; other files stay."""
    removed = []
    for name in RUN_OUTPUTS:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    if removed:
        log.warning("overwrite=true: removed the earlier run's %s from %s", ", ".join(removed), folder)
    return removed
