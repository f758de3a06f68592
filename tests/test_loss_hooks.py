"""Core support for auxiliary losses: feature hooks, decoder-aware factories, inference loading, NaN naming."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from core.builder import ComponentConfig, LossTermConfig, build_autoencoder
from core.distill import DistillationConfig, distillation_losses, make_student
from core.feature_hooks import capture_features, requested_feature_modules
from core.loss_terms import LossTerm
from core.nets.frozen import FrozenModule, frozen_buffer_names
from core.pretrained import CheckpointMismatchError, from_pretrained, save_pretrained
from core.registry import LOSS_TERMS
from core.training.config import OptimConfig
from core.training.module import NonFiniteLossError, TokenizerModule
from modalities.image.dinov2 import DINOV2_WEIGHTS_ENV
from modalities.image.lpips import LPIPS, VGG16_WEIGHTS_ENV
from core.weight_files import MissingWeightsError
from tests import tiny_token_decoder
from tests.conftest import tiny_config

DINO_TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2}
RANDOM_TERMS = {
    "lpips": LossTermConfig(0.5, {"allow_random_weights": True}),
    "repa": LossTermConfig(0.25, {"allow_random_weights": True, "dino_config_overrides": DINO_TINY}),
}


@pytest.fixture
def token_decoder():
    with tiny_token_decoder.registered() as name:
        yield name


def build(config, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_autoencoder(config, **kwargs)


def ssdd_like_config(decoder: str, terms=RANDOM_TERMS):
    return tiny_config(decoder=ComponentConfig(decoder, {}), sigma_min=0.0, loss_terms=dict(terms))


def images(seed: int, shape=(2, 3, 32, 32)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------ hooks
def test_capture_features_records_outputs_and_always_removes_hooks():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with capture_features(net, ["0", "2"]) as feats:
        out = net(torch.ones(1, 3))
    assert set(feats) == {"0", "2"} and torch.equal(feats["2"], out)
    assert not any(m._forward_hooks for m in net.modules())
    with pytest.raises(RuntimeError, match="boom"):
        with capture_features(net, ["0"]):
            raise RuntimeError("boom")
    assert not any(m._forward_hooks for m in net.modules())
    with pytest.raises(AttributeError, match="'blocks.9'"):
        with capture_features(net, ["blocks.9"]):
            pass
    net(torch.ones(1, 3))
    assert torch.equal(feats["2"], out)  # nothing recorded after the block


def test_requested_feature_modules_are_distinct_and_skip_terms_without_features():
    class Wants(LossTerm):
        def feature_module(self, decoder):
            return "mid"

    assert requested_feature_modules([Wants(), LossTerm(), Wants()], nn.Identity()) == ["mid"]


def test_builder_passes_the_decoder_only_to_factories_that_ask(token_decoder):
    seen = {}

    def with_decoder(decoder, scale: float = 1.0):
        seen["decoder"] = decoder
        return LossTerm()

    def without_decoder(scale: float = 1.0):
        seen["plain"] = scale
        return LossTerm()

    LOSS_TERMS.add("test_with_decoder", with_decoder, override=True)
    LOSS_TERMS.add("test_without_decoder", without_decoder, override=True)
    try:
        terms = {"test_with_decoder": LossTermConfig(1.0), "test_without_decoder": LossTermConfig(1.0, {"scale": 3.0})}
        model = build(ssdd_like_config(token_decoder, terms))
        assert seen["decoder"] is model.decoder and seen["plain"] == 3.0
        with pytest.raises(ValueError, match="passed by the builder"):
            build(ssdd_like_config(token_decoder, {"test_with_decoder": LossTermConfig(1.0, {"decoder": 1})}))
    finally:
        LOSS_TERMS.remove("test_with_decoder")
        LOSS_TERMS.remove("test_without_decoder")


# ------------------------------------------------------------------------------ both terms
def test_training_and_distillation_with_lpips_and_repa_give_finite_named_terms(token_decoder):
    torch.manual_seed(0)
    model = build(ssdd_like_config(token_decoder))
    x = images(0)
    losses = model.training_losses(x, generator=torch.Generator().manual_seed(0))
    assert {"fm", "lpips", "repa", "loss"} <= set(losses)
    assert all(torch.isfinite(losses[k]) for k in ("lpips", "repa", "loss"))
    manual = losses["fm"] + losses["regularizer"] + 0.5 * losses["lpips"] + 0.25 * losses["repa"]
    torch.testing.assert_close(losses["loss"], manual)
    losses["loss"].backward()
    assert not any(m._forward_hooks for m in model.decoder.modules())
    student = make_student(model)
    out = distillation_losses(student, model, x, config=DistillationConfig(teacher_steps=2), generator=torch.Generator().manual_seed(1))
    assert all(torch.isfinite(out[k]) for k in ("distill_mse", "lpips", "repa", "loss"))
    assert not any(m._forward_hooks for m in student.decoder.modules())


def test_frozen_networks_are_outside_state_dict_optimiser_and_ddp_sync(token_decoder):
    model = build(ssdd_like_config(token_decoder))
    state = model.state_dict()
    assert not any(k.startswith("loss_terms.lpips") for k in state)
    assert sorted(k for k in state if k.startswith("loss_terms.")) == sorted(
        f"loss_terms.repa.projector.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")
    )
    module = TokenizerModule(model, OptimConfig())
    frozen = frozen_buffer_names(module)
    assert any(".lpips.vgg.features.0.weight" in n for n in frozen) and any(".target.dino.net." in n for n in frozen)
    assert module._ddp_params_and_buffers_to_ignore == frozen
    assert not any("projector" in n or n.startswith("autoencoder.decoder") for n in frozen)
    trained = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    assert trained == {id(p) for p in model.parameters()}  # projector included, frozen nets absent


def test_frozen_module_wrapper_keeps_values_and_eval_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.BatchNorm1d(3))
    x = torch.randn(4, 3)
    expected = net.eval()(x)
    frozen = FrozenModule(net)
    frozen.train()
    assert list(frozen.parameters()) == [] and frozen.state_dict() == {}
    torch.testing.assert_close(frozen(x), expected)  # dropout and batch-norm statistics still off


def test_frozen_losses_are_fp32_under_bf16_autocast():
    """The CUDA path runs under bf16 autocast; the frozen networks compute in fp32 either way."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = LPIPS(allow_random_weights=True)
    x, y = images(1), images(2)
    reference = metric(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = metric(x.bfloat16(), y.bfloat16())
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, metric(x.bfloat16().float(), y.bfloat16().float()), rtol=0, atol=0)
    torch.testing.assert_close(low, reference, rtol=0.05, atol=1e-3)


