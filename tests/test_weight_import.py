"""core.weight_import (rename-based foreign import with full accounting) and the LDM encoder key map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from core.nets import ConvEncoder
from core.weight_import import WeightImportError, import_state_dict, rename_state_dict
from modalities.image.official.ldm_encoder import ldm_encoder_key

MANIFESTS = Path(__file__).parent / "data" / "official_weights"  # copies of the spec's state-dict manifests


class Foreign(nn.Module):
    """A small "official" model with other names."""

    def __init__(self) -> None:
        super().__init__()
        self.lin_a = nn.Linear(3, 4)
        self.lin_b = nn.Linear(4, 2)


class Ours(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(3, 4)
        self.second = nn.Linear(4, 2, dtype=torch.float64)


def rename(key: str) -> str | None:
    table = {"lin_a": "first", "lin_b": "second"}
    module, _, param = key.partition(".")
    if module == "ignored":
        return None
    return f"{table[module]}.{param}"  # KeyError for unknown modules


def foreign_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in Foreign().state_dict().items()}


def test_import_copies_every_tensor_and_converts_dtype():
    ours, state = Ours(), foreign_state()
    import_state_dict(ours, state, rename)
    assert torch.equal(ours.first.weight, state["lin_a.weight"])
    assert ours.second.weight.dtype == torch.float64
    torch.testing.assert_close(ours.second.bias, state["lin_b.bias"].double())


def test_deliberately_dropped_tensors_are_allowed():
    ours, state = Ours(), foreign_state()
    state["ignored.extra"] = torch.zeros(5)
    import_state_dict(ours, state, rename)
    assert torch.equal(ours.second.bias, state["lin_b.bias"].double())


def test_unknown_foreign_tensor_is_named():
    state = foreign_state()
    state["lin_c.weight"] = torch.zeros(1)
    with pytest.raises(WeightImportError, match=r"1 checkpoint tensors have no difftok counterpart: lin_c\.weight"):
        import_state_dict(Ours(), state, rename)


def test_missing_tensor_is_named_and_nothing_is_copied():
    ours = Ours()
    before = ours.first.weight.detach().clone()
    state = foreign_state()
    del state["lin_b.bias"]
    with pytest.raises(WeightImportError, match=r"difftok tensors were not filled: second\.bias"):
        import_state_dict(ours, state, rename)
    assert torch.equal(ours.first.weight, before), "a failed import must not copy anything"


def test_shape_mismatch_names_both_keys_and_shapes():
    state = foreign_state()
    state["lin_a.weight"] = torch.zeros(4, 5)
    with pytest.raises(WeightImportError, match=r"first\.weight \(from lin_a\.weight\): checkpoint \(4, 5\) vs difftok \(4, 3\)"):
        import_state_dict(Ours(), state, rename)


def test_renamed_name_absent_from_model_names_its_origin():
    def bad_rename(key: str) -> str:
        return "third.weight" if key == "lin_b.weight" else rename(key)

    with pytest.raises(WeightImportError, match=r"third\.weight \(from lin_b\.weight\)"):
        import_state_dict(Ours(), foreign_state(), bad_rename)


def test_two_keys_filling_one_name_is_refused():
    with pytest.raises(WeightImportError, match=r"filled twice: lin_a\.weight and lin_b\.weight -> first\.weight"):
        rename_state_dict(foreign_state(), lambda k: "first.weight" if k.endswith("weight") else k)


def test_ldm_encoder_key_maps_the_official_encoder_one_to_one():
    """Every DiTo ``encoder.0.*`` tensor maps onto a distinct ConvEncoder tensor of the same shape."""
    manifest = json.loads((MANIFESTS / "dito-B-f8c4.json").read_text())
    official = {n.removeprefix("encoder.0."): s for n, s in manifest["state_dict"] if n.startswith("encoder.0.")}
    with torch.device("meta"):
        encoder = ConvEncoder(2, 3, 4, 128, (1, 2, 4, 4), 2, 32)
    ours = {k: tuple(v.shape) for k, v in encoder.state_dict().items() if not k.startswith("quant_conv.")}
    mapped = {ldm_encoder_key(k): tuple(s) for k, s in official.items()}
    assert mapped == ours
    assert ldm_encoder_key("down.1.downsample.conv.weight") == "levels.1.2.conv.weight"
    assert ldm_encoder_key("mid.attn_1.proj_out.bias") == "mid.1.proj_out.bias"
    with pytest.raises(KeyError):
        ldm_encoder_key("down.0.block.0.norm3.weight")
