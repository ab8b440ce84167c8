"""Quantization transforms: INT8 static (PTQ, mixed precision), dynamic, QAT, PT2E; bf16/fp16.

Every transform is ``fn(model, config, context) -> new model``, registered for its config
class (:mod:`navya.compress.base`): it deep-copies the float detector first and never mutates
its input. Only ``model.core`` (the convolutional network of :class:`~navya.models.SSDLite`) is
quantized or cast; anchors, box decoding and NMS stay float.

The variants built on these transforms (registered by :mod:`navya.catalogue`):

========================  ==========================================================================
``int8-ptq``              eager static PTQ: Conv-BN(-ReLU) fused, per-tensor int8 weights, histogram
                          (or min-max) quint8 activations, calibrated on a seeded subset of the
                          train split; ``keep_float`` keeps named blocks in float (mixed precision).
``int8-ptq-per-channel``  the same with per-output-channel int8 weights.
``int8-dynamic``          ``quantize_dynamic`` of Linear/RNN layers: SSD-Lite has none, so it
                          quantizes 0 modules and runs as fp32 (``model.quantized_modules``).
``int8-qat``              quantization-aware fine-tuning (fake quant, observers then BN frozen) with
                          :func:`navya.train.train`, then converted to INT8.
``bf16`` / ``fp16``       :mod:`navya.compress.half`: ``core`` cast to that dtype.
========================  ==========================================================================

INT8 engines. An eager quantized model runs with the engine its weights were packed for: the
transforms set ``model.quantized_engine`` and attach forward hooks to ``core`` that set
``torch.backends.quantized.engine`` for the duration of each call and restore it afterwards
(also when the call raises). The get/set/restore costs microseconds a call, within run-to-run
noise of a detector's call (measured: docs/results/code_decisions/), so latency stays honest. Deep-copying or unpickling an INT8 model
re-packs its weights with the engine current at that moment: do it inside
``with quantized_engine(model.quantized_engine)`` for a non-default engine (qnnpack). A whole
pickled INT8 model needs :func:`navya.runtime.repair_unpickled` after ``torch.load``
(torch's quantized convolutions unpickle without their ``nn.Module`` bookkeeping).

Module names. ``keep_float`` and sensitivity analysis name blocks of ``core`` as
:func:`sensitivity_blocks` lists them (``"backbone.stage1.3"``, ``"extras.0"``, ``"cls_heads.2"``).
In the returned model a block kept in float is wrapped in a :class:`FloatIsland` (its weights under
``<name>.block``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from navya.compress import _ao
from navya.compress._ao import ENGINES, DeQuantStub, QuantStub, quantized_engine
from navya.compress.base import CompressContext, register_transform

# half precision lives in navya.compress.half; its names stay importable from here, where models
# pickled before the move (cached artifacts, stored builds) look HalfCore up
from navya.compress.half import HalfConfig, HalfCore, half_precision  # noqa: F401
from navya.errors import NavyaError

__all__ = [
    "ENGINES",
    "DynamicConfig",
    "FloatIsland",
    "PTQConfig",
    "QATConfig",
    "QuantIsland",
    "QuantizationError",
    "calibration_count",
    "calibration_indices",
    "quantize_dynamic",
    "quantize_qat",
    "quantize_static",
    "packing_engine",
    "quantized_engine",
    "sensitivity_blocks",
]


class QuantizationError(NavyaError, ValueError):
    """A model, configuration or context that cannot be quantized as asked; the message says
    why and what would work."""


# -- checks ----------------------------------------------------------------------------------


def _check_engine_name(engine: str) -> None:
    if engine not in ENGINES:
        raise QuantizationError(f"unknown quantized engine {engine!r}; engines: "
                                f"{', '.join(ENGINES)} (supported on this CPU: "
                                f"{', '.join(_ao.supported_engines())})")


def _check_engine(engine: str) -> None:
    """``engine`` must be one this torch build and CPU run (not only a known name)."""
    _check_engine_name(engine)
    supported = _ao.supported_engines()
    if engine not in supported:
        raise QuantizationError(f"quantized engine {engine!r} is not supported on this CPU; "
                                f"supported engines: {', '.join(supported)}")


def _core_of(model: nn.Module) -> nn.Module:
    """``model.core``, which must hold a ``QuantStub`` (the quantizable part)."""
    core = getattr(model, "core", None)
    if not isinstance(core, nn.Module):
        raise QuantizationError(
            f"{type(model).__name__} has no `core` submodule: navya quantizes the "
            f"convolutional core of an SSDLite detector (navya.models.build_model)")
    if not any(isinstance(m, QuantStub) for m in core.modules()):
        raise QuantizationError(
            f"{type(model).__name__}.core ({type(core).__name__}) has no quantization stubs "
            f"(QuantStub/DeQuantStub): static INT8 needs them to mark where tensors enter and "
            f"leave the quantized domain; build the model with navya.models.build_model")
    return core


def _require_data(context: CompressContext, what: str) -> Dataset:
    dataset = context.train_dataset
    if dataset is None:
        raise QuantizationError(
            f"{what} needs calibration/training data: context.train_dataset is None; pass "
            f"CompressContext(train_dataset=<the train split>)")
    if len(dataset) == 0:
        raise QuantizationError(f"{what} needs calibration/training data: "
                                f"context.train_dataset is empty")
    return dataset


def _has_weights(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in module.modules())


def sensitivity_blocks(model: nn.Module) -> list[str]:
    """The quantizable blocks of ``model.core``, in forward order, as names relative to ``core``.

    Each backbone layer that holds a convolution (every ``stage1`` / ``stage2`` child of
    :class:`~navya.models.ssdlite.MobileNetFeatures`: the first convolution, each inverted
    residual, and the pieces of the split stride-32 block), each extra block, each
    classification and regression head. These are the units of mixed precision
    (``PTQConfig(keep_float=...)``) and of per-layer sensitivity analysis. The same names are
    returned before and after fusion.
    """
    core = getattr(model, "core", None)
    if not isinstance(core, nn.Module):
        raise QuantizationError(f"{type(model).__name__} has no `core` submodule")
    names = []
    for prefix in ("backbone.stage1", "backbone.stage2", "extras", "cls_heads", "reg_heads"):
        try:
            parent = core.get_submodule(prefix)
        except AttributeError:
            raise QuantizationError(f"core has no {prefix!r}: sensitivity blocks follow the "
                                    f"SSDLiteCore layout") from None
        names += [f"{prefix}.{n}" for n, child in parent.named_children() if _has_weights(child)]
    return names


def _check_blocks(names: Sequence[str], valid: Sequence[str], option: str) -> None:
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise QuantizationError(f"unknown block name(s) in {option}: {', '.join(unknown)}; "
                                f"valid blocks: {', '.join(valid)}")


# -- islands: mixed precision in eager mode --------------------------------------------------


class FloatIsland(nn.Module):
    """A block kept in float inside a quantized network: ``DeQuantStub -> block -> QuantStub``.

    The block's ``qconfig`` is None, so it is neither observed nor converted; its input is
    dequantized and its output re-quantized (with its own calibrated scale).
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.dequant = DeQuantStub()
        self.block = block
        self.quant = QuantStub()
        self.block.qconfig = None

    def forward(self, x: Tensor) -> Tensor:
        return self.quant(self.block(self.dequant(x)))