# ---------------------------------------------------------------------------- NaN naming
def test_nan_from_an_auxiliary_term_names_the_term(token_decoder, monkeypatch):
    model = build(ssdd_like_config(token_decoder))
    monkeypatch.setattr(LPIPS, "forward", lambda self, x, y: torch.full((x.shape[0],), float("nan")))
    module = TokenizerModule(model, OptimConfig())
    with pytest.raises(NonFiniteLossError, match=r"step 0: .*'lpips': nan") as err:
        module.training_step(images(3), 0)
    assert "'repa'" not in str(err.value)  # only the bad terms are named


# ----------------------------------------------------------------------- inference loading
def test_from_pretrained_needs_no_loss_weights(token_decoder, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = build(ssdd_like_config(token_decoder))
    # record the objective as a real run would: real weight files that this machine does not have
    model.config.loss_terms = {
        "lpips": LossTermConfig(0.5, {"vgg_weights": "/nowhere/vgg16.pth"}),
        "repa": LossTermConfig(0.25, {"dino_weights": "/nowhere/dinov2-base"}),
    }
    save_pretrained(model, tmp_path / "export")
    saved = json.loads(Path(tmp_path / "export" / "config.json").read_text())
    assert set(saved["autoencoder"]["loss_terms"]) == {"lpips", "repa"}
    for env in (VGG16_WEIGHTS_ENV, DINOV2_WEIGHTS_ENV):
        monkeypatch.delenv(env, raising=False)

    loaded = from_pretrained(tmp_path / "export", modality="image")
    assert len(loaded.loss_terms) == 0
    z = loaded.encode(images(4)).latent_dist.mode()
    noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded.decode(z, 2, noise=noise).sample, model.eval().decode(z, 2, noise=noise).sample)
    with pytest.raises(MissingWeightsError):
        from_pretrained(tmp_path / "export", with_loss_terms=True)


def test_from_pretrained_with_loss_terms_is_strict(token_decoder, tmp_path):
    torch.manual_seed(0)
    model = build(ssdd_like_config(token_decoder))
    save_pretrained(model, tmp_path / "export")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = from_pretrained(tmp_path / "export", with_loss_terms=True)
    torch.testing.assert_close(full.loss_terms["repa"].projector[0].weight, model.loss_terms["repa"].projector[0].weight)
    # without terms only loss_terms.* keys are skipped; anything else unexpected still fails
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "export" / "model.safetensors"
    state = load_file(str(weights))
    state["decoder.extra"] = torch.zeros(1)
    save_file(state, str(weights))
    with pytest.raises(CheckpointMismatchError, match="decoder.extra"):
        from_pretrained(tmp_path / "export")
