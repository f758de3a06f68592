"""Single-step distillation objective (modality agnostic)."""

from __future__ import annotations

import torch

from core import build_autoencoder
from core.distill import DistillationConfig, distillation_losses, make_student, student_parameters
from core.samplers.grids import time_grid
from core.samplers.solvers import euler_solve
from tests.conftest import tiny_config


def test_student_starts_as_teacher_and_teacher_is_frozen():
    teacher = build_autoencoder(tiny_config(sigma_min=0.0))
    student = make_student(teacher)
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    assert student.training and all(p.requires_grad for p in student.parameters())
    for a, b in zip(teacher.state_dict().values(), student.state_dict().values()):
        assert torch.equal(a, b)


def test_distillation_loss_is_mse_to_teacher_sample_at_t1():
    torch.manual_seed(0)
    teacher = build_autoencoder(tiny_config(sigma_min=0.0))
    student = make_student(teacher)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    cfg = DistillationConfig(teacher_steps=3, grid="power", power=2.0)
    out = distillation_losses(student, teacher, x, config=cfg, generator=torch.Generator().manual_seed(5))
    # recompute by hand with the same noise
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(x.shape, generator=g)
    z = teacher.encode(x).latent_dist.mode()
    x_teacher = euler_solve(lambda a, t, c: teacher.velocity(a, t, c), noise, time_grid(3, "power", power=2.0), z).sample
    with torch.no_grad():
        one_step = noise + student.velocity(noise, torch.ones(2), z)
    torch.testing.assert_close(out["distill_mse"].detach(), (one_step - x_teacher).square().mean(), rtol=1e-5, atol=1e-6)
    # a 1-step decode of the student is exactly that one-step estimate
    dec = student.eval().decode(z, 1, noise=noise).sample
    torch.testing.assert_close(dec, one_step, rtol=1e-5, atol=1e-6)


def test_distillation_steps_reduce_student_teacher_distance():
    torch.manual_seed(0)
    teacher = build_autoencoder(tiny_config(sigma_min=1e-5))  # also works for a DiTo-style sigma_min
    student = make_student(teacher)
    with torch.no_grad():  # start the student away from the teacher so there is a gap to close
        student.decoder.conv_out.weight.normal_(0.0, 0.2)
    opt = torch.optim.Adam(student_parameters(student), lr=2e-3)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    cfg = DistillationConfig(teacher_steps=4)

    def distance():
        with torch.no_grad():
            return distillation_losses(student, teacher, x, config=cfg, generator=torch.Generator().manual_seed(1))["distill_mse"].item()

    before = distance()
    for _ in range(30):
        loss = distillation_losses(student, teacher, x, config=cfg, generator=torch.Generator().manual_seed(1))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = distance()
    assert after < 0.5 * before, (before, after)
    enc_t = dict(teacher.encoder.named_parameters())
    assert all(torch.equal(p, enc_t[n]) for n, p in student.encoder.named_parameters())  # encoder untouched


def test_training_config_nests_the_one_distillation_config():
    from dataclasses import fields

    from core.training.cli import compose_recipe
    from core.training.config import DistillConfig
    from core.training.run import to_experiment_config
    from recipes.image.ssdd_m_distill import RECIPE

    sampling_fields = {f.name for f in fields(DistillationConfig)}
    assert sampling_fields.isdisjoint(f.name for f in fields(DistillConfig))  # composed, not copied
    cfg = to_experiment_config(compose_recipe(RECIPE, ["distill.sampling.teacher_steps=2", "distill.sampling.power=3"]))
    assert cfg.distill.sampling == DistillationConfig(teacher_steps=2, grid="power", power=3.0)
