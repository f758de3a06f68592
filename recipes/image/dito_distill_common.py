"""One-step distillation of a trained DiTo tokenizer (``dito_b_distill``, ``dito_xl_distill``).

DiTo's open question (paper §6): can a one-step decoder give DiTo a GAN decoder's speed without
losing fidelity? The recipe answers it with the core's single-step distillation
(:mod:`core.distill`, SSDD §4), configured for DiTo:

- student: the DiTo export named by ``init.weights`` (required), encoder frozen (the student
  decodes the same latents as its teacher), trained only at t = 1 on
  ``x̂0 = ε + D_s(ε, 1, z)`` — the same one-step estimate ``decode(z, num_steps=1)`` computes
  (:meth:`core.flow.path.FlowPath.data_estimate` with DiTo's σmin = 1e-5), so training and
  decoding agree;
- teacher: the same export (``distill.teacher`` follows ``init.weights`` unless set), decoding
  with DiTo's own sampler, 50 uniform Euler steps from the same ε and z;
- loss: MSE between the student's one-step and the teacher's 50-step decode (DiTo's own
  objective is plain MSE, so no auxiliary terms);
- optimiser and data: DiTo's (AdamW lr 1e-4, wd 0.01, batch 64, 256² ImageNet, no EMA, bf16 on GPU);
- length: one ImageNet epoch at batch 64 (20,019 steps). SSDD distils for 10 epochs at batch 256
  with a 12-step teacher; with a 50-step teacher that many images would cost about 11× DiTo's
  whole pre-training, one epoch about 1.2×. ``distill.sampling.teacher_steps=10`` cuts the
  teacher's cost 5× (the CPU evidence, ``dito_distill_cpu_evidence``, compares 10- and 50-step
  decodes of the teacher);
- the export decodes in one step (``model.sampling.num_steps=1``); held-out PSNR/SSIM at 1 step
  every 5K steps.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from core.distill import DistillationConfig
from core.pretrained import WEIGHTS_NAME
from core.training.cli import Recipe
from core.training.config import ExperimentConfig, with_overrides
from recipes.image.dito_common import GLOBAL_BATCH, check_dito_data, dito_experiment

__all__ = ["DITO_DISTILL_DELTAS", "DiToDistillInitError", "dito_distill_experiment", "check_dito_distill", "dito_distill_recipe"]

TEACHER_STEPS = 50  # DiTo's own decode (uniform Euler grid)
DISTILL_STEPS = -(-1_281_167 // GLOBAL_BATCH)  # one ImageNet epoch at batch 64 = 20,019 steps (see the module docs)
DISTILL_CADENCE = 5_000

# What distillation changes in any DiTo run (the paper recipes and the CPU evidence alike)
DITO_DISTILL_DELTAS: dict[str, Any] = {
    "stage": "distill",
    "model.sampling.num_steps": 1,  # the export is the one-step decoder
    "distill.enabled": True,
    "distill.teacher": "${init.weights}",  # the teacher is the export the student starts from
    "distill.sampling": DistillationConfig(teacher_steps=TEACHER_STEPS, grid="uniform"),
    "trainer.preview_steps": 1,
    "trainer.eval_steps": [1],
}


class DiToDistillInitError(ValueError):
    """A DiTo distillation run was started without the DiTo export it distils."""


def dito_distill_experiment(size: str, *, name: str) -> ExperimentConfig:
    """DiTo-``size``'s paper run (:func:`dito_experiment`) turned into its one-step distillation."""
    return with_overrides(
        dito_experiment(size, name=name),
        {
            **DITO_DISTILL_DELTAS,
            "trainer.max_steps": DISTILL_STEPS,
            "trainer.checkpoint_every_n_steps": DISTILL_CADENCE,
            "trainer.preview_every_n_steps": DISTILL_CADENCE,
            "trainer.eval_every_n_steps": DISTILL_CADENCE,
        },
    )


def check_dito_distill(cfg: Any) -> None:
    """Refuse a run without data, or without an existing DiTo export to start from.

    Raises:
        DiToDataMissingError: see :func:`recipes.image.dito_common.check_dito_data`.
        DiToDistillInitError: ``init.weights`` is unset or not a ``save_pretrained`` folder, or
            ``distill.teacher`` names a folder that does not exist.
    """
    check_dito_data(cfg)
    weights = cfg.init.weights
    hint = "a DiTo export (save_pretrained folder, e.g. outputs/dito_xl/export or an import_dito out=)"
    if not weights:
        raise DiToDistillInitError(f"{cfg.name}: set init.weights=<{hint}>; the student starts from it and it is also the teacher")
    for key, folder in (("init.weights", weights), ("distill.teacher", cfg.distill.teacher)):
        if folder and not (Path(folder) / WEIGHTS_NAME).is_file():
            raise DiToDistillInitError(f"{cfg.name}: {key}={folder} holds no {WEIGHTS_NAME}; give {hint}")


def dito_distill_recipe(size: str, name: str) -> Recipe:
    """A registered-by-name one-step distillation recipe for DiTo-``size``."""
    return Recipe(name=name, build_config=partial(dito_distill_experiment, size, name=name), check=check_dito_distill)
