"""The core evaluation loop and the generic latent tools, run with a non-image toy modality (and the image one).

``toy_line`` is registered here: 1-D signals ``(1, 32)`` stored as ``.npy`` files (class = file-name prefix,
one corrupt file), a mean-absolute-error metric, a 1/64 quantisation and a 4-number feature extractor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch

from core.builder import ComponentConfig, build_autoencoder
from core.eval.command import EvalSettings, evaluate_checkpoint, format_table
from core.eval.frechet import frechet_distance
from core.eval.protocol import MetricSuite, Quantization
from core.eval.reconstruction import evaluate_reconstructions
from core.eval.runtime import per_sample_noise
from core.eval.samples import CacheInputs, EvalSamples, LoadedSamples, SampleRequest, sample_loader
from core.latent.cache_command import CacheLatentsSettings
from core.latent.cache_stream import load_all_latents
from core.latent.stats_command import LatentStatsSettings
from core.modality import Modality, ToolSettings, get_modality
from core.pretrained import from_pretrained, save_pretrained
from core.registry import MODALITIES
from tests.conftest import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")
LENGTH = 32


@dataclass
class LineData:
    root: Optional[str] = None


@dataclass
class LineEvalSettings(EvalSettings):
    modality: str = "toy_line"
    data: LineData = field(default_factory=LineData)
    num_samples: int = 0

    def sample_request(self) -> SampleRequest:
        return SampleRequest(self.data, self.num_samples, self.seed, None)


@dataclass
class LineStatsSettings(LatentStatsSettings):
    modality: str = "toy_line"
    data: LineData = field(default_factory=LineData)

    def sample_request(self) -> SampleRequest:
        return SampleRequest(self.data, 0, self.seed, None)


@dataclass
class LineCacheSettings(CacheLatentsSettings):
    modality: str = "toy_line"
    data: LineData = field(default_factory=LineData)


def load_line(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.load(path)).float()


def line_files(data: LineData) -> list[Path]:
    return sorted(Path(str(data.root)).glob("*.npy"))


def select_lines(request: SampleRequest) -> EvalSamples:
    files = line_files(request.data)
    files = files if request.count <= 0 else files[: request.count]
    return EvalSamples(files, [f.name.split("_")[0] for f in files], load_line,
                       {"source": "folder", "location": str(request.data.root), "num_available": len(files)}, unit="line")


def line_cache_inputs(settings: LineCacheSettings) -> CacheInputs:
    files = line_files(settings.data)
    names = ["a", "b"]
    labels = [names.index(f.name.split("_")[0]) if f.name[0] in "ab" else 0 for f in files]
    digest = hashlib.sha1("\n".join(f.name for f in files).encode()).hexdigest()
    return CacheInputs(files, [f"{i:04d}_{f.stem}" for i, f in enumerate(files)], labels, names, str(settings.data.root), digest,
                       load_line, "none", label_mode="prefix")


class MeanAbsError:
    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, reference: torch.Tensor, reconstruction: torch.Tensor) -> None:
        self.total += float((reference - reconstruction).abs().double().sum())
        self.count += reference.numel()

    def compute(self) -> dict[str, float]:
        return {"mae": self.total / self.count}


class FirstValues:
    """Toy feature extractor: the first four values of each signal."""

    num_features = 4
    info = {"features": "first four values"}

    def __call__(self, samples: torch.Tensor) -> torch.Tensor:
        return samples.flatten(1)[:, :4].double()


QUANT = Quantization(store=lambda x: (x.clamp(-1, 1) * 64).round().to(torch.int16), load=lambda q: q.float() / 64, description="1/64 steps")


def toy_line() -> Modality:
    return Modality(
        "toy_line", 1, 1, make_datamodule=lambda cfg, seed, batch: None, preview_suffix=".pt",
        reconstruction_metrics=lambda settings, device: MetricSuite(make=lambda: [MeanAbsError()], protocol={"mae": "mean |x - rec|"}),
        quantization=QUANT, feature_extractor=lambda device: FirstValues(),
        write_grid=lambda rows, path: torch.save(rows, path) or path,
        select_eval_samples=select_lines, cache_inputs=line_cache_inputs,
        tool_settings=ToolSettings(evaluate=LineEvalSettings, latent_stats=LineStatsSettings, cache_latents=LineCacheSettings),
    )


@pytest.fixture
def line_modality():
    MODALITIES.add("toy_line", toy_line)
    yield get_modality("toy_line")
    MODALITIES.remove("toy_line")


@pytest.fixture(scope="module")
def line_folder(tmp_path_factory) -> Path:
    """Seven readable signals (classes a/b) and one corrupt file."""
    root = tmp_path_factory.mktemp("lines")
    t = np.linspace(0, 1, LENGTH, dtype=np.float32)
    for i in range(7):
        np.save(root / f"{'ab'[i % 2]}_{i}.npy", (0.8 * np.sin(2 * np.pi * (1 + i) * t))[None])
    (root / "b_bad.npy").write_bytes(b"not a numpy file")
    return root


@pytest.fixture(scope="module")
def line_tokenizer(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = tiny_config(spatial_dims=1, in_channels=1, latent_channels=2, modality="toy_line", regularizer=ComponentConfig("kl"))
    model = build_autoencoder(config)
    return save_pretrained(model, tmp_path_factory.mktemp("line_tok") / "export")


def _readable(folder: Path) -> tuple[list[int], torch.Tensor]:
    positions, signals = [], []
    for position, path in enumerate(sorted(folder.glob("*.npy"))):
        try:
            signals.append(load_line(path))
            positions.append(position)
        except ValueError:
            pass
    return positions, torch.stack(signals)


def test_generic_loop_scores_each_sample_from_its_own_noise_whatever_the_batch(line_modality, line_folder, line_tokenizer):
    model = from_pretrained(line_tokenizer, modality="toy_line").eval()
    samples = select_lines(SampleRequest(LineData(str(line_folder)), 0, 0, None))

    def run(batch_size: int, seed: int = 5):
        loader = sample_loader(LoadedSamples(samples.refs, samples.load), batch_size)
        return evaluate_reconstructions(model, loader, steps=[1, 3], metrics=lambda: [MeanAbsError()], seed=seed, quantization=QUANT,
                                        features=FirstValues(), preview_count=2)

    one, three = run(1), run(3)
    assert (one.num_samples, one.unreadable, len(one.previews)) == (7, 1, 2) and one.previews[0].shape == (3, 1, LENGTH)
    for key in ("steps_1", "steps_3"):
        assert one.metrics[key]["mae"] == pytest.approx(three.metrics[key]["mae"], rel=1e-6)
        assert one.metrics[key]["rfid"] == pytest.approx(three.metrics[key]["rfid"], rel=1e-6)
    assert run(3, seed=6).metrics["steps_1"]["mae"] != pytest.approx(three.metrics["steps_1"]["mae"], rel=1e-6)

    # independently: sample at position p decodes from per_sample_noise(seed, p), quantised before the metric
    positions, x = _readable(line_folder)
    with torch.no_grad():
        z = model.encode(x).latent_dist.mode()
        noise = per_sample_noise((1, LENGTH), 5, torch.tensor(positions))
        rec = QUANT(model.decode(z, 3, noise=noise).sample)
    assert three.metrics["steps_3"]["mae"] == pytest.approx((x - rec).abs().double().mean().item(), rel=1e-5)
    assert three.metrics["steps_3"]["rfid"] == pytest.approx(frechet_distance(FirstValues()(x), FirstValues()(rec)), rel=1e-4, abs=1e-6)


def test_offline_command_runs_for_the_toy_modality(line_modality, line_folder, line_tokenizer, tmp_path):
    report = evaluate_checkpoint(LineEvalSettings(checkpoint=str(line_tokenizer), data=LineData(str(line_folder)), steps=[2],
                                                  batch_size=4, out=str(tmp_path), device="cpu", num_workers=0, progress=False))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"] == report["metrics"] and set(report["metrics"]["steps_2"]) == {"mae", "rfid"}
    assert report["data"]["num_lines"] == 7 and report["data"]["unreadable"] == 1 and report["fid"]["num_lines"] == 7
    assert report["protocol"]["quantisation"] == "1/64 steps" and report["protocol"]["mae"] == "mean |x - rec|"
    assert any("unreadable line" in n for n in report["notes"]) and not any("rank-deficient" in n for n in report["notes"])
    assert (tmp_path / "reconstructions.pt").is_file() and len((tmp_path / "subset.txt").read_text().splitlines()) == 8
    table = format_table(report)
    assert "mae" in table.splitlines()[0] and "rfid" in table.splitlines()[0] and "7 lines (folder:" in table


def test_latent_stats_through_modality_argument(line_modality, line_folder, line_tokenizer, tmp_path):
    from recipes.latent_stats import main

    with pytest.raises(SystemExit, match="modality=NAME is required"):
        main([f"tokenizer={line_tokenizer}"])
    report = main(["modality=toy_line", f"tokenizer={line_tokenizer}", f"data.root={line_folder}", f"out={tmp_path / 'stats'}",
                   "batch_size=3", "latent=mode", "num_workers=0", "progress=false"])
    _, x = _readable(line_folder)
    z = from_pretrained(line_tokenizer).encode(x).latent_dist.mode().double()
    assert report["latent"] == "mode" and report["num_lines"] == 7 and report["data"]["unreadable"] == 1
    assert abs(report["shift"]) > 1e-3 and report["shift"] == pytest.approx(z.mean().item(), rel=1e-6)
    assert report["scale"] == pytest.approx(z.std(unbiased=False).item(), rel=1e-6)
    loaded = from_pretrained(tmp_path / "stats")
    assert (loaded.latent_stats.shift, loaded.latent_stats.scale) == (report["shift"], report["scale"])


def test_cache_latents_through_modality_argument_with_flips(line_modality, line_folder, line_tokenizer, tmp_path):
    from recipes.cache_latents import main

    summary = main(["modality=toy_line", f"tokenizer={line_tokenizer}", f"data.root={line_folder}", f"out={tmp_path / 'cache'}",
                    "batch_size=3", "flip=true", "samples_per_shard=4", "num_workers=0", "progress=false", "device=cpu"])
    assert summary["count"] == 7 and summary["complete"] and summary["latent_shape"] == [2, LENGTH // 4]
    cached = load_all_latents(tmp_path / "cache")
    positions, x = _readable(line_folder)
    tok = from_pretrained(line_tokenizer)
    with torch.no_grad():
        mean, mean_flip = tok.encode(x).latent_dist.mean, tok.encode(x.flip(-1)).latent_dist.mean
    order = [int(key.split("_")[0]) for key in cached.keys]
    assert order == positions
    torch.testing.assert_close(cached.mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cached.mean_flip, mean_flip, rtol=1e-5, atol=1e-6)
    assert cached.std is not None and not torch.allclose(cached.mean, cached.mean_flip)
    names = [p.name for i, p in enumerate(sorted(line_folder.glob("*.npy"))) if i in positions]
    assert cached.labels.tolist() == [0 if n.startswith("a") else 1 for n in names]
    assert list(cached.index.label_names) == ["a", "b"]


def test_in_training_evaluation_is_independent_of_the_batch_size(demo_dir):
    from core.training.callbacks import PeriodicEvalCallback
    from core.training.config import DataConfig

    image = get_modality("image")
    datamodule = image.make_datamodule(DataConfig(root=str(demo_dir), size=16, batch_size=4, num_workers=0), 0, 4)
    torch.manual_seed(0)
    model = build_autoencoder(tiny_config()).eval()
    values = [PeriodicEvalCallback(image, datamodule, 1, [1, 2], batch_size=b).evaluate(model, torch.device("cpu")) for b in (1, 3)]
    assert set(values[0]) == {"psnr_steps1", "ssim_steps1", "psnr_steps2", "ssim_steps2"}
    for key, value in values[0].items():
        assert values[1][key] == pytest.approx(value, rel=1e-6, abs=1e-5), key
    reseeded = PeriodicEvalCallback(image, datamodule, 1, [1], batch_size=3, seed=1).evaluate(model, torch.device("cpu"))
    assert reseeded["psnr_steps1"] != pytest.approx(values[0]["psnr_steps1"], rel=1e-6)


def test_offline_image_evaluation_is_independent_of_the_batch_size(tmp_path):
    from recipes.image.evaluate import main

    torch.manual_seed(0)
    export = save_pretrained(build_autoencoder(tiny_config()), tmp_path / "export")
    args = [f"checkpoint={export}", "data.demo=true", "num_images=3", "resolution=32", "steps=[1,2]", "fid=false", "device=cpu",
            "num_workers=0", "progress=false"]
    one = main(args + ["batch_size=1", f"out={tmp_path / 'one'}"])["metrics"]
    three = main(args + ["batch_size=3", f"out={tmp_path / 'three'}"])["metrics"]
    for key in one:
        for name, value in one[key].items():
            assert three[key][name] == pytest.approx(value, rel=1e-6, abs=1e-5), (key, name)  # SSIM of an untrained model is ~0