class QuantIsland(nn.Module):
    """A block quantized inside a float network: ``QuantStub -> block -> DeQuantStub``
    (per-block sensitivity: only this block runs in INT8)."""

    def __init__(self, block: nn.Module, qconfig):
        super().__init__()
        self.quant = QuantStub()
        self.block = block
        self.dequant = DeQuantStub()
        self.qconfig = qconfig

    def forward(self, x: Tensor) -> Tensor:
        return self.dequant(self.block(self.quant(x)))


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, new)


def _skip_unused_adds(core: nn.Module) -> None:
    """No observer for the residual adds of blocks without a residual connection (they are
    never called; converting their untouched observers only warns)."""
    for m in core.modules():
        if getattr(m, "use_res_connect", True) is False and hasattr(m, "skip_add"):
            m.skip_add.qconfig = None


# -- running with the model's engine ---------------------------------------------------------


class _EngineHooks:
    """Forward (pre-)hooks that run a module with ``torch.backends.quantized.engine = engine``
    and restore the previous engine afterwards, also when the forward raises."""

    def __init__(self, engine: str):
        self.engine = engine
        self._saved: list[str] = []

    def before(self, module: nn.Module, args) -> None:
        self._saved.append(torch.backends.quantized.engine)
        torch.backends.quantized.engine = self.engine

    def after(self, module: nn.Module, args, output) -> None:
        if self._saved:
            torch.backends.quantized.engine = self._saved.pop()


