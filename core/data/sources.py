"""Where samples come from: files in a folder or members of webdataset tar shards.

A *sample reference* is either a :class:`pathlib.Path` or a :class:`TarMember` (a sample stored in an
uncompressed tar shard, read by seeking to its bytes). A modality opens both (its ``open_ref``), so
map-style datasets (evaluation, previews) work on folders and shards alike.

Shard layout (written by :mod:`core.data.folder_shards`, readable by any webdataset reader): every
sample is ``<key>.<ext>`` (the original encoded bytes; which extensions count as the sample is the
modality's choice) plus ``<key>.cls`` (the class index as text); keys contain no dots.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from webdataset.shardlists import expand_urls

from core.data.skips import SkipLog

__all__ = [
    "TarMember",
    "SampleRef",
    "ref_key",
    "list_files",
    "sample_key",
    "expand_shards",
    "list_shard_members",
    "folder_class_names",
    "LABEL_MODES",
    "assign_labels",
]


@dataclass(frozen=True)
class TarMember:
    """One sample inside an uncompressed tar shard.

    Attributes:
        shard: path of the ``.tar`` file.
        key: the webdataset sample key.
        offset: byte offset of the sample's data member inside the tar.
        size: number of bytes of that member.
        label: class index from the sample's ``.cls`` member (-1 when absent).
    """

    shard: str
    key: str
    offset: int
    size: int
    label: int = -1

    @property
    def stem(self) -> str:
        """Name used in reports (same role as ``Path.stem`` for files)."""
        return self.key

    def read_bytes(self) -> bytes:
        """The stored (encoded) sample bytes."""
        with open(self.shard, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self.shard} is truncated: {self.key} needs {self.size} bytes at offset {self.offset}")
        return data

    def __str__(self) -> str:
        return f"{self.shard}::{self.key}"


SampleRef = Union[Path, TarMember]


def ref_key(ref: SampleRef) -> str:
    """Short identifier of a reference (file stem or sample key)."""
    return ref.stem


def sample_key(position: int, name: str) -> str:
    """Unique, dot-free webdataset key (webdataset splits member names at the first dot) that still
    names the source sample: the zero-padded position, then ``name`` with other characters replaced."""
    return f"{position:08d}_{re.sub(r'[^A-Za-z0-9_-]+', '_', name)[-80:]}"


def list_files(root: str | Path, extensions: Sequence[str], noun: str = "sample", *, skips: SkipLog | None = None) -> list[Path]:
    """All files under ``root`` (recursive) whose suffix is one of ``extensions`` (case-insensitive,
    with the dot), sorted for reproducibility. ``noun`` names the files in the errors.

    Symlinked files and folders are followed. What cannot be listed is skipped and recorded in
    ``skips`` (default: a :class:`~core.data.skips.SkipLog` that only logs): folders that cannot be
    read (permissions), a folder reached a second time through a link (a symlink loop), and
    sample-named entries that are not regular files (dangling links, links that loop).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{noun} folder {root} does not exist; set data.root= to a folder of {noun}s or use data.demo=true")
    skips = skips if skips is not None else SkipLog(logging.getLogger("difftok.data"), f"{noun} path")
    before = len(skips)
    files = sorted(_scan_tree(root, {e.lower() for e in extensions}, skips))
    if len(skips) > before:
        logging.getLogger("difftok.data").warning("%d path(s) under %s could not be listed and were skipped (first: %s)",
                                                  len(skips) - before, root, next(iter(skips.examples(1).items()), None))
    if not files:
        raise FileNotFoundError(f"no {noun}s ({', '.join(extensions[:6])}) found under {root}")
    return files


def _scan_tree(root: Path, wanted: set[str], skips: SkipLog) -> Iterator[Path]:
    """Files under ``root`` with a suffix in ``wanted``; real sub-folders are listed before linked ones,
    so a tree without links lists exactly as ``rglob`` would, and every folder is listed once."""
    real_folders, linked_folders = [str(root)], []
    listed: set[tuple[int, int]] = set()
    while real_folders or linked_folders:
        folder = real_folders.pop() if real_folders else linked_folders.pop(0)
        try:
            status = os.stat(folder)
            if (status.st_dev, status.st_ino) in listed:
                if _is_loop(folder):
                    skips.record(folder, f"symlink loop: {folder} -> {os.readlink(folder)} leads back to a folder above it")
                continue  # otherwise a second link to a listed folder: its files are listed once
            listed.add((status.st_dev, status.st_ino))
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as err:
            skips.record(folder, f"cannot list folder: {type(err).__name__}: {err.strerror or err}")
            continue
        for entry in entries:
            is_sample_name = os.path.splitext(entry.name)[1].lower() in wanted
            try:
                if entry.is_dir():  # follows links
                    (linked_folders if entry.is_symlink() else real_folders).append(entry.path)
                    continue
                if entry.is_file():
                    if is_sample_name:
                        yield Path(entry.path)
                    continue
                problem = "not a regular file"
            except OSError as err:
                problem = f"{type(err).__name__}: {err.strerror or err}"
            if is_sample_name:
                skips.record(entry.path, _link_problem(entry.path) if entry.is_symlink() else problem)


def _is_loop(link: str) -> bool:
    """Whether the folder link ``link`` points at itself or at a folder above it."""
    target, parent = os.path.realpath(link), os.path.realpath(os.path.dirname(link))
    return parent == target or parent.startswith(target.rstrip(os.sep) + os.sep)


