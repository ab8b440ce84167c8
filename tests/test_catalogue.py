"""Tests for navya.compress.base (transforms chosen by config type) and navya.catalogue (the
named variants, in suite order)."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from navya import catalogue
from navya.catalogue import UnknownVariantError, Variant, get_variant, register, variant_names
from navya.compress.base import (
    CompressContext,
    UnknownConfigError,
    apply_transform,
    config_to_dict,
    register_transform,
    registered_configs,
    transform_for,
)
from navya.compress.fp32 import ChannelsLastConfig, Fp32Config, FuseConfig, identity
from navya.compress.prune import StructuredConfig, StructuredInt8Config, prune_structured_int8
from navya.compress.quantize import PTQConfig, quantize_static
from navya.errors import NavyaError

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ScaleConfig:
    factor: float = 2.0


@register_transform(ScaleConfig)
def scale(model: nn.Module, config: ScaleConfig, context: CompressContext) -> nn.Module:
    out = nn.Linear(2, 2)
    with torch.no_grad():
        out.weight.copy_(model.weight * config.factor)
        out.bias.copy_(model.bias * config.factor)
    return out


def test_the_config_type_selects_the_transform():
    model = nn.Linear(2, 2)
    out = apply_transform(model, ScaleConfig(3.0))
    torch.testing.assert_close(out.weight, 3.0 * model.weight)
    same = apply_transform(model, Fp32Config())
    assert same is not model and torch.equal(same.weight, model.weight) and not same.training
    assert transform_for(PTQConfig) is quantize_static
    assert transform_for(StructuredInt8Config) is prune_structured_int8
    assert transform_for(Fp32Config) is identity
    assert len({transform_for(t) for t in (Fp32Config, FuseConfig, ChannelsLastConfig)}) == 3


def test_an_unknown_config_type_names_itself_and_the_registered_ones():
    @dataclass(frozen=True)
    class Nowhere:
        pass

    with pytest.raises(UnknownConfigError, match=r"config type .*Nowhere; registered config "
                                                 r"types: .*PTQConfig.*StructuredConfig") as exc:
        apply_transform(nn.Linear(2, 2), Nowhere())
    assert isinstance(exc.value, NavyaError) and isinstance(exc.value, TypeError)
    with pytest.raises(UnknownConfigError):
        register(Variant("nowhere", Nowhere()))
    assert "nowhere" not in variant_names()


def test_register_transform_wants_one_frozen_dataclass_per_transform():
    @dataclass
    class Mutable:
        pass

    with pytest.raises(TypeError, match="frozen"):
        register_transform(Mutable)
    with pytest.raises(TypeError, match="dataclass"):
        register_transform(dict)
    with pytest.raises(ValueError, match="already has a transform"):
        register_transform(ScaleConfig)(lambda model, config, context: model)
    assert register_transform(ScaleConfig)(scale) is scale  # the same function again: a no-op
    assert ScaleConfig in registered_configs()


def test_config_to_dict_is_json_and_nests():
    d = config_to_dict(StructuredInt8Config(StructuredConfig(0.3), quantize=PTQConfig()))
    assert d["type"] == "StructuredInt8Config"
    assert d["structured"]["type"] == "StructuredConfig" and d["structured"]["ratio"] == 0.3
    assert d["quantize"] == config_to_dict(PTQConfig())
    assert d["quantize"]["keep_float"] == []  # tuples become lists
    assert json.loads(json.dumps(d)) == d
    assert config_to_dict(Fp32Config()) == {"type": "Fp32Config"}
    with pytest.raises(TypeError):
        config_to_dict(PTQConfig)  # the class, not a config


def test_builtin_variants_in_the_order_of_the_budgets_file():
    """The default model budgets every variant that fits it, in registration order; another
    model's section budgets only variants that fit it, and every variant of one model only."""
    from navya.catalogue import DEFAULT_MODEL, MODELS

    with open(REPO / "benchmarks" / "budgets.toml", "rb") as f:
        data = tomllib.load(f)
    fits = [n for n in variant_names() if get_variant(n).fits(DEFAULT_MODEL)]
    assert fits == list(data["variants"])
    for model, section in data.get("models", {}).items():
        assert model in MODELS
        assert all(get_variant(n).fits(model) for n in section["variants"])
    for name in variant_names():
        if get_variant(name).models:
            assert any(name in data["models"][m]["variants"] for m in get_variant(name).models)


def test_variants_are_data():
    v = get_variant("prune-l1-structured-30-int8")
    assert v.config.quantize == get_variant("int8-ptq").config  # nested, not a variant name
    assert v.config.structured == get_variant("prune-l1-structured-30").config
    assert v.config_dict()["quantize"]["type"] == "PTQConfig"
    assert v.transform is prune_structured_int8
    for name in variant_names():
        json.dumps(get_variant(name).config_dict())
        assert dataclasses.is_dataclass(get_variant(name).config)


def test_register_and_unregister():
    v = register(Variant("test-scale", ScaleConfig(), "doubles", ("test",)))
    try:
        assert get_variant("test-scale") is v and variant_names("test") == ["test-scale"]
        with pytest.raises(ValueError, match="already registered"):
            register(Variant("test-scale", ScaleConfig()))
        model = nn.Linear(2, 2)
        torch.testing.assert_close(catalogue.apply_variant("test-scale", model).weight,
                                   2.0 * model.weight)
    finally:
        catalogue.unregister("test-scale")
    assert "test-scale" not in variant_names()
    with pytest.raises(ValueError, match="without spaces"):
        Variant("a b", ScaleConfig())


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(UnknownVariantError, match=r"unknown variant 'nope'; known variants: "
                                                  r"fp32, fp32-fused") as exc:
        get_variant("nope")
    assert isinstance(exc.value, KeyError) and isinstance(exc.value, NavyaError)
    assert str(exc.value).startswith("unknown variant 'nope'")  # not quoted like a KeyError