def packing_engine(engine: str) -> str:
    """The engine to pack and run ``engine``'s weights with here: ``engine``, except that the
    ``x86`` engine under a kernel restriction (navya.cpuclass) packs with ``fbgemm`` where the
    restricted class would not send convolutions to oneDNN while this CPU does: the x86 engine
    picks between the two by asking the real CPU for AVX512-VNNI, which no restriction hides,
    and a CPU of the restricted class runs FBGEMM (README, "CPU classes")."""
    if engine != "x86":
        return engine
    from navya.cpuclass import host_class, kernel_class, x86_engine_uses_onednn

    host, kernel = host_class(), kernel_class()
    if kernel != host and x86_engine_uses_onednn(host) and not x86_engine_uses_onednn(kernel):
        return "fbgemm"
    return engine


def _emulate_engine_dispatch() -> None:
    """Under a kernel restriction below AVX512-VNNI on a CPU with it, make ``fbgemm`` the
    process's quantized engine where it is still torch's ``x86`` default: a model re-packs its
    weights with the current engine whenever it is unpickled (the artifact cache, a worker) or
    copied, and must re-pack as it was packed (:func:`packing_engine`), as on a CPU of the
    restricted class, where the x86 engine is FBGEMM."""
    if torch.backends.quantized.engine == "x86" and packing_engine("x86") == "fbgemm":
        torch.backends.quantized.engine = "fbgemm"


def _run_with_engine(model: nn.Module, core: nn.Module, engine: str) -> None:
    hooks = _EngineHooks(engine)
    core.register_forward_pre_hook(hooks.before)
    core.register_forward_hook(hooks.after, always_call=True)
    model.quantized_engine = engine


# -- calibration -----------------------------------------------------------------------------


def calibration_count(dataset_len: int, fraction: float, images: int | None,
                      floor: int = 1) -> int:
    """How many calibration images: ``images`` if given, else ``round(fraction * len)``, at
    least ``floor`` (or the whole data set when it is smaller: a gated model's small real
    train split calibrates on all of it, not on 2 % of it); at most the data set's length
    (else :class:`QuantizationError`)."""
    n = (images if images is not None
         else max(1, min(max(floor, round(fraction * dataset_len)), dataset_len)))
    if n > dataset_len:
        raise QuantizationError(f"asked for {n} calibration images but the calibration data "
                                f"set has only {dataset_len}")
    return n


def calibration_indices(dataset_len: int, count: int, seed: int) -> list[int]:
    """``count`` distinct indices drawn uniformly from ``range(dataset_len)`` with a
    ``torch.Generator`` seeded with ``seed``, in increasing order."""
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(dataset_len, generator=g)[:count].tolist())


def _calibration_plan(dataset_len: int, config, context: CompressContext) -> list[int]:
    """The calibration indices a PTQ/PT2E/runtime ``config`` asks for: its image count or fraction of
    the data set, drawn with its seed (None: the context's)."""
    seed = context.seed if config.seed is None else config.seed
    count = calibration_count(dataset_len, config.calibration_fraction, config.calibration_images,
                              context.min_calibration_images)
    return calibration_indices(dataset_len, count, seed)


