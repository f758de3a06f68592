"""CPU evidence run: an audio tokenizer (default ``audio_tiny_hop16``) trained on the bundled speech, scored on the held-out clip over training.

    python -m recipes.audio.cpu_evidence out=outputs/audio_cpu_evidence   # defaults: 4000 + 200 distillation steps, ~25 CPU-min
    python -m recipes.audio.cpu_evidence size=tiny                        # the quickstart's audio_tiny (16x compression)

1. the quickstart recipe (pure DiTo objective + noise sync) on ``audio_<size>`` trains ``steps`` steps on the
   demo ``train/`` split (the first 2.5 s of CMU ARCTIC a0007; ``batch_size`` random ``crop_seconds`` crops
   of it per step), a checkpoint every ``eval_every`` steps;
2. the untrained model and every checkpoint are scored by ``recipes.audio.evaluate`` on the demo ``val/``
   split (the last 1.5 s of a0007, never trained on; centre crop ``seconds`` rounded to the hop) at
   ``steps_during`` decode steps, the last one at ``steps_final``: SI-SDR, mel distance, MR-STFT, PESQ-WB, STOI;
3. with ``distill_steps > 0`` the audio distill recipe (the same size) learns the final model's
   ``teacher_steps``-step samples in one step, and the 1-step student is scored like the teacher.

Writes ``out/evidence.json`` (every score, wall times, load averages, the exact commands) and prints a
markdown table. One speaker and 2.5 s of training audio: this shows that the pipeline learns and how the
step counts compare, not a speech codec's quality. The default size is ``tiny_hop16`` (4 latent values per
16 samples): at ``tiny``'s 16x compression these runs learn the spectrum but not the waveform (SI-SDR stays
below -28 dB, docs/benchmarks.md), so the waveform metrics could not show learning.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recipes.keyvalue import parse_key_values

__all__ = ["EvidenceSettings", "main"]

METRICS = ("si_sdr", "mel_distance", "mrstft", "pesq_wb", "stoi")


@dataclass
class EvidenceSettings:
    """Settings of the CPU evidence run (``key=value`` on the command line)."""

    out: str = "outputs/audio_cpu_evidence"
    size: str = "tiny_hop16"  # audio_<size> for teacher and student (tiny: the quickstart's model)
    steps: int = 4000  # teacher training steps (≈ 0.25 CPU-s each at batch 4 for tiny_hop16, 0.4 for tiny)
    eval_every: int = 1000  # checkpoint (and score) every this many steps
    batch_size: int = 4  # random crops of the one demo training file per step (the recipe: 8)
    crop_seconds: float = 0.256  # training crop (4,096 samples): 4x cheaper steps than the recipe's 1.024 s
    lr: float = 1e-3
    seconds: float = 1.024  # held-out centre crop: 16,384 samples = 64 latent frames
    steps_during: list[int] = field(default_factory=lambda: [1, 10])
    steps_final: list[int] = field(default_factory=lambda: [1, 10, 50])
    distill_steps: int = 200
    distill_lr: float = 3e-4
    teacher_steps: int = 12
    seed: int = 0


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _score(checkpoint: Path, val: Path, out: Path, steps: list[int], settings: EvidenceSettings) -> dict[str, Any]:
    from recipes.audio.evaluate import main as evaluate

    from modalities.audio.models import audio_size

    hop = audio_size(settings.size).hop
    argv = [f"checkpoint={checkpoint}", f"data.root={val}", f"seconds={settings.seconds}", f"hop={hop}",
            f"steps=[{','.join(map(str, steps))}]", f"out={out}", "num_workers=0", "progress=false", f"seed={settings.seed}"]
    start = time.perf_counter()
    report = evaluate(argv)
    metrics = {key: {m: report["metrics"][key].get(m) for m in METRICS} for key in report["metrics"]}
    return {"command": "python -m recipes.audio.evaluate " + " ".join(argv), "wall_s": round(time.perf_counter() - start, 1),
            "metrics": metrics}


def _train(recipe: Any, overrides: list[str]) -> tuple[Any, float, str]:
    from core.training.cli import compose_recipe
    from core.training.run import train

    cfg = compose_recipe(recipe.RECIPE, overrides)
    recipe.RECIPE.check(cfg)
    start = time.perf_counter()
    result = train(cfg)
    command = f"python -m {recipe.__name__} " + " ".join(overrides)
    return result, round(time.perf_counter() - start, 1), command


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from core.builder import build_autoencoder
    from core.pretrained import save_pretrained
    from core.training.cli import compose_recipe
    from modalities.audio.demo import export_demo_dataset
    from modalities.audio.models import audio_size
    from recipes.audio import distill, quickstart

    settings = parse_key_values(EvidenceSettings, argv, prog="cpu_evidence", doc=__doc__ or "")
    row = audio_size(settings.size)  # unknown size: KeyError listing the registered ones, before any work
    out = Path(settings.out)
    demo = export_demo_dataset(out / "demo")
    model = [f"model.encoder.name=audio_{row.name}", f"model.decoder.name=audio_{row.name}",
             f"model.latent_channels={row.latent_channels}", f"data.options.hop={row.hop}"]
    data = [*model, f"data.root={demo}", "data.demo=true", f"data.batch_size={settings.batch_size}", "data.num_workers=0",
            f"data.options.crop_seconds={settings.crop_seconds}", f"data.options.min_seconds={settings.crop_seconds}",
            "trainer.accelerator=cpu", "trainer.progress_bar=false", f"seed={settings.seed}"]
    evidence: dict[str, Any] = {"settings": asdict(settings), "load_start": _load(), "threads": torch.get_num_threads(), "scores": {}}

    torch.manual_seed(settings.seed)
    untrained = out / "untrained"
    save_pretrained(build_autoencoder(compose_recipe(quickstart.RECIPE, data).model), untrained)  # the teacher's architecture
    evidence["scores"]["0"] = _score(untrained, demo / "val", out / "eval" / "step_0", settings.steps_during, settings)
    (out / "evidence.json").parent.mkdir(parents=True, exist_ok=True)

    teacher_overrides = [*data, f"output_dir={out / 'teacher'}", f"trainer.max_steps={settings.steps}", f"optim.lr={settings.lr}",
                         f"trainer.checkpoint_every_n_steps={settings.eval_every}", f"trainer.preview_every_n_steps={settings.steps}"]
    teacher, wall, command = _train(quickstart, teacher_overrides)
    evidence["teacher"] = {"command": command, "wall_s": wall, "global_step": teacher.global_step, "load_end": _load()}
    for step in range(settings.eval_every, settings.steps + 1, settings.eval_every):
        final = step == settings.steps
        checkpoint = teacher.export_dir if final else teacher.checkpoint_dir / f"step_{step:07d}.ckpt"
        steps = settings.steps_final if final else settings.steps_during
        evidence["scores"][str(step)] = _score(checkpoint, demo / "val", out / "eval" / f"step_{step}", steps, settings)
        (out / "evidence.json").write_text(json.dumps(evidence, indent=2))  # partial results survive an interrupted run

    if settings.distill_steps > 0:
        student_overrides = [*data, f"output_dir={out / 'student'}", f"distill.teacher={teacher.export_dir}",
                             f"distill.sampling.teacher_steps={settings.teacher_steps}",
                             f"trainer.max_steps={settings.distill_steps}", f"optim.lr={settings.distill_lr}",
                             f"trainer.checkpoint_every_n_steps={settings.distill_steps}",
                             f"trainer.preview_every_n_steps={settings.distill_steps}"]
        student, wall, command = _train(distill, student_overrides)
        score = _score(student.export_dir, demo / "val", out / "eval" / "student", [1], settings)
        evidence["student"] = {"command": command, "wall_s": wall, "global_step": student.global_step,
                               "metrics": score["metrics"], "score": {"command": score["command"], "wall_s": score["wall_s"]}}
    evidence["load_end"] = _load()
    (out / "evidence.json").write_text(json.dumps(evidence, indent=2))
    print(markdown_table(evidence))
    return evidence


def markdown_table(evidence: dict[str, Any]) -> str:
    """One row per (training step, decode steps) and one for the distilled student."""
    lines = ["| model | train steps | decode steps | SI-SDR dB | mel dist | MR-STFT | PESQ-WB | STOI |", "|---|---|---|---|---|---|---|---|"]

    def row(model: str, step: str, metrics: dict[str, dict[str, Any]]) -> None:
        for key, values in metrics.items():
            cells = [f"{values[m]:.3f}" if isinstance(values.get(m), float) else "—" for m in METRICS]
            lines.append(f"| {model} | {step} | {key.removeprefix('steps_')} | " + " | ".join(cells) + " |")

    for step, score in evidence["scores"].items():
        row("teacher", step, score["metrics"])
    if "student" in evidence:
        row("1-step student", f"+{evidence['student']['global_step']} distill", evidence["student"]["metrics"])
    return "\n".join(lines)


if __name__ == "__main__":
    main()
