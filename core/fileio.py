"""Atomic file writes: readers never see a half-written file (write to a temp file, fsync, rename).

Permissions: the temp file is created as ``open()`` creates files, 0666 minus the process umask
(0644 under the usual umask 022, 0600 under 077), so every exported file (weights, config.json, shard
index, demo images) gets the same mode. ``tempfile.mkstemp`` would make them all 0600 whatever the umask.
Temp files are named ``.<name>.<random>.tmp`` next to the target and removed when the write fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_output", "atomic_write_bytes", "atomic_write_text"]


def _create_temp(path: Path) -> Path:
    """A new, empty temp file beside ``path``, created with the umask honoured (mode 0666 & ~umask)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:  # a 32-bit random name taken: draw another
            continue


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temp path to write ``path``'s content to (by any writer that takes a path); when the block
    ends without error the temp file is fsynced and renamed onto ``path``, otherwise removed.

    Args:
        path: the final file.
        mode: force these permissions; None keeps 0666 minus the umask (see the module docstring).
    """
    path = Path(path)
    tmp = _create_temp(path)
    created_mode = stat.S_IMODE(os.stat(tmp).st_mode)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        # set again: some writers (safetensors' save_file) replace the file with a 0600 one of their own
        os.chmod(tmp, created_mode if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically (permissions as in :func:`atomic_output`)."""
    with atomic_output(path, mode=mode) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, mode: int | None = None) -> None:
    """UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)
