"""REPA: DINOv2 targets, token grids, gradients, hooks, distillation semantics, clear errors."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from core.builder import ComponentConfig, LossTermConfig, build_autoencoder
from core.distill import DistillationConfig, distillation_losses, make_student, student_parameters
from modalities.image.dinov2 import DINOV2_WEIGHTS_ENV, DINOv2Target
from modalities.image.weight_files import MissingWeightsError
from tests import tiny_token_decoder
from tests.conftest import tiny_config

DINO_TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2}


def repa_config(decoder: str, **repa_kwargs):
    kwargs = {"allow_random_weights": True, "dino_config_overrides": DINO_TINY, **repa_kwargs}
    return tiny_config(decoder=ComponentConfig(decoder, {}), sigma_min=0.0, loss_terms={"repa": LossTermConfig(0.25, kwargs)})


@pytest.fixture
def token_decoder():
    with tiny_token_decoder.registered() as name:
        yield name


@pytest.fixture(scope="module")
def tiny_dino() -> DINOv2Target:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DINOv2Target(allow_random_weights=True, config_overrides=DINO_TINY)


def build(config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_autoencoder(config)


def images(seed: int, shape) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("shape, grid", [((2, 3, 32, 32), (4, 4)), ((1, 3, 64, 96), (8, 12))])
def test_dino_input_size_gives_one_token_per_decoder_token(tiny_dino, shape, grid):
    x = images(0, shape)
    pixels = tiny_dino.preprocess(x, grid)
    assert pixels.shape == (shape[0], 3, grid[0] * 14, grid[1] * 14)  # 64x96 -> 112x168
    tokens = tiny_dino(x, grid)
    assert tokens.shape == (shape[0], grid[0] * grid[1], 32) and tokens.dtype == torch.float32
    # ImageNet normalisation of the [0, 1] image: a mid-grey image maps to (0.5 - mean) / std everywhere
    grey = tiny_dino.preprocess(torch.zeros(1, 3, 16, 16), (2, 2))
    torch.testing.assert_close(grey[0, :, 3, 3], (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


def test_dino_is_frozen_and_absent_from_state_dict(tiny_dino):
    assert list(tiny_dino.parameters()) == [] and tiny_dino.state_dict() == {}
    tiny_dino.train()
    assert not any(m.training for m in tiny_dino.dino.modules())


def test_default_dino_is_the_base_configuration():
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dino = DINOv2Target(allow_random_weights=True)
    assert (dino.hidden_size, dino.patch_size, len(dino.dino.net.encoder.layer)) == (768, 14, 12)


def test_missing_dino_weights_raise_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.delenv(DINOV2_WEIGHTS_ENV, raising=False)
    with pytest.raises(MissingWeightsError, match=DINOV2_WEIGHTS_ENV):
        DINOv2Target()
    with pytest.raises(MissingWeightsError, match="config.json"):
        DINOv2Target(str(tmp_path))


def test_dino_loads_a_local_hugging_face_folder(monkeypatch, tmp_path, tiny_dino):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(1)
    reference = Dinov2Model(Dinov2Config(**DINO_TINY)).eval()
    reference.save_pretrained(str(tmp_path))
    monkeypatch.setenv(DINOV2_WEIGHTS_ENV, str(tmp_path))
    loaded = DINOv2Target()
    x = images(1, (1, 3, 32, 48))
    expected = reference(pixel_values=loaded.preprocess(x, (4, 6))).last_hidden_state[:, 1:]
    torch.testing.assert_close(loaded(x, (4, 6)), expected)
    assert not torch.allclose(loaded(x, (4, 6)), tiny_dino(x, (4, 6)))


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 64, 96)])
def test_repa_loss_value_gradients_and_hook_cleanup(token_decoder, shape):
    torch.manual_seed(0)
    model = build(repa_config(token_decoder))
    term = model.loss_terms["repa"]
    assert term.feature_module(model.decoder) == "blocks.0"
    x = images(2, shape)
    losses = model.training_losses(x, generator=torch.Generator().manual_seed(0))
    assert 0.0 <= losses["repa"].item() <= 2.0
    # REPA alone: gradients reach the hooked block and the projector, not the later block
    losses["repa"].backward()
    grad = {n: p.grad for n, p in model.named_parameters()}
    assert grad["decoder.blocks.0.mlp.0.weight"].abs().sum() > 0
    assert grad["loss_terms.repa.projector.2.weight"].abs().sum() > 0
    assert grad["decoder.blocks.1.mlp.0.weight"] is None and grad["decoder.unpatch.weight"] is None
    assert list(term.target.parameters()) == [] and all(b.grad is None for b in term.target.buffers())
    assert not any(m._forward_hooks for m in model.decoder.modules())  # hook removed after the call


def test_repa_value_is_one_minus_cosine_to_the_real_image_tokens(token_decoder, monkeypatch):
    torch.manual_seed(0)
    teacher = build(repa_config(token_decoder))
    student = make_student(teacher)
    term = student.loss_terms["repa"]
    seen = {}
    target_forward = type(term.target).forward

    def spy(self, images, grid):
        seen["images"] = images
        return target_forward(self, images, grid)

    monkeypatch.setattr(type(term.target), "forward", spy)
    captured = {}
    student.decoder.blocks[0].register_forward_hook(lambda m, a, out: captured.setdefault("tokens", out))
    x = images(3, (2, 3, 32, 32))
    losses = distillation_losses(student, teacher, x, config=DistillationConfig(teacher_steps=2), generator=torch.Generator().manual_seed(1))
    assert torch.equal(seen["images"], x)  # the real image, not the teacher output
    with torch.no_grad():
        expected = 1 - F.cosine_similarity(term.projector(captured["tokens"]), target_forward(term.target, x, (4, 4)), dim=-1).mean()
    torch.testing.assert_close(losses["repa"].detach(), expected)
    assert any(p is term.projector[0].weight for p in student_parameters(student))  # the projector trains too


def test_decoder_without_repa_attributes_is_a_clear_error():
    with pytest.raises(ValueError, match="repa_module.*remove the 'repa' loss term"):
        build(tiny_config(loss_terms={"repa": LossTermConfig(0.25, {"allow_random_weights": True, "dino_config_overrides": DINO_TINY})}))


def test_token_count_mismatch_names_the_fix(token_decoder):
    cfg = repa_config(token_decoder)
    model = build(cfg)
    model.loss_terms["repa"].token_stride = 4  # wrong stride: 32x32 would need 8x8 tokens
    with pytest.raises(ValueError, match="token_stride"):
        model.training_losses(images(4, (1, 3, 32, 32)))


def test_repa_hooks_the_ssdd_decoder_block():
    from modalities.image.ssdd.config import ssdd_config

    torch.manual_seed(0)
    repa_kwargs = {"allow_random_weights": True, "dino_config_overrides": DINO_TINY}
    cfg = ssdd_config("tiny", lpips_weight=0.0, repa_kwargs=repa_kwargs)
    cfg.encoder = ComponentConfig("conv_encoder", {"base_channels": 8, "channels_mult": [1, 1, 1, 1], "num_res_blocks": 1, "num_groups": 4})
    model = build(cfg)
    name = model.loss_terms["repa"].feature_module(model.decoder)
    assert name == model.decoder.repa_module and model.decoder.get_submodule(name) is not None
    losses = model.training_losses(images(5, (1, 3, 32, 32)), generator=torch.Generator().manual_seed(0))
    assert 0.0 <= losses["repa"].item() <= 2.0
    losses["repa"].backward()
    block_grads = [p.grad for p in model.decoder.get_submodule(name).parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in block_grads)
