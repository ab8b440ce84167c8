"""Transforms chosen by their config's type (the torchao pattern).

A transform is ``fn(model, config, context) -> nn.Module``: it takes the float reference
detector and returns a new model; it never mutates its input (every transform works on a deep
copy). Each transform is registered for its own frozen config dataclass with
:func:`register_transform`; :func:`apply_transform` looks the handler up by ``type(config)``.
The config therefore *is* the choice of transform: ``apply_transform(model, PTQConfig())``
quantizes, ``apply_transform(model, StructuredConfig(0.3))`` prunes. Named variants (a name,
a config, a description, tags) are the business of :mod:`navya.catalogue`; transforms never
import it.

:func:`config_to_dict` gives a config's JSON form: ``{"type": "PTQConfig", "engine": "x86",
...}``, nested configs the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn
from torch.utils.data import Dataset

from navya.errors import NavyaError

__all__ = [
    "CompressContext",
    "Transform",
    "UnknownConfigError",
    "apply_transform",
    "apply_transform_info",
    "config_to_dict",
    "register_transform",
    "registered_configs",
    "transform_for",
]


@dataclass(frozen=True)
class CompressContext:
    """What a transform may use besides the model.

    ``train_dataset`` feeds calibration and fine-tuning (the train split, never the evaluation
    split); ``progress`` shows progress bars for long steps; ``seed`` seeds any sampling;
    ``min_calibration_images`` the fewest calibration images (a small real train split).
    ``artifacts``: an :class:`~navya.compress.cache.ArtifactCache` that keeps results between
    runs (None: every transform runs).
    """

    train_dataset: Dataset | None = None
    progress: bool = False
    seed: int = 0
    cache: dict = field(default_factory=dict, compare=False)  # shared results (e.g. a fine-tune)
    artifacts: Any = field(default=None, compare=False)
    #: the fewest images a calibration that asks for a fraction of the train split uses (the
    #: whole split when it is smaller); 1: the fraction as it is
    min_calibration_images: int = 1


@dataclass(frozen=True)
class BuildInfo:
    """How a variant's model came to be in this run.

    ``source``: ``"built"`` (the transform ran now), ``"cache"`` (read from the artifact cache),
    ``"uncached"`` (built; no cache, or the result cannot be cached: ``why``) or
    ``"prebuilt"`` (a model handed to the engine). ``build_s``: seconds the transform took
    when it was built (for a cache hit, at that time, on ``built_at``); ``load_s``: seconds
    reading the entry took; ``key``: the cache key (None when uncached).
    """

    source: str
    build_s: float
    load_s: float = 0.0
    key: str | None = None
    built_at: str | None = None
    why: str | None = None

    @property
    def cached(self) -> bool:
        return self.source == "cache"

    def describe(self) -> str:
        if self.source == "cache":
            return (f"from cache (built in {self.build_s:.1f} s on {self.built_at}; "
                    f"read in {self.load_s:.2f} s)")
        if self.source == "built":
            return f"built in {self.build_s:.1f} s ({self.why})" if self.why else \
                f"built in {self.build_s:.1f} s"
        if self.source == "uncached":
            return f"built in {self.build_s:.1f} s, not cached ({self.why})"
        return self.source


Transform = Callable[[nn.Module, Any, CompressContext], nn.Module]
F = TypeVar("F", bound=Callable[..., nn.Module])


class UnknownConfigError(NavyaError, TypeError):
    """A config whose type has no registered transform; the message lists the registered
    config types."""


_TRANSFORMS: dict[type, Transform] = {}


def _check_config_type(config_type: Any) -> None:
    if not (isinstance(config_type, type) and dataclasses.is_dataclass(config_type)):
        raise TypeError(f"transforms are registered for config dataclasses, got {config_type!r}")
    if not config_type.__dataclass_params__.frozen:
        raise TypeError(f"{config_type.__qualname__} must be a frozen dataclass "
                        "(@dataclass(frozen=True)): a config is an immutable value")


def register_transform(config_type: type) -> Callable[[F], F]:
    """Decorator: register ``fn(model, config, context)`` as THE transform for configs of
    exactly ``config_type`` (a frozen dataclass). Returns ``fn`` unchanged.

    Raises:
        TypeError: ``config_type`` is not a frozen dataclass.
        ValueError: another function is already registered for ``config_type``.
    """
    _check_config_type(config_type)

    def decorator(fn: F) -> F:
        existing = _TRANSFORMS.get(config_type)
        if existing is not None and existing is not fn:
            raise ValueError(f"{config_type.__qualname__} already has a transform: "
                             f"{existing.__module__}.{existing.__qualname__}")
        _TRANSFORMS[config_type] = fn
        return fn

    return decorator


def registered_configs() -> tuple[type, ...]:
    """The config types that have a transform, in registration order."""
    return tuple(_TRANSFORMS)


def _names(types: tuple[type, ...]) -> str:
    return ", ".join(t.__qualname__ for t in types) or "none"


def transform_for(config_type: type) -> Transform:
    """The transform registered for ``config_type`` (exactly that type, not a subclass).

    Raises:
        UnknownConfigError: none is registered; the message lists the registered types.
    """
    try:
        return _TRANSFORMS[config_type]
    except (KeyError, TypeError):
        name = getattr(config_type, "__qualname__", repr(config_type))
        raise UnknownConfigError(
            f"no transform is registered for config type {name}; registered config types: "
            f"{_names(registered_configs())} (register one with "
            "@navya.compress.base.register_transform)") from None


def apply_transform(model: nn.Module, config: Any,
                    context: CompressContext | None = None) -> nn.Module:
    """Run the transform registered for ``type(config)`` on ``model``; returns the new model
    (from ``context.artifacts`` when it holds the result: :func:`apply_transform_info`).

    Raises:
        UnknownConfigError: no transform is registered for that config type.
    """
    return apply_transform_info(model, config, context)[0]


def apply_transform_info(model: nn.Module, config: Any, context: CompressContext | None = None):
    """:func:`apply_transform`, and how the model came to be: ``(model,`` a
    :class:`BuildInfo` ``)``. With ``context.artifacts``, the result is
    looked up by a hash of everything it depends on and the transform runs only on a miss
    (then its result is stored)."""
    import time

    context = context or CompressContext()
    fn = transform_for(type(config))
    if context.artifacts is not None:
        return context.artifacts.build(lambda: fn(model, config, context), model, config,
                                       context)
    t0 = time.perf_counter()
    out = fn(model, config, context)
    return out, BuildInfo("uncached", time.perf_counter() - t0, why="no artifact cache")


def _jsonable(value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(f"{where}: {type(value).__name__} value {value!r} has no JSON form")


def config_to_dict(config: Any) -> dict[str, Any]:
    """``{"type": <class name>, <field>: <value>, ...}`` for a config dataclass, recursively
    (a nested config becomes its own dict; tuples become lists): JSON-serializable.

    Raises:
        TypeError: ``config`` is not a dataclass instance, or a field holds a value with no
            JSON form.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config_to_dict takes a config dataclass instance, got {config!r}")
    name = type(config).__name__
    out: dict[str, Any] = {"type": name}
    for f in dataclasses.fields(config):
        out[f.name] = _jsonable(getattr(config, f.name), f"{name}.{f.name}")
    return out
