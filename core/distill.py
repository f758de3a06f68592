r"""Single-step distillation (SSDD §4), modality agnostic.

A frozen teacher (eval mode, typically EMA weights) integrates ``teacher_steps`` Euler steps from
noise :math:`\varepsilon` given latent ``z``, producing :math:`x_T`. The student (initialised as a
copy of the teacher) is trained only at t = 1 on the *same* :math:`\varepsilon` and ``z``:
:math:`x_t = \varepsilon`, :math:`\hat x_0 = \varepsilon + D_s(\varepsilon, 1, z)`, loss
:math:`\|\hat x_0 - x_T\|^2` plus the student's registered auxiliary terms with ``reference = x_T``
(``x`` stays the real data, so representation terms such as REPA target the real image).
After distillation ``decode(z, num_steps=1)`` is the one-step decoder.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from core.autoencoder import DiffusionAutoencoder
from core.feature_hooks import capture_features, requested_feature_modules
from core.flow.loss import per_sample_mse
from core.loss_terms import LossInputs
from core.samplers.grids import time_grid
from core.samplers.solvers import euler_solve

__all__ = ["DistillationConfig", "make_student", "distillation_losses", "student_parameters"]


@dataclass
class DistillationConfig:
    """How the teacher samples its targets (SSDD: 12 Euler steps on the power-2 grid).

    The one home of these settings: training runs nest it as ``distill.sampling`` (overrides such
    as ``distill.sampling.teacher_steps=2``).
    """

    teacher_steps: int = 12
    grid: str = "power"
    power: float = 2.0


def make_student(teacher: DiffusionAutoencoder) -> DiffusionAutoencoder:
    """A trainable copy of ``teacher``; the teacher is frozen and put in eval mode."""
    student = copy.deepcopy(teacher)
    teacher.requires_grad_(False).eval()
    return student.train()


def distillation_losses(
    student: DiffusionAutoencoder,
    teacher: DiffusionAutoencoder,
    x: Tensor,
    *,
    config: DistillationConfig | None = None,
    generator: torch.Generator | None = None,
    train_encoder: bool = False,
) -> dict[str, Tensor]:
    """One distillation forward on data ``x``.

    Args:
        student: model being trained (only its decoder gets gradients unless ``train_encoder``).
        teacher: frozen multi-step model.
        x: clean data ``(B, C, *S)``; the latent is the teacher encoder's mode.
        config: teacher sampling settings (default: :class:`DistillationConfig`).
        train_encoder: also backpropagate into the student's encoder (default: frozen latents).

    Returns:
        ``loss``, ``distill_mse`` and each auxiliary term (scalars).
    """
    config = config or DistillationConfig()
    with torch.no_grad():
        z = teacher.encode(x).latent_dist.mode()  # (B, C_z, *S/f)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        grid = time_grid(config.teacher_steps, config.grid, power=config.power, device=x.device)
        x_teacher = euler_solve(lambda x_t, t, c: teacher.velocity(x_t, t, c), noise, grid, z).sample
    if train_encoder:
        z = student.encode(x).latent_dist.mode()
    t = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
    x_t = student.path.sample(x=x, noise=noise, t=t).x_t  # = noise at t = 1
    # decoder features (e.g. REPA) come from this t = 1 student forward
    with capture_features(student.decoder, requested_feature_modules(student.loss_terms.values(), student.decoder)) as features:
        u = student.velocity(x_t, t, z)
    x0_hat = student.path.data_estimate(x_t=x_t, t=t, u=u)
    losses: dict[str, Tensor] = {"distill_mse": per_sample_mse(x0_hat, x_teacher).mean()}
    total = losses["distill_mse"]
    if len(student.loss_terms):
        # x: the real data (REPA targets); reference: the teacher sample (x0_hat targets, e.g. LPIPS)
        inputs = LossInputs(
            x=x, reference=x_teacher, x_t=x_t, t=t, prediction=u, x0_hat=x0_hat, z=z, extras={"features": features}
        )
        for name, term in student.loss_terms.items():
            losses[name] = term(inputs)
            total = total + student.loss_weights[name] * losses[name]
    losses["loss"] = total
    return losses


def student_parameters(student: DiffusionAutoencoder, train_encoder: bool = False) -> list[nn.Parameter]:
    """Parameters to optimise during distillation (decoder, trainable loss-term heads, optionally encoder)."""
    modules = [student.decoder, student.loss_terms] + ([student.encoder] if train_encoder else [])
    return [p for m in modules for p in m.parameters() if p.requires_grad]