def _link_problem(path: str) -> str:
    """Why a symbolic link does not lead to a file (dangling, loop, ...)."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    try:
        os.stat(path)
    except OSError as err:
        kind = {errno.ELOOP: "symlink loop", errno.ENOENT: "dangling symlink"}.get(err.errno or 0, type(err).__name__)
        return f"{kind}: {path} -> {target}"
    return f"symlink to something that is not a regular file: {path} -> {target}"


def _is_remote(url: str) -> bool:
    return "://" in url or url.startswith("pipe:")


def expand_shards(spec: str | Sequence[str]) -> list[str]:
    """Shard paths from a brace pattern, a directory, a glob, ``"::"``-joined parts or a list.

    Examples: ``"data/shard-{000000..000099}.tar"``, ``"data/"`` (every ``*.tar`` inside, sorted),
    ``"a/shard-*.tar::b/shard-*.tar"``, ``["a.tar", "b.tar"]``. Local paths must exist.
    """
    parts = [spec] if isinstance(spec, str) else list(spec)
    urls: list[str] = []
    for part in parts:
        for item in str(part).split("::"):
            if not item:
                continue
            if not _is_remote(item) and os.path.isdir(item):
                found = sorted(glob.glob(os.path.join(item, "*.tar")))
                if not found:
                    raise FileNotFoundError(f"no *.tar shards in directory {item}; convert a folder with the modality's make_shards command")
                urls.extend(found)
            elif "{" in item:
                urls.extend(expand_urls(item))
            elif any(c in item for c in "*?[") and not _is_remote(item):
                urls.extend(sorted(glob.glob(item)))
            else:
                urls.append(item)
    if not urls:
        raise FileNotFoundError(f"data.shards={spec!r} matches no shard files")
    missing = [u for u in urls if not _is_remote(u) and not os.path.isfile(u)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(urls)} shard(s) in data.shards={spec!r} do not exist (first: {missing[0]}); "
            f"check the brace range against the shard files, or pass the shard directory"
        )
    return urls


def _split_key(name: str) -> tuple[str, str]:
    """webdataset convention: the key ends at the first dot of the file name."""
    directory, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), (ext.lower() if dot else "")


def list_shard_members(urls: Sequence[str], extensions: Sequence[str]) -> list[TarMember]:
    """Every sample in local uncompressed tar shards, in shard order (reads tar headers only).

    A sample is the member whose (lower-case, dot-less) extension is in ``extensions``; its ``.cls``
    member, when present, gives the label."""
    members: list[TarMember] = []
    for url in urls:
        if _is_remote(url):
            raise ValueError(f"cannot index remote shard {url} for map-style reading; copy the shards locally")
        found: dict[str, tarfile.TarInfo] = {}
        labels: dict[str, int] = {}
        with tarfile.open(url, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, ext = _split_key(info.name)
                if ext in extensions:
                    found[key] = info
                elif ext == "cls":
                    handle = tar.extractfile(info)
                    labels[key] = int(handle.read().decode().strip()) if handle is not None else -1
        for key, info in found.items():
            members.append(TarMember(url, key, info.offset_data, info.size, labels.get(key, -1)))
    return members


def folder_class_names(files: Sequence[Path], root: str | Path) -> list[str]:
    """Class of each file: its top-level sub-folder under ``root`` (``""`` for files directly in it)."""
    root = Path(root)
    names = []
    for path in files:
        parts = Path(path).relative_to(root).parts
        names.append(parts[0] if len(parts) > 1 else "")
    return names


LABEL_MODES = ("folder", "file", "none")


def _reference_name(ref: SampleRef, root: Path | None) -> str:
    if isinstance(ref, TarMember):
        return ref.key
    path = Path(ref)
    return path.relative_to(root).with_suffix("").as_posix() if root is not None else path.stem


def assign_labels(groups: Sequence[tuple[Sequence[SampleRef], Path | None]], mode: str = "folder") -> tuple[list[list[int]], list[str] | None]:
    """Class labels for lists of sample references that share one class mapping.

    Each group is ``(refs, class_root)``. Modes:

    - ``folder``: files get the index of their top-level sub-folder under ``class_root`` in the sorted
      union of all groups' folder names (the mapping of ``make_shards``; a flat folder is class 0);
      tar members keep their stored ``.cls`` label (names then unknown: None).
    - ``file``: every reference is its own class, numbered in order (group after group); names are the
      relative paths without suffix (tar members: their keys).
    - ``none``: every reference is class 0.

    Returns ``(labels per group, class names by index or None)``.
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"labels={mode!r}; choose one of {LABEL_MODES}")
    if mode == "none":
        return [[0] * len(refs) for refs, _ in groups], [""]
    if mode == "file":
        labels, names, offset = [], [], 0
        for refs, root in groups:
            labels.append(list(range(offset, offset + len(refs))))
            names.extend(_reference_name(ref, root) for ref in refs)
            offset += len(refs)
        return labels, names
    group_names: list[list[str] | None] = []  # None: tar members, which keep their stored labels
    for refs, root in groups:
        members = [isinstance(ref, TarMember) for ref in refs]
        if refs and all(members):
            group_names.append(None)
        elif any(members):
            raise ValueError("labels=folder cannot mix files and tar-shard members in one group")
        elif refs and root is None:
            raise ValueError("labels=folder needs the class root of the files")
        else:
            group_names.append(folder_class_names(refs, root) if refs else [])  # type: ignore[arg-type]
    classes = sorted({name for names in group_names if names is not None for name in names})
    lookup = {name: i for i, name in enumerate(classes)}
    labels = [[lookup[n] for n in names] if names is not None else [ref.label for ref in refs]  # type: ignore[union-attr]
              for (refs, _), names in zip(groups, group_names)]
    return labels, (None if any(names is None for names in group_names) else classes or [""])
