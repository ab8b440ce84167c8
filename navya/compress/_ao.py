"""The one module of navya that calls ``torch.ao.quantization`` (eager-mode quantization).

``torch.ao.quantization`` is deprecated in favour of torchao (each ``prepare``, ``convert``,
``prepare_qat`` and ``quantize_dynamic`` call emits a ``DeprecationWarning``); navya keeps the
eager API because it is what runs the quantized kernels on this torch release. Every call is
wrapped here in :func:`_quiet`, a ``warnings.catch_warnings()`` block that ignores exactly
that deprecation message (and torch's notice that quantized tensor *creation* functions are
deprecated, emitted while weights are packed during ``convert``). Nothing is filtered
globally, and every other warning still reaches the caller.

Qconfigs are built here with explicit ``quant_min``/``quant_max`` ranges instead of the
``reduce_range`` flag (which emits a warning of its own): the same ranges as torch's
``get_default_qconfig(engine)`` / ``get_default_qat_qconfig(engine)`` when ``reduce_range`` is
left to the engine's default.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

# The stubs, re-exported: navya imports torch.ao.quantization in this module only.
from torch.ao.quantization import DeQuantStub, QuantStub

# Engine settings live in navya.runtime (torch.backends.quantized only); re-exported for the
# transforms of navya.compress.
from navya.runtime import ENGINES, quantized_engine, supported_engines

__all__ = [
    "ENGINES",
    "DeQuantStub",
    "QuantStub",
    "convert",
    "disable_observer",
    "freeze_bn_stats",
    "is_quantized_module",
    "ptq_qconfig",
    "prepare",
    "prepare_qat",
    "qat_qconfig",
    "quantize_dynamic",
    "quantized_engine",
    "supported_engines",
]

# Regexes matched against the start of the warning message (``warnings.filterwarnings``).
_DEPRECATED_AO = r"torch\.ao\.quantization is deprecated"
_DEPRECATED_QTENSOR = (r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other "
                       r"quantized tensor creation functions")


@contextmanager
def _quiet() -> Iterator[None]:
    """Ignore torch.ao's own deprecation notices, and nothing else, inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATED_AO, category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=_DEPRECATED_QTENSOR, category=UserWarning)
        yield


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with _quiet():
        return fn(*args, **kwargs)


# -- qconfigs --------------------------------------------------------------------------------


def _default_reduce_range(engine: str) -> bool:
    # torch's defaults: 7-bit activations on fbgemm/x86 (no int16 overflow in the u8*s8
    # multiply-adds of CPUs without VNNI), 8-bit on onednn and qnnpack.
    return engine in ("x86", "fbgemm")


def _activation_range(engine: str, reduce_range: bool | None) -> tuple[int, int]:
    if reduce_range is None:
        reduce_range = _default_reduce_range(engine)
    return (0, 127) if reduce_range else (0, 255)


def ptq_qconfig(engine: str, *, activation_observer: str = "histogram", per_channel: bool = True,
                reduce_range: bool | None = None):
    """Static PTQ qconfig: quint8 affine activations (histogram or min-max observer) and qint8
    symmetric weights, per output channel or per tensor."""
    from torch.ao.quantization import (
        HistogramObserver,
        MinMaxObserver,
        PerChannelMinMaxObserver,
        QConfig,
    )

    qmin, qmax = _activation_range(engine, reduce_range)
    observers = {"histogram": HistogramObserver, "minmax": MinMaxObserver}
    activation = observers[activation_observer].with_args(
        dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=qmin, quant_max=qmax)
    if per_channel:
        weight = PerChannelMinMaxObserver.with_args(
            dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-128,
            quant_max=127)
    else:
        weight = MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric,
                                          quant_min=-128, quant_max=127)
    return QConfig(activation=activation, weight=weight)


def qat_qconfig(engine: str, *, per_channel: bool = True, reduce_range: bool | None = None):
    """QAT qconfig: torch's ``get_default_qat_qconfig(engine)`` (version 1, fused moving-average
    observer + fake quantize), with the activation range given explicitly."""
    from torch.ao.quantization import (
        FusedMovingAvgObsFakeQuantize,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        QConfig,
    )

    qmin, qmax = _activation_range(engine, reduce_range)
    activation = FusedMovingAvgObsFakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver, quant_min=qmin, quant_max=qmax,
        dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    if per_channel:
        weight = FusedMovingAvgObsFakeQuantize.with_args(
            observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127,
            dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    else:
        weight = FusedMovingAvgObsFakeQuantize.with_args(
            observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127,
            dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    return QConfig(activation=activation, weight=weight)


# -- the eager flow --------------------------------------------------------------------------


def prepare(module: nn.Module) -> nn.Module:
    """Insert observers in place (``module.qconfig`` set beforehand); returns ``module``."""
    from torch.ao.quantization import prepare as _prepare

    return _call(_prepare, module, inplace=True)


def prepare_qat(module: nn.Module) -> nn.Module:
    """Swap in QAT modules (fake quantization) in place; ``module`` in train mode."""
    from torch.ao.quantization import prepare_qat as _prepare_qat

    return _call(_prepare_qat, module, inplace=True)


def convert(module: nn.Module, engine: str) -> nn.Module:
    """Convert an observed / QAT module to quantized modules in place, packing the weights for
    ``engine``; returns ``module``."""
    from torch.ao.quantization import convert as _convert

    with quantized_engine(engine):
        return _call(_convert, module, inplace=True)


def quantize_dynamic(module: nn.Module, types: Iterable[type], engine: str) -> nn.Module:
    """Dynamic quantization (int8 weights, activations quantized on the fly) of the modules of
    the given types; returns a new module."""
    from torch.ao.quantization import quantize_dynamic as _quantize_dynamic

    with quantized_engine(engine):
        return _call(_quantize_dynamic, module, set(types), dtype=torch.qint8, inplace=False)


def disable_observer(module: nn.Module) -> None:
    """Freeze the quantization parameters of every fake-quantize module in ``module``."""
    from torch.ao.quantization import disable_observer as _disable

    with _quiet():
        module.apply(_disable)


def freeze_bn_stats(module: nn.Module) -> None:
    """Stop updating batch-norm running statistics in fused QAT Conv-BN modules."""
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats as _freeze

    with _quiet():
        module.apply(_freeze)


def is_quantized_module(module: nn.Module) -> bool:
    """True for a converted INT8 compute module of ``torch.ao.nn.quantized`` (static or
    dynamic: convolutions, linears, quantized adds, quantize/dequantize, activations), not for
    the float ``FloatFunctional`` placeholder nor the packed-parameter holders inside a
    quantized linear."""
    from torch.ao.nn.quantized import FloatFunctional

    kind = type(module)
    return (kind.__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized"))
            and not isinstance(module, FloatFunctional)
            and not kind.__name__.endswith("PackedParams"))
