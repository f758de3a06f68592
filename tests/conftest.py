"""Shared fixtures: tiny model configs and small real images."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("DIFFTOK_CACHE", str(ROOT / ".cache" / "difftok-tests"))
# Under pytest-xdist (the README's `-n 2`) the workers share the cores: one thread each on a 2-core
# machine, and the same for the training subprocesses some tests start, so that two workers and
# their subprocesses do not ask for more OpenMP threads than there are cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, torch.get_num_threads()) // _WORKERS)
torch.set_num_threads(_THREADS)
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))

from core.builder import AutoencoderConfig, ComponentConfig  # noqa: E402


def tiny_config(spatial_dims: int = 2, in_channels: int = 3, latent_channels: int = 4, modality: str = "image", **overrides) -> AutoencoderConfig:
    """A tiny f4 encoder/decoder pair (two levels) that runs in milliseconds."""
    cfg = AutoencoderConfig(
        modality=modality,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        latent_channels=latent_channels,
        encoder=ComponentConfig("conv_encoder", {"base_channels": 8, "channels_mult": [1, 2, 2], "num_res_blocks": 1, "num_groups": 4}),
        decoder=ComponentConfig(
            "unet_decoder",
            {"stage_channels": [8, 16, 16], "down_blocks": 1, "mid_blocks": 1, "up_blocks": 2, "pe_dim": 16, "t_dim": 32, "num_groups": 4},
        ),
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


_FAULT_TALLIES: list[dict] = []  # tests/test_fault_injection.py's per-worker tallies (pytest-xdist controller)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """pytest-xdist: collect a finished worker's fault-injection tally."""
    tally = getattr(node, "workeroutput", {}).get("fault_tally")
    if tally is not None:
        _FAULT_TALLIES.append(tally)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _FAULT_TALLIES:
        return
    seeds = ", ".join(str(t["seed"]) for t in _FAULT_TALLIES)
    total = {key: sum(t[key] for t in _FAULT_TALLIES) for key in ("kills", "resumed_segments", "bit_exact_runs")}
    terminalreporter.write_line(
        f"fault injection (seeds {seeds}): {total['kills']} SIGKILLs injected, {total['resumed_segments']} resumed "
        f"segments, {total['bit_exact_runs']} killed-and-resumed runs bit-identical to their uninterrupted run")


@pytest.fixture
def one_thread():
    """Run a test single-threaded (opt-in). Small-spatial, large-weight convs gain nothing from a
    second thread, and on a shared CPU the OpenMP threads then mostly wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_cfg():
    return tiny_config


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """The bundled demo photographs exported once per session."""
    from modalities.image.demo import export_demo_dataset

    return export_demo_dataset(tmp_path_factory.mktemp("demo_images"))


@pytest.fixture(scope="session")
def photo_batch() -> torch.Tensor:
    """Four real 32x32 crops (scikit-image photographs) in [-1, 1]."""
    from PIL import Image

    from modalities.image.data import resize_shorter_side, to_tensor
    from modalities.image.demo import demo_photographs

    photos = demo_photographs()
    crops = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        image = resize_shorter_side(Image.fromarray(photos[name]), 32)
        crops.append(to_tensor(image.crop((0, 0, 32, 32))))
    return torch.stack(crops)
