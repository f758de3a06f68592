"""The audio tokenizer training recipe shared by ``recipes.audio.*`` (spec ``audio.md`` §3.2–§3.4).

Every audio recipe is :func:`audio_experiment` with a size and its deltas:

- model: :func:`modalities.audio.models.audio_config` (``layernorm_frames`` latent, flow matching
  with ``sigma_min = 1e-5``, ``t ~ U[0, 1]``, 50 uniform Euler steps; DiTo noise sync p = 0.1 on
  by default; the SSDD-analogue ``mrstft`` + ``mel_l1`` terms when ``spectral``);
- data: ``modality: audio`` with ``data.options`` = ``sample_rate`` (the model rate; other rates are
  resampled), ``channels``, ``crop_seconds`` (the size's training crop, a multiple of the hop) and
  ``min_seconds`` (shorter files are skipped and counted) and ``hop`` (the model's; crops are rounded down to a
  multiple of it); ``data.size`` repeats the crop in samples;
- optimiser: AdamW 1e-4, betas (0.9, 0.999), weight decay 0.01 (DiTo's), global-norm clip 1.0;
- trainer: bf16 autocast on GPU (``precision=auto``), checkpoints/previews every 20K steps.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from core.training.cli import Recipe
from core.training.config import DataConfig, EMAConfig, ExperimentConfig, OptimConfig, TrainerConfig
from modalities.audio.models import audio_config, audio_size

__all__ = ["AudioDataMissingError", "SPECTRAL_WEIGHTS", "audio_experiment", "check_audio_data", "audio_recipe"]

SPECTRAL_WEIGHTS = {"mrstft": 1.0, "mel_l1": 1.0}  # the audio counterpart of SSDD's LPIPS weight (spec §3.4)
CADENCE = 20_000


class AudioDataMissingError(ValueError):
    """An audio recipe was started without training data."""


def audio_data_options(size: str, channels: int | None = None) -> dict[str, Any]:
    """``data.options`` (:class:`~modalities.audio.data.AudioDataOptions`) for ``size``: model rate, channels,
    the training crop, the shortest usable file and the model's hop (crops are rounded down to a multiple of it,
    so a crop given in seconds always encodes: ``crop_seconds`` * rate is exactly ``crop_samples``)."""
    row = audio_size(size)
    crop_seconds = row.crop_samples / row.sample_rate
    return {"sample_rate": row.sample_rate, "channels": row.channels if channels is None else channels,
            "crop_seconds": crop_seconds, "min_seconds": crop_seconds, "hop": row.hop}


def audio_experiment(
    size: str, *, name: str, noise_sync: bool = True, spectral: bool = False, batch_size: int = 32,
    max_steps: int = 200_000,
) -> ExperimentConfig:
    """The training run of ``audio_<size>`` (pure DiTo objective, or SSDD-analogue with ``spectral``)."""
    row = audio_size(size)
    weights = SPECTRAL_WEIGHTS if spectral else {"mrstft": 0.0, "mel_l1": 0.0}
    return ExperimentConfig(
        name=name,
        seed=0,
        output_dir=f"outputs/{name}",
        model=audio_config(size, noise_sync=noise_sync, mrstft_weight=weights["mrstft"], mel_weight=weights["mel_l1"]),
        data=DataConfig(
            root=None, shards=None, demo=False, size=row.crop_samples, batch_size=batch_size, num_workers=8, holdout=0,
            options=audio_data_options(size),
        ),
        optim=OptimConfig(name="adamw", lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, grad_clip=1.0),
        ema=EMAConfig(enabled=False),
        trainer=TrainerConfig(
            max_steps=max_steps, precision="auto", log_every_n_steps=100,
            checkpoint_every_n_steps=CADENCE, preview_every_n_steps=CADENCE, preview_count=4, preview_steps=None,
            eval_every_n_steps=0, eval_steps=[1, 10],
        ),
    )


def check_audio_data(cfg: Any) -> None:
    """Refuse to start without data.

    Raises:
        AudioDataMissingError: none of ``data.root``, ``data.shards``, ``data.demo`` is set.
    """
    data = cfg.data
    if not (data.root or data.shards or data.demo):
        raise AudioDataMissingError(
            f"{cfg.name}: no training data. Set data.root=/path/to/audio (a folder of wav/flac files), "
            f"data.shards='/path/train-{{000000..000099}}.tar' (webdataset shards from python -m recipes.audio.make_shards; "
            f"quoted for the shell) or data.demo=true (the bundled speech clips, a smoke test)."
        )


def audio_recipe(size: str, name: str, **kwargs: Any) -> Recipe:
    """A registered-by-name recipe for ``audio_<size>``."""
    return Recipe(name=name, build_config=partial(audio_experiment, size, name=name, **kwargs), check=check_audio_data)
