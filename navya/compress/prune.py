"""Pruning transforms: unstructured (L1, random) and structured L1 filter pruning.

Each transform is registered for its config class (:mod:`navya.compress.base`). The suite's
variants built on them (registered by :mod:`navya.catalogue`)::

    prune-l1-unstructured-{10,30}       L1 magnitude, dense conv weights, global, no fine-tune
    prune-random-unstructured-{10,30}   random (seeded), dense conv weights, no fine-tune
    prune-l1-structured-30              30% of the channels removed (torch-pruning), fine-tuned
                                        with distillation from the unpruned model
    prune-l1-structured-30-long         the same with a longer fine-tune (tag "slow")
    prune-l1-structured-30-int8         prune-l1-structured-30, then int8-ptq's PTQConfig

**Unstructured** pruning (:func:`prune_unstructured`) zeroes individual weights with
``torch.nn.utils.prune`` (per layer or global) and then *removes the reparametrization*
(``prune.remove``): the returned model holds plain ``weight`` parameters with zeros in them, no
``weight_orig`` / ``weight_mask``, so its serialized size is the dense size (the original
study's masks doubled it). Zeros do not speed up dense kernels; they show in the compressed size
(``size_zip_mb``) and the effective MACs only.

**Structured** pruning (:func:`prune_structured`) removes whole channels from ``model.core``
with torch-pruning's dependency graph: every layer coupled to a removed channel is cut with it
(the depthwise convolution and BatchNorm after an expansion, every block joined by a residual
``FloatFunctional.add``, the depthwise convolution of each SSD-Lite head reading a feature map).
Importance is the L1 norm (``MagnitudeImportance(p=1)``) summed over the coupled group. The
final 1x1 prediction convolutions of the heads (``cls_heads[i][-1]``, ``reg_heads[i][-1]``)
keep their outputs (anchors x classes, anchors x 4); only their inputs shrink. The anchors do
not change (channel pruning keeps every feature-map size). Kept channel counts are rounded to
the *nearest* multiple of ``round_to`` (at least ``round_to``; torch-pruning itself rounds
down, which cuts narrow layers by up to 50% at a 30% ratio). A short fine-tune with
:func:`navya.train.train` follows.

A structurally pruned model no longer fits its builder: save it with :func:`save_pruned` (a
navya checkpoint whose ``meta`` records every convolution and BatchNorm shape) and load it
with :func:`load_pruned` (rebuilds the base model, reshapes those layers, loads the weights;
``weights_only=True``, nothing pickled). Pruned layouts belong to the model: these live in
:mod:`navya.models.pruned`, with :class:`PruningError` and :func:`check_prunable`, and are
re-exported here.

Ratios are fractions in ``[0, 1)`` here (0.3 = 30%); the CLI takes percents.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from navya.compress.base import CompressContext, apply_transform, register_transform
from navya.compress.quantize import PTQConfig
from navya.models.checkpoint import load_pruned, save_pruned, state_fingerprint
from navya.models.pruned import (
    PruningError,
    apply_pruned_shapes,
    check_prunable,
    pruned_shapes,
    quantized_module_names,
)

__all__ = [
    "FinetuneSkippedWarning",
    "PruningError",
    "StructuredConfig",
    "StructuredInt8Config",
    "UnstructuredConfig",
    "apply_pruned_shapes",
    "check_prunable",
    "finetune",
    "head_output_names",
    "load_pruned",
    "pruned_shapes",
    "prune_structured",
    "prune_structured_int8",
    "prune_unstructured",
    "quantized_module_names",
    "save_pruned",
    "structured_prune_",
]


class FinetuneSkippedWarning(UserWarning):
    """Structured pruning ran without its recovery fine-tune (no training data given)."""


# -- validation helpers --------------------------------------------------------------------------


def _check_ratio(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or not 0.0 <= value < 1.0:
        raise PruningError(f"{what} must be a fraction in [0, 1) (0.3 = 30%), got {value!r}")


def _check_names(model: nn.Module, names: Iterable[str], what: str) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        if name not in modules:
            valid = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
            raise PruningError(
                f"{what}: no layer named {name!r} in the model; valid conv layer names look like "
                f"{', '.join(repr(n) for n in valid[:4])}, ... ({len(valid)} conv layers; names "
                "as in model.named_modules())"
            )
        out[name] = modules[name]
    return out


def _core_prefix(model: nn.Module) -> tuple[nn.Module, str]:
    """The convolutional network to prune (``model.core`` of an SSDLite) and its name prefix."""
    core = getattr(model, "core", None)
    return (core, "core.") if isinstance(core, nn.Module) else (model, "")


def head_output_names(model: nn.Module) -> list[str]:
    """Full names of the final prediction convolutions of the SSD-Lite heads (the layers whose
    outputs are anchors x classes / anchors x 4 and must keep them)."""
    core, prefix = _core_prefix(model)
    names = []
    for heads_name in ("cls_heads", "reg_heads"):
        heads = getattr(core, heads_name, None)
        if heads is None:
            continue
        for i, head in enumerate(heads):
            last = list(head.named_children())[-1][0] if isinstance(head, nn.Sequential) else None
            names.append(f"{prefix}{heads_name}.{i}.{last}" if last else f"{prefix}{heads_name}.{i}")
    return names


# -- unstructured --------------------------------------------------------------------------------

_UNSTRUCTURED_METHODS = ("l1", "random")
_SCOPES = ("layer", "global")
_LAYER_SETS = ("dense-conv", "conv", "all")


@dataclass(frozen=True)
class UnstructuredConfig:
    """Unstructured (weight-level) pruning.

    Attributes:
        amount: fraction of the selected weights set to zero, in ``[0, 1)``; over all
            selected weights together (``scope="global"``: ``round(amount * total)``) or per
            layer (``scope="layer"``: each layer loses ``round(amount * numel)`` weights).
        method: ``"l1"`` (smallest absolute values) or ``"random"`` (seeded by ``seed``).
        scope: ``"global"`` (default) or ``"layer"``.
        layers: ``"dense-conv"`` (the default: every Conv2d except depthwise/grouped ones),
            ``"conv"`` (every Conv2d), ``"all"`` (every ``weight`` parameter: conv, linear and
            BatchNorm scales), or a tuple of module names (as in ``model.named_modules()``,
            e.g. ``"core.extras.0.0.0"``) to prune exactly those.
        exclude_head_outputs: leave the final prediction convolutions of the heads dense (only
            with the named sets; explicit names are used as given).
        seed: seeds ``method="random"`` (the global RNG is restored afterwards).

    The defaults are measured (shipped checkpoint, 500 val images, L1 at 30%, no fine-tune):
    mAP drop 0.34 points with ``global`` over ``dense-conv``; 2.16 with ``global`` over every
    conv; 2.48 per ``layer`` over ``dense-conv``; 4.54 per ``layer`` over every conv. A
    depthwise 3x3 filter has 9 weights, so each zero removes 11% of a filter; and per-layer
    ranking cuts the layers whose weights matter most as deeply as the others.
    """

    amount: float
    method: str = "l1"
    scope: str = "global"
    layers: str | tuple[str, ...] = "dense-conv"
    exclude_head_outputs: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check_ratio(self.amount, "amount")
        if self.method not in _UNSTRUCTURED_METHODS:
            raise PruningError(f"method must be one of {_UNSTRUCTURED_METHODS}, got {self.method!r}")
        if self.scope not in _SCOPES:
            raise PruningError(f"scope must be one of {_SCOPES}, got {self.scope!r}")
        if isinstance(self.layers, str):
            if self.layers not in _LAYER_SETS:
                raise PruningError(f"layers must be one of {_LAYER_SETS} or a tuple of module "
                                   f"names, got {self.layers!r}")
        else:
            if isinstance(self.layers, list):
                object.__setattr__(self, "layers", tuple(self.layers))
            if not isinstance(self.layers, tuple) or not self.layers \
                    or not all(isinstance(n, str) for n in self.layers):
                raise PruningError(f"layers must be 'conv', 'all' or a non-empty tuple of module "
                                   f"names, got {self.layers!r}")


def _unstructured_targets(model: nn.Module, config: UnstructuredConfig) -> list[tuple[str, nn.Module]]:
    if not isinstance(config.layers, str):
        mods = _check_names(model, config.layers, "layers")
        for name, m in mods.items():
            if not isinstance(getattr(m, "weight", None), nn.Parameter):
                raise PruningError(f"layers: {name!r} ({type(m).__name__}) has no weight "
                                   "parameter to prune")
        return list(mods.items())
    skip = set(head_output_names(model)) if config.exclude_head_outputs else set()
    out = []
    for name, m in model.named_modules():
        if name in skip or not isinstance(getattr(m, "weight", None), nn.Parameter):
            continue
        if config.layers == "all" or (isinstance(m, nn.Conv2d) and (
                config.layers == "conv" or m.groups == 1)):
            out.append((name, m))
    if not out:
        raise PruningError(f"no layer to prune with layers={config.layers!r}")
    return out


@register_transform(UnstructuredConfig)
def prune_unstructured(model: nn.Module, config: UnstructuredConfig,
                       context: CompressContext | None = None) -> nn.Module:
    """A copy of ``model`` with a fraction ``config.amount`` of its selected weights set to zero.

    Uses ``torch.nn.utils.prune`` (``l1_unstructured`` / ``random_unstructured`` per layer, or
    ``global_unstructured``), then ``prune.remove`` on every pruned module: the result has no
    ``weight_orig`` / ``weight_mask`` and no pruning hooks, and saves at its dense size.
    Deterministic: L1 ranks by magnitude; random draws from ``torch.manual_seed(config.seed)``
    inside a forked RNG (the caller's RNG state is untouched). Returned in eval mode.

    Raises:
        PruningError: quantized model, unknown layer name, layer without a weight.
    """
    from torch.nn.utils import prune

    check_prunable(model)
    out = copy.deepcopy(model)
    targets = _unstructured_targets(out, config)
    if config.amount > 0:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            if config.scope == "global":
                method = prune.L1Unstructured if config.method == "l1" else prune.RandomUnstructured
                prune.global_unstructured([(m, "weight") for _, m in targets],
                                          pruning_method=method, amount=config.amount)
            else:
                fn = prune.l1_unstructured if config.method == "l1" else prune.random_unstructured
                for _, m in targets:
                    fn(m, "weight", amount=config.amount)
        for _, m in targets:
            prune.remove(m, "weight")
    return out.eval()


# -- structured ----------------------------------------------------------------------------------

# Measured on the shipped checkpoint (30% of the channels, 500 val images, mAP drop in points):
# 150 iterations at lr 1e-3: 4.53; at 3e-3: 4.20; with distillation from the unpruned model:
# 2.20 (3.8 min); 250 iterations with distillation: 1.25 (5.9 min on 2 cores).
DEFAULT_FINETUNE_ITERS = 250
LONG_FINETUNE_ITERS = 1200  # the "slow" setting, outside the default suite run


@dataclass(frozen=True)
class StructuredConfig:
    """Structured L1 filter pruning of ``model.core`` plus a recovery fine-tune.

    Attributes:
        ratio: fraction of the channels of every prunable coupled group removed, in ``[0, 1)``.
        round_to: kept channel counts rounded to the nearest multiple of this (at least one
            multiple); ``None`` for no rounding. 8 suits the CPU kernels (README, "Variants and what they measured").
        global_pruning: rank channels across all groups instead of cutting each group by
            ``ratio`` (uneven widths; off by default).
        ignore: extra module names (as in ``model.named_modules()``) whose outputs are kept;
            the final prediction convolutions of the heads are always kept.
        finetune_iters: recovery fine-tune iterations (0: none). Sized for the suite's budget;
            see :data:`DEFAULT_FINETUNE_ITERS` and :data:`LONG_FINETUNE_ITERS`.
        finetune_lr: peak learning rate of the fine-tune (AdamW, warm-up then cosine).
        finetune_batch_size: images per fine-tune iteration.
        finetune_warmup_iters: linear warm-up iterations of the fine-tune.
        distill: fine-tune with knowledge distillation from the unpruned model
            (:func:`navya.train.distillation_losses` added to the detection loss, weight
            ``distill_weight``).
        seed: seeds the fine-tune (data order, augmentation).
    """

    ratio: float
    round_to: int | None = 8
    global_pruning: bool = False
    ignore: tuple[str, ...] = ()
    finetune_iters: int = DEFAULT_FINETUNE_ITERS
    finetune_lr: float = 3e-3
    finetune_batch_size: int = 16
    finetune_warmup_iters: int = 20
    distill: bool = True
    distill_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_ratio(self.ratio, "ratio")
        if self.round_to is not None and (isinstance(self.round_to, bool)
                                          or not isinstance(self.round_to, int)
                                          or self.round_to < 1):
            raise PruningError(f"round_to must be a positive int or None, got {self.round_to!r}")
        if isinstance(self.ignore, (list, str)):
            object.__setattr__(self, "ignore",
                               (self.ignore,) if isinstance(self.ignore, str) else tuple(self.ignore))
        if self.finetune_iters < 0 or self.finetune_batch_size < 1 \
                or self.finetune_warmup_iters < 0:
            raise PruningError("need finetune_iters >= 0, finetune_batch_size >= 1 and "
                               "finetune_warmup_iters >= 0")
        if not self.finetune_lr > 0:
            raise PruningError(f"finetune_lr must be > 0, got {self.finetune_lr!r}")
        if not self.distill_weight > 0:
            raise PruningError(f"distill_weight must be > 0, got {self.distill_weight!r}")


def _nearest_pruner_class():
    import torch_pruning as tp

    class _NearestRoundPruner(tp.pruner.BasePruner):
        """torch-pruning's pruner with ``round_to`` rounding the kept channels to the nearest
        multiple (at least one multiple, never more than there are), instead of down."""

        def _round_to(self, n_pruned: int, current_channels: int, round_to: int) -> int:
            kept = current_channels - n_pruned
            kept = max(round_to, int(round(kept / round_to)) * round_to)
            kept = min(kept, current_channels)
            return max(current_channels - kept, 0)

    return _NearestRoundPruner


def _example_input(model: nn.Module) -> torch.Tensor:
    size = int(getattr(model, "image_size", 320))
    if hasattr(model, "preprocess"):
        return model.preprocess([torch.zeros(3, size, size)])
    return torch.zeros(1, 3, size, size)


def structured_prune_(model: nn.Module, ratio: float, *, round_to: int | None = 8,
                      ignore: Sequence[str] = (), global_pruning: bool = False
                      ) -> dict[str, list[int]]:
    """Remove a fraction ``ratio`` of the channels of ``model.core`` **in place**.

    torch-pruning builds the dependency graph by tracing ``core`` on
    ``model.preprocess([zeros(3, S, S)])``; each coupled group (a producer's outputs, its
    BatchNorm, the consumers' inputs, depthwise layers in between, residual partners) loses the
    same channels, chosen by group L1 magnitude. The heads' final convolutions and the layers
    named in ``ignore`` keep their outputs.

    Returns the removed channel indices (of the original numbering) per BatchNorm layer name:
    zeroing those BatchNorms' scale and shift in the unpruned model gives the same function as
    the pruned model (a test checks this).
    """
    import torch_pruning as tp

    _check_ratio(ratio, "ratio")
    check_prunable(model)
    core, prefix = _core_prefix(model)
    keep = _check_names(model, [*head_output_names(model), *ignore], "ignore")
    ignored = [m for m in keep.values() if m is not core]
    removed: dict[str, list[int]] = {}
    if ratio == 0:
        return removed
    was_training = core.training
    core.eval()
    names = {m: prefix + n for n, m in core.named_modules()}
    # torch-pruning traces the graph with autograd: gradients must be on while it builds
    with torch.enable_grad():
        pruner = _nearest_pruner_class()(
            core, _example_input(model), importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=ratio, ignored_layers=ignored, round_to=round_to,
            global_pruning=global_pruning,
        )
    with torch.no_grad():
        for group in pruner.step(interactive=True):
            for dep, idxs in group:
                target = dep.target.module
                if isinstance(target, nn.BatchNorm2d) and target in names:
                    removed.setdefault(names[target], []).extend(int(i) for i in idxs)
            group.prune()
    core.train(was_training)
    return {k: sorted(set(v)) for k, v in removed.items()}


def finetune(model: nn.Module, dataset, config: StructuredConfig, *, progress: bool = False,
             teacher: nn.Module | None = None):
    """Recovery fine-tune of a pruned detector in place with :func:`navya.train.train`
    (``config.finetune_iters`` iterations, AdamW, warm-up then cosine), distilled from
    ``teacher`` if given. Returns the :class:`~navya.train.TrainResult`."""
    from navya.train import TrainConfig, train

    per_epoch = max(1, math.ceil(len(dataset) / config.finetune_batch_size))
    tc = TrainConfig(
        epochs=max(1, math.ceil(config.finetune_iters / per_epoch)),
        batch_size=config.finetune_batch_size, lr=config.finetune_lr,
        warmup_iters=min(config.finetune_warmup_iters, config.finetune_iters // 2),
        max_iters=config.finetune_iters, seed=config.seed,
    )
    return train(model, dataset, tc, progress=progress, desc="prune fine-tune",
                 teacher=teacher, distill_weight=config.distill_weight)


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@register_transform(StructuredConfig)
def prune_structured(model: nn.Module, config: StructuredConfig,
                     context: CompressContext | None = None) -> nn.Module:
    """A copy of ``model`` with a fraction ``config.ratio`` of its channels removed (see
    :func:`structured_prune_`), fine-tuned on ``context.train_dataset`` for
    ``config.finetune_iters`` iterations (skipped with a :class:`FinetuneSkippedWarning` when
    there is no training data).

    The result is cached in ``context.cache`` keyed by the config, the input model's weights
    and the data set, so ``prune-l1-structured-<p>`` and ``prune-l1-structured-<p>-int8`` fine-tune
    once per run; callers get a copy. The model carries ``pruning_info`` (a dict: ratio, params
    before/after, fine-tune iterations, seconds, first/last losses). Returned in eval mode.
    """
    context = context or CompressContext()
    check_prunable(model)
    dataset = context.train_dataset
    key = ("navya.prune.structured", config, state_fingerprint(model),
           None if dataset is None else (id(dataset), len(dataset)))
    cached = context.cache.get(key)
    if cached is not None:
        return copy.deepcopy(cached)

    out = copy.deepcopy(model).eval()
    params_before = _param_count(out)
    removed = structured_prune_(out, config.ratio, round_to=config.round_to,
                                ignore=config.ignore, global_pruning=config.global_pruning)
    info: dict[str, Any] = {
        "method": "l1-structured", "ratio": config.ratio, "round_to": config.round_to,
        "params_before": params_before, "params_after": _param_count(out),
        "channels_removed": sum(len(v) for v in removed.values()),
        "finetuned": False, "finetune_iters": 0, "finetune_seconds": 0.0,
    }
    if config.finetune_iters > 0 and config.ratio > 0:
        if dataset is None or len(dataset) == 0:
            warnings.warn(
                "structured pruning WITHOUT its recovery fine-tune: no training data in the "
                "CompressContext (train_dataset is None or empty); accuracy will be far below "
                "the fine-tuned variant's", FinetuneSkippedWarning, stacklevel=2)
        else:
            teacher = None
            if config.distill:
                teacher = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
            result = finetune(out, dataset, config, progress=context.progress, teacher=teacher)
            losses = result.losses
            info.update(finetuned=True, finetune_iters=result.iterations,
                        finetune_seconds=round(result.seconds, 2), distilled=config.distill,
                        finetune_loss_first=losses[0] if losses else None,
                        finetune_loss_last=losses[-1] if losses else None)
    out.eval()
    out.pruning_info = info
    context.cache[key] = out
    return copy.deepcopy(out)


@dataclass(frozen=True)
class StructuredInt8Config:
    """Structured pruning (and its fine-tune), then quantization.

    ``quantize`` is the quantization step's own config, nested (any config with a registered
    transform; by default ``PTQConfig()``, the ``int8-ptq`` variant's): the pruned model is
    handed to :func:`~navya.compress.base.apply_transform` with it.
    """

    structured: StructuredConfig
    quantize: Any = PTQConfig()


@register_transform(StructuredInt8Config)
def prune_structured_int8(model: nn.Module, config: StructuredInt8Config,
                          context: CompressContext | None = None) -> nn.Module:
    """:func:`prune_structured` (cached fine-tune), then the transform of ``config.quantize``
    (:func:`~navya.compress.quantize.quantize_static` for a ``PTQConfig``)."""
    context = context or CompressContext()
    pruned = apply_transform(model, config.structured, context)  # cached like the variant's
    info = dict(getattr(pruned, "pruning_info", {}))
    out = apply_transform(pruned, config.quantize, context)
    if info and not hasattr(out, "pruning_info"):
        out.pruning_info = info
    return out
