"""Registries: duplicates, lookup errors, and every registered component instantiates."""

from __future__ import annotations

import warnings

import pytest
import torch

from core.modality import Modality, get_modality
from core.registry import (
    DECODERS,
    ENCODERS,
    LOSS_TERMS,
    MODALITIES,
    REGULARIZERS,
    TIME_SAMPLERS,
    DuplicateRegistrationError,
    Registry,
    create,
    list_models,
)
from core.shapes import ShapeRule


def test_duplicate_names_raise_naming_both_definitions():
    reg = Registry("widget")

    @reg.register("a")
    def first():
        return 1

    def second():
        return 2

    with pytest.raises(DuplicateRegistrationError) as info:
        reg.add("a", second)
    message = str(info.value)
    assert "first" in message and "second" in message and "test_registry" in message
    reg.add("a", second, override=True)
    assert reg.create("a") == 2


def test_create_drops_none_and_lists_by_pattern():
    reg = Registry("widget")
    reg.add("w_small", lambda size=3: size)
    reg.add("w_big", lambda size=9: size)
    assert reg.create("w_small", size=None) == 3 and reg.create("w_small", size=5) == 5
    assert reg.list("w_*") == ["w_big", "w_small"] and reg.list("*big") == ["w_big"]
    with pytest.raises(KeyError, match="w_big, w_small"):
        reg.get("nope")


def test_global_create_and_list_models():
    assert "conv_encoder" in list_models("encoder")
    assert {"layernorm", "kl", "identity"} <= set(list_models("regularizer"))
    assert "image" in list_models("modality")
    assert isinstance(list_models(), dict)
    assert create("time_sampler", "logit_normal", mean=0.0, std=1.0).std == 1.0
    with pytest.raises(KeyError):
        create("gizmo", "x")


VIDEO_ONLY = ("causal_video_", "video_dito_")  # the video plugin's (B, C, T, H, W)-only networks
VIDEO_RULE = ShapeRule((4, 8, 8), (True, False, False))

WAVEFORM_ONLY = ("audio_", "strided_conv1d_encoder")  # (B, C, L) models: they refuse spatial_dims=2 with a clear error


WAVEFORM_TERMS = ("mrstft", "mel_l1")


def _waveform_only(name: str) -> bool:
    return name.startswith(WAVEFORM_ONLY)


@pytest.mark.parametrize("name", ENCODERS.list())
def test_every_encoder_instantiates_on_meta(name):
    if name.startswith(VIDEO_ONLY):
        with torch.device("meta"):
            enc = ENCODERS.create(name, spatial_dims=3, in_channels=3, out_channels=8)
            y = enc(torch.empty(1, 3, 17, 64, 64))
        assert y.shape == (1, 8, *enc.shape_rule.latent((17, 64, 64)))
        return
    if _waveform_only(name):
        with torch.device("meta"):
            enc = ENCODERS.create(name, spatial_dims=1, in_channels=3, out_channels=8)
            y = enc(torch.empty(1, 3, 8 * 2560))
        assert y.shape == (1, 8, 8 * 2560 // enc.downsample_factor)
        return
    with torch.device("meta"):
        enc = ENCODERS.create(name, spatial_dims=2, in_channels=3, out_channels=8)
        y = enc(torch.empty(1, 3, 64, 64))
    assert y.shape == (1, 8, 64 // enc.downsample_factor, 64 // enc.downsample_factor)


@pytest.mark.parametrize("name", DECODERS.list())
def test_every_decoder_instantiates_on_meta(name):
    if name.startswith(VIDEO_ONLY):
        with torch.device("meta"):
            dec = DECODERS.create(name, spatial_dims=3, in_channels=3, latent_channels=4, shape_rule=VIDEO_RULE)
            y = dec(torch.empty(1, 3, 5, 64, 64), torch.empty(1), torch.empty(1, 4, 2, 8, 8))
        assert y.shape == (1, 3, 5, 64, 64)
        return
    if _waveform_only(name):
        with torch.device("meta"):
            dec = DECODERS.create(name, spatial_dims=1, in_channels=3, latent_channels=4)  # at its own hop
            hop = dec.upsample_factor
            y = dec(torch.empty(1, 3, 4 * hop), torch.empty(1), torch.empty(1, 4, 4))
        assert y.shape == (1, 3, 4 * hop)
        return
    with torch.device("meta"):
        dec = DECODERS.create(name, spatial_dims=2, in_channels=3, latent_channels=4, upsample_factor=8)
        y = dec(torch.empty(1, 3, 64, 64), torch.empty(1), torch.empty(1, 4, 8, 8))
    assert y.shape == (1, 3, 64, 64)


@pytest.mark.parametrize("name", REGULARIZERS.list())
def test_every_regularizer(name):
    reg = REGULARIZERS.create(name)
    dist = reg(torch.randn(2, 4 * reg.raw_channels_per_latent, 4, 4))
    assert dist.mean.shape == (2, 4, 4, 4) and torch.isfinite(reg.penalty(dist))


@pytest.mark.parametrize("name", TIME_SAMPLERS.list())
def test_every_time_sampler(name):
    t = TIME_SAMPLERS.create(name)(64, generator=torch.Generator().manual_seed(0))
    assert t.shape == (64,) and torch.all((t >= 0) & (t <= 1))


# terms that need a decoder with hooked features are exercised in their own tests
NEEDS_DECODER = {"repa": "tests/test_repa.py"}
# terms whose frozen networks need weight files: build them with random weights here
TERM_KWARGS = {"lpips": {"allow_random_weights": True}, "lpips_frames": {"allow_random_weights": True}}
CLIP_TERMS = {"lpips_frames"}  # video terms: (B, C, T, H, W) inputs


@pytest.mark.parametrize("name", LOSS_TERMS.list())
def test_every_loss_term(name):
    from core.loss_terms import LossInputs

    if name in NEEDS_DECODER:
        pytest.skip(f"needs a decoder; covered by {NEEDS_DECODER[name]}")
    x = torch.rand(2, 3, *((2,) if name in CLIP_TERMS else ()), 16, 16) * 2 - 1
    if name in WAVEFORM_TERMS:
        x = torch.rand(2, 1, 4096) * 2 - 1  # spectral terms compare (B, C, L) waveforms
    inputs = LossInputs(x=x, reference=x, x_t=x, t=torch.rand(2), prediction=x, x0_hat=x * 0.5, z=torch.zeros(2, 4, 4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        term = LOSS_TERMS.create(name, **TERM_KWARGS.get(name, {}))
    assert torch.isfinite(term(inputs))


@pytest.mark.parametrize("name", MODALITIES.list())
def test_every_modality(name):
    modality = get_modality(name)
    assert isinstance(modality, Modality) and modality.name == name and modality.spatial_dims in (1, 2, 3)


def test_core_never_imports_plugins_or_recipes():
    from pathlib import Path

    core_dir = Path(__file__).resolve().parents[1] / "core"
    offenders = []
    for path in core_dir.rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import modalities", "from modalities", "import recipes", "from recipes")):
                offenders.append(f"{path.name}: {stripped}")
    assert not offenders, offenders