def _calibrate(model: nn.Module, run, dataset: Dataset, indices: Sequence[int],
               batch_size: int, progress: bool, desc: str) -> float:
    """Feed the images at ``indices`` through ``run(preprocessed_batch)``; returns seconds."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    with torch.no_grad(), tqdm(total=len(indices), desc=desc, disable=not progress,
                               unit="img", dynamic_ncols=True) as bar:
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            run(model.preprocess([dataset[i][0] for i in chunk]))
            bar.update(len(chunk))
    return time.perf_counter() - t0


# -- int8-ptq --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PTQConfig:
    """Eager static post-training quantization.

    ``engine``: the quantized backend the weights are packed for and the model runs with
    (``x86`` default; ``qnnpack`` for ARM boards). ``activation_observer``: ``histogram``
    (minimizes the L2 quantization error, slower to calibrate) or ``minmax``.
    ``per_channel``: per-output-channel int8 weights instead of one scale per tensor. Off by
    default, by measurement on the shipped checkpoint (500 val images, 60 calibration images,
    histogram observers): per-tensor lost 0.08 mAP points at a size ratio of 3.89, per-channel
    lost 0.39 points at 3.43 (torch serializes a float64 scale and an int64 zero point per
    channel: 16 bytes beside the 9 int8 weights of a depthwise 3x3 channel).
    ``reduce_range``: 7-bit activations (None: True on x86/fbgemm, as torch
    defaults, for CPUs without VNNI). Calibration: ``calibration_images`` images if given, else
    ``calibration_fraction`` of the train split (rounded, at least 1), drawn with ``seed``
    (None: the context's seed), fed ``batch_size`` at a time. ``keep_float``: names of blocks
    (:func:`sensitivity_blocks`) kept in float (mixed precision).
    """

    engine: str = "x86"
    activation_observer: str = "histogram"
    per_channel: bool = False
    reduce_range: bool | None = None
    calibration_fraction: float = 0.02
    calibration_images: int | None = None
    keep_float: tuple[str, ...] = ()
    batch_size: int = 8
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_engine_name(self.engine)
        if self.activation_observer not in ("histogram", "minmax"):
            raise QuantizationError(f"activation_observer must be 'histogram' or 'minmax', "
                                    f"got {self.activation_observer!r}")
        if not 0.0 < self.calibration_fraction <= 1.0:
            raise QuantizationError(f"calibration_fraction must be in (0, 1], got "
                                    f"{self.calibration_fraction!r}")
        if self.calibration_images is not None and self.calibration_images < 1:
            raise QuantizationError(f"calibration_images must be >= 1 or None, got "
                                    f"{self.calibration_images!r}")
        if self.batch_size < 1:
            raise QuantizationError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if isinstance(self.keep_float, str):
            raise QuantizationError("keep_float is a tuple of block names, not a string")
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        if len(set(self.keep_float)) != len(self.keep_float):
            raise QuantizationError(f"keep_float names a block twice: {self.keep_float}")


@register_transform(PTQConfig)
def quantize_static(model: nn.Module, config: PTQConfig, context: CompressContext | None = None,
                    *, only: Sequence[str] | None = None) -> nn.Module:
    """INT8 static post-training quantization of ``model.core`` (returns a new model).

    Steps: deep copy, eval, ``fuse_model(is_qat=False)``, qconfig on ``core`` (blocks in
    ``config.keep_float`` wrapped in :class:`FloatIsland` with no qconfig), ``prepare``,
    calibration on ``calibration_count`` images of ``context.train_dataset`` (seeded subset),
    ``convert`` with ``config.engine``.

    ``only`` (per-block sensitivity): quantize just these blocks, each in a
    :class:`QuantIsland`, and leave everything else float (``keep_float`` is then ignored).

    The returned model carries ``quantized_engine``, ``calibration_indices`` (the train-set
    indices used, increasing), ``calibration_seconds`` and ``keep_float``.

    Raises:
        QuantizationError: unsupported engine (lists the supported ones), no ``core`` or no
            quantization stubs, no or empty calibration data, too many calibration images,
            unknown block names (lists the valid ones).
    """
    context = context or CompressContext()
    _check_engine(config.engine)
    _core_of(model)
    blocks = sensitivity_blocks(model)
    _check_blocks(config.keep_float, blocks, "keep_float")
    if only is not None:
        _check_blocks(only, blocks, "only")
    dataset = _require_data(context, "INT8 static quantization")
    indices = _calibration_plan(len(dataset), config, context)

    out = copy.deepcopy(model).eval()
    out.fuse_model(is_qat=False)
    core = out.core
    qconfig = _ao.ptq_qconfig(config.engine, activation_observer=config.activation_observer,
                              per_channel=config.per_channel,
                              reduce_range=config.reduce_range)
    if only is None:
        core.qconfig = qconfig
        for name in config.keep_float:
            _replace(core, name, FloatIsland(core.get_submodule(name)))
    else:
        core.qconfig = None
        for name in only:
            _replace(core, name, QuantIsland(core.get_submodule(name), qconfig))
    _skip_unused_adds(core)
    _ao.prepare(core)
    seconds = _calibrate(out, core, dataset, indices, config.batch_size, context.progress,
                         "calibrate")
    _ao.convert(core, packing_engine(config.engine))
    _run_with_engine(out, core, packing_engine(config.engine))
    out.calibration_indices = tuple(indices)
    out.calibration_seconds = seconds
    out.keep_float = tuple(config.keep_float) if only is None else tuple(
        b for b in blocks if b not in only)
    return out


# -- int8-dynamic ----------------------------------------------------------------------------

_DYNAMIC_TYPES: tuple[type, ...] = (nn.Linear, nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell,
                                    nn.GRUCell)


@dataclass(frozen=True)
class DynamicConfig:
    """Dynamic quantization (int8 weights, activations quantized per call) of the layer types
    torch supports for it: Linear and RNN-style layers. ``engine`` as in :class:`PTQConfig`."""

    engine: str = "x86"

    def __post_init__(self) -> None:
        _check_engine_name(self.engine)


@register_transform(DynamicConfig)
def quantize_dynamic(model: nn.Module, config: DynamicConfig,
                     context: CompressContext | None = None) -> nn.Module:
    """``quantize_dynamic`` of every Linear/RNN layer of the model (a new model).

    Convolutions are not supported by dynamic quantization, and SSD-Lite is convolutions only:
    on it this quantizes 0 modules and the result computes exactly as fp32. The count is
    reported as ``model.quantized_modules``, never inflated.
    """
    _check_engine(config.engine)
    out = copy.deepcopy(model).eval()
    candidates = [n for n, m in out.named_modules() if type(m) in _DYNAMIC_TYPES]
    out = _ao.quantize_dynamic(out, _DYNAMIC_TYPES, config.engine)
    out.quantized_modules = sum(
        _ao.is_quantized_module(out.get_submodule(n)) for n in candidates)
    if out.quantized_modules and isinstance(getattr(out, "core", None), nn.Module):
        _run_with_engine(out, out.core, config.engine)
    elif out.quantized_modules:
        _run_with_engine(out, out, config.engine)
    return out


# -- int8-qat --------------------------------------------------------------------------------


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware fine-tuning, then conversion to INT8.

    ``iterations`` optimizer steps of ``batch_size`` images from the train split (with SSD
    augmentation if ``augment``), ``optimizer`` (``adamw``/``sgd``) at peak ``lr`` after
    ``warmup_iters`` steps of linear warm-up, then cosine decay. Observers (the activation and
    weight ranges) are frozen from step ``freeze_observers_after`` on, batch-norm statistics
    from step ``freeze_bn_after`` on (None: never). ``distill``: add ``distill_weight`` times
    :func:`navya.train.distillation_losses` against the float model being quantized (its
    outputs on the same batch) to the detection loss. ``engine``, ``per_channel``,
    ``reduce_range`` as in :class:`PTQConfig`; ``seed`` None: the context's seed.
    """

    iterations: int = 150
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_iters: int = 10
    freeze_observers_after: int | None = 100
    freeze_bn_after: int | None = 50
    engine: str = "x86"
    per_channel: bool = False
    reduce_range: bool | None = None
    augment: bool = True
    distill: bool = False
    distill_weight: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_engine_name(self.engine)
        if not self.distill_weight > 0:
            raise QuantizationError(f"distill_weight must be > 0, got {self.distill_weight!r}")
        if self.iterations < 1 or self.batch_size < 1:
            raise QuantizationError("iterations and batch_size must be >= 1")
        if self.optimizer not in ("adamw", "sgd"):
            raise QuantizationError(f"optimizer must be 'adamw' or 'sgd', got "
                                    f"{self.optimizer!r}")
        if not self.lr > 0 or self.warmup_iters < 0:
            raise QuantizationError("need lr > 0 and warmup_iters >= 0")
        for name in ("freeze_observers_after", "freeze_bn_after"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise QuantizationError(f"{name} must be >= 1 (observers need at least one "
                                        f"step to set the ranges) or None, got {v!r}")


class _FreezeHook:
    """A :func:`navya.train.train` hook: freeze observers, then BN statistics, at given steps."""

    def __init__(self, observers_after: int | None, bn_after: int | None):
        self.observers_after, self.bn_after = observers_after, bn_after
        self.observers_frozen_at: int | None = None
        self.bn_frozen_at: int | None = None

    def __call__(self, model: nn.Module, iteration: int) -> None:
        if (self.observers_frozen_at is None and self.observers_after is not None
                and iteration >= self.observers_after):
            _ao.disable_observer(model)
            self.observers_frozen_at = iteration
        if self.bn_frozen_at is None and self.bn_after is not None and iteration >= self.bn_after:
            _ao.freeze_bn_stats(model)
            self.bn_frozen_at = iteration


@register_transform(QATConfig)
def quantize_qat(model: nn.Module, config: QATConfig,
                 context: CompressContext | None = None) -> nn.Module:
    """Quantization-aware fine-tuning of ``model`` on ``context.train_dataset``, then INT8.

    Deep copy, train mode, ``fuse_model(is_qat=True)`` (Conv-BN kept for training, folded at
    conversion), QAT qconfig (fake quantization with moving-average observers), ``prepare_qat``,
    :func:`navya.train.train` with the freeze hook, eval, ``convert``. The returned model
    carries ``quantized_engine``, ``qat_seconds``, ``qat_iterations``, ``qat_losses`` and
    ``qat_frozen_at`` (the steps at which observers and BN statistics were frozen).

    Raises:
        QuantizationError: as :func:`quantize_static` (engine, stubs, no training data).
    """
    from navya.train import TrainConfig, train

    context = context or CompressContext()
    _check_engine(config.engine)
    _core_of(model)
    dataset = _require_data(context, "quantization-aware training")
    seed = context.seed if config.seed is None else config.seed

    out = copy.deepcopy(model).train()
    out.fuse_model(is_qat=True)
    core = out.core
    core.qconfig = _ao.qat_qconfig(config.engine, per_channel=config.per_channel,
                                   reduce_range=config.reduce_range)
    _skip_unused_adds(core)
    _ao.prepare_qat(core)
    per_epoch = math.ceil(len(dataset) / config.batch_size)
    train_config = TrainConfig(
        epochs=math.ceil(config.iterations / per_epoch), batch_size=config.batch_size,
        optimizer=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
        warmup_iters=config.warmup_iters, augment=config.augment, channels_last=False,
        max_iters=config.iterations, seed=seed)
    hook = _FreezeHook(config.freeze_observers_after, config.freeze_bn_after)
    teacher = copy.deepcopy(model).eval() if config.distill else None
    result = train(out, dataset, train_config, hooks=[hook], progress=context.progress,
                   desc="int8-qat", teacher=teacher, distill_weight=config.distill_weight)
    out.eval()
    _ao.convert(core, packing_engine(config.engine))
    _run_with_engine(out, core, packing_engine(config.engine))
    out.qat_seconds = result.seconds
    out.qat_iterations = result.iterations
    out.qat_losses = tuple(result.losses)
    out.qat_frozen_at = {"observers": hook.observers_frozen_at, "bn": hook.bn_frozen_at}
    return out
