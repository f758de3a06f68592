"""LPIPS-VGG16: distance properties, frozen-ness, weight loading, and equality with the ``lpips`` package."""

from __future__ import annotations

import functools
import warnings
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from modalities.image.lpips import LPIPS, VGG16_WEIGHTS_ENV, VGG16Features, bundled_lin_weights, channel_normalize
from core.weight_files import MissingWeightsError


def random_lpips() -> LPIPS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LPIPS(allow_random_weights=True)


@pytest.fixture(scope="module")
def metric() -> LPIPS:
    torch.manual_seed(0)
    return random_lpips()


def images(seed: int, shape=(2, 3, 32, 32)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def torchvision_vgg_state(features: VGG16Features, with_classifier: bool = True) -> dict[str, torch.Tensor]:
    """A torchvision-format vgg16 state dict holding ``features``' tensors (plus a dummy classifier)."""
    state = {k: v.clone() for k, v in features.state_dict().items()}
    if with_classifier:
        state["classifier.0.weight"] = torch.zeros(4, 2)
    return state


def test_zero_for_identical_and_positive_symmetric_otherwise(metric, photo_batch):
    x, y = photo_batch, images(1, tuple(photo_batch.shape))
    assert torch.equal(metric(x, x), torch.zeros(x.shape[0]))
    d_xy, d_yx = metric(x, y), metric(y, x)
    assert d_xy.shape == (x.shape[0],) and (d_xy > 0).all()
    torch.testing.assert_close(d_xy, d_yx, rtol=1e-5, atol=1e-7)
    # a small perturbation is closer than an unrelated image
    assert (metric(x, x + 0.02 * images(2, tuple(x.shape))) < d_xy).all()


def test_gradients_reach_both_inputs(metric):
    x = images(3).requires_grad_(True)
    y = images(4).requires_grad_(True)
    metric(x, y).sum().backward()
    for grad in (x.grad, y.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_channel_normalize_has_finite_gradient_at_zero_features():
    feats = torch.zeros(1, 4, 2, 2, requires_grad=True)
    channel_normalize(feats).sum().backward()
    assert torch.isfinite(feats.grad).all()


def test_frozen_network_is_not_trainable_not_saved_and_stays_in_eval(metric):
    assert list(metric.parameters()) == []
    assert metric.state_dict() == {}
    assert len(list(metric.buffers())) > 0 and all(not b.requires_grad for b in metric.buffers())
    metric.train()
    assert not any(m.training for m in metric.modules())


def test_missing_backbone_weights_raise_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.delenv(VGG16_WEIGHTS_ENV, raising=False)
    with pytest.raises(MissingWeightsError, match=VGG16_WEIGHTS_ENV) as err:
        LPIPS()
    assert "vgg16" in str(err.value).lower() and "allow_random_weights" in str(err.value)
    with pytest.raises(MissingWeightsError, match="does not exist"):
        LPIPS(vgg_weights=str(tmp_path / "nope.pth"))
    monkeypatch.setenv(VGG16_WEIGHTS_ENV, str(tmp_path / "missing.safetensors"))
    with pytest.raises(MissingWeightsError, match=VGG16_WEIGHTS_ENV):
        LPIPS()


def test_backbone_loads_from_pth_and_safetensors_and_env(monkeypatch, tmp_path, metric):
    source = VGG16Features()  # fresh random tensors, different from ``metric``'s
    torch.save(torchvision_vgg_state(source), tmp_path / "vgg16.pth")  # full torchvision layout
    features_only = torchvision_vgg_state(source, with_classifier=False)
    save_file({k.removeprefix("features."): v.contiguous() for k, v in features_only.items()}, str(tmp_path / "vgg16.safetensors"))
    from_pth = LPIPS(vgg_weights=str(tmp_path / "vgg16.pth"))
    monkeypatch.setenv(VGG16_WEIGHTS_ENV, str(tmp_path / "vgg16.safetensors"))
    from_env = LPIPS()
    for model in (from_pth, from_env):
        for key, value in source.state_dict().items():
            assert torch.equal(dict(model.vgg.named_buffers())[key], value)
    x, y = images(5), images(6)
    torch.testing.assert_close(from_pth(x, y), from_env(x, y), rtol=0, atol=0)
    assert not torch.allclose(from_pth(x, y), metric(x, y))  # the weights really changed the distance
    # an incomplete or foreign file is refused with the offending tensors named
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "fc.weight": torch.zeros(1)}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"fc\.weight"):
        LPIPS(vgg_weights=str(tmp_path / "broken.pth"))


def test_matches_the_lpips_package_with_the_same_backbone(monkeypatch, tmp_path, photo_batch):
    lpips_pkg = pytest.importorskip("lpips")
    assert bundled_lin_weights() is not None
    from torchvision.models import vgg as tv_vgg

    # torchvision's own vgg16 ``features`` stack, without allocating the 120M-parameter classifier
    monkeypatch.setattr(lpips_pkg.pretrained_networks.tv, "vgg16", lambda **_: SimpleNamespace(features=tv_vgg.make_layers(tv_vgg.cfgs["D"])))
    torch.manual_seed(0)
    reference = lpips_pkg.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    # copy the package's random backbone into a torchvision-format file; slices keep vgg16 indices
    state = {}
    for slice_name in ("slice1", "slice2", "slice3", "slice4", "slice5"):
        for key, value in getattr(reference.net, slice_name).state_dict().items():
            state[f"features.{key}"] = value.clone()
    torch.save(state, tmp_path / "vgg16.pth")
    ours = LPIPS(vgg_weights=str(tmp_path / "vgg16.pth"))  # heads: the package's bundled vgg.pth
    # SSDD's eps patch, applied to the package so both compute the same formula
    monkeypatch.setattr(lpips_pkg, "normalize_tensor", functools.partial(lpips_pkg.normalize_tensor, eps=1e-8))
    x = torch.cat([photo_batch, images(7, (2, 3, 32, 32))])
    y = torch.cat([images(8, tuple(photo_batch.shape)), photo_batch[:2].flip(-1)])
    x_ours, x_ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    d_ours = ours(x_ours, y)
    d_ref = reference(x_ref, y).view(-1)
    torch.testing.assert_close(d_ours, d_ref, rtol=1e-5, atol=1e-7)
    d_ours.sum().backward()
    d_ref.sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-4, atol=1e-9)
    # non-square, larger input
    a, b = images(9, (1, 3, 48, 64)), images(10, (1, 3, 48, 64))
    torch.testing.assert_close(ours(a, b), reference(a, b).view(-1), rtol=1e-5, atol=1e-7)


def test_rejects_bad_shapes(metric):
    with pytest.raises(ValueError, match="same shape"):
        metric(images(0), images(1, (2, 3, 32, 16)))
    with pytest.raises(ValueError, match="16x16"):
        metric(images(0, (1, 3, 8, 8)), images(1, (1, 3, 8, 8)))
