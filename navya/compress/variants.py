"""The registry of named compression variants.

A variant is data: a name, a transform and its frozen config. The suite is parametrized over
this registry; adding a variant is one :func:`register` call (plus one budgets entry), never a
new branch in the suite.

A transform is ``fn(model, config, context) -> nn.Module``: it takes the float reference
detector and returns a new model; it never mutates its input (:func:`apply_variant` checks
that in debug runs of the tests, and every transform works on a deep copy).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset


class UnknownVariantError(KeyError):
    """A variant name that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


@dataclass(frozen=True)
class CompressContext:
    """What a transform may use besides the model.

    ``train_dataset`` feeds calibration and fine-tuning (the train split, never the evaluation
    split); ``progress`` shows progress bars for long steps; ``seed`` seeds any sampling.
    """

    train_dataset: Dataset | None = None
    progress: bool = False
    seed: int = 0
    cache: dict = field(default_factory=dict, compare=False)  # shared results (e.g. a fine-tune)


Transform = Callable[[nn.Module, Any, CompressContext], nn.Module]


@dataclass(frozen=True)
class Variant:
    name: str
    transform: Transform
    config: Any = None
    description: str = ""
    tags: tuple[str, ...] = ()  # e.g. ("int8",), ("pruned",), ("slow",) for the long settings

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name) or "," in self.name:
            raise ValueError(f"variant names are non-empty, without spaces or commas: {self.name!r}")

    def apply(self, model: nn.Module, context: CompressContext | None = None) -> nn.Module:
        return self.transform(model, self.config, context or CompressContext())


_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    """Add ``variant`` to the registry; a duplicate name is an error."""
    if variant.name in _REGISTRY:
        raise ValueError(f"variant {variant.name!r} is already registered")
    _REGISTRY[variant.name] = variant
    return variant


def unregister(name: str) -> None:
    """Remove a variant (tests and plugins that inject their own)."""
    _REGISTRY.pop(name, None)


def _ensure_builtin() -> None:
    # the transform modules register their variants on import
    import navya.compress.builtin  # noqa: F401


def variant_names(tag: str | None = None) -> list[str]:
    _ensure_builtin()
    return [n for n, v in _REGISTRY.items() if tag is None or tag in v.tags]


def get_variant(name: str) -> Variant:
    _ensure_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownVariantError(
            f"unknown variant {name!r}; known variants: {', '.join(_REGISTRY)}"
        ) from None


def apply_variant(name: str, model: nn.Module, context: CompressContext | None = None) -> nn.Module:
    return get_variant(name).apply(model, context)


# -- the float variants ------------------------------------------------------------------------


@dataclass(frozen=True)
class NoConfig:
    """Variants without options."""


def identity(model: nn.Module, config: NoConfig, context: CompressContext) -> nn.Module:
    """The fp32 reference itself (a copy, in eval mode)."""
    return copy.deepcopy(model).eval()


def fuse(model: nn.Module, config: NoConfig, context: CompressContext) -> nn.Module:
    """Conv-BN(-ReLU) fused into single convolutions (eval-mode fusion): same function, fewer
    kernels."""
    out = copy.deepcopy(model).eval()
    out.fuse_model(is_qat=False)
    return out


def channels_last(model: nn.Module, config: NoConfig, context: CompressContext) -> nn.Module:
    """Weights and inputs in NHWC memory format: same arithmetic, other kernels."""
    out = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    out.memory_format = torch.channels_last
    return out


register(Variant("fp32", identity, NoConfig(), "the float reference", ("float",)))
register(Variant("fp32-fused", fuse, NoConfig(), "Conv-BN(-ReLU) fused", ("float",)))
register(Variant("fp32-channels-last", channels_last, NoConfig(),
                 "NHWC memory format", ("float",)))
