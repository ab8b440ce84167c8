"""Pruned layouts: a structurally pruned detector's channel counts, saved with its checkpoint.

A structurally pruned model (:func:`navya.compress.prune.prune_structured`) no longer fits its
builder: its convolutions and BatchNorms have fewer channels. :func:`save_pruned` writes a
navya checkpoint whose ``meta`` records every Conv2d and BatchNorm2d shape
(:func:`pruned_shapes`); :func:`navya.models.load_checkpoint` (and :func:`load_pruned`)
rebuilds the base model, reshapes those layers (:func:`apply_pruned_shapes`) and loads the
weights (``weights_only=True``, nothing pickled).

Only float models are saved this way: prune the float model, save it, quantize after loading
(:func:`check_prunable` refuses quantized, QAT-prepared or observed models).
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from navya.errors import NavyaError
from navya.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from navya.models.ssdlite import SSDLite

__all__ = [
    "PruningError",
    "apply_pruned_shapes",
    "check_prunable",
    "load_pruned",
    "masked_tensor_names",
    "pruned_shapes",
    "quantized_module_names",
    "save_pruned",
]


class PruningError(NavyaError, ValueError):
    """A pruning request that cannot be honoured (bad ratio, unknown layer, quantized model),
    or a pruned layout that does not fit the model."""


# -- what may be pruned and saved ----------------------------------------------------------------

_QUANTIZED_MODULE_PREFIXES = (
    "torch.ao.nn.quantized",  # converted INT8 modules (and .dynamic)
    "torch.ao.nn.intrinsic.quantized",
    "torch.ao.nn.qat",  # prepared for QAT
    "torch.ao.nn.intrinsic.qat",
    "torch.nn.quantized",
    "torch.nn.intrinsic.quantized",
    "torch.nn.qat",
)
# Kept as float modules by eager quantization: their presence says nothing.
_NEUTRAL_QUANT_TYPES = ("FloatFunctional",)


def quantized_module_names(model: nn.Module) -> list[str]:
    """Names of modules that are quantized, QAT-prepared, or observers/fake-quantizers."""
    from torch.ao.quantization import FakeQuantizeBase
    from torch.ao.quantization.observer import ObserverBase

    found = []
    for name, m in model.named_modules():
        cls = type(m)
        if cls.__name__ in _NEUTRAL_QUANT_TYPES:
            continue
        if cls.__module__.startswith(_QUANTIZED_MODULE_PREFIXES) \
                or isinstance(m, (FakeQuantizeBase, ObserverBase)) \
                or any(t.is_quantized for t in m.parameters(recurse=False)) \
                or any(t.is_quantized for t in m.buffers(recurse=False)):
            found.append(name or type(m).__name__)
    return found


def check_prunable(model: nn.Module) -> None:
    """Raise :class:`PruningError` if ``model`` is quantized (converted, QAT-prepared or with
    observers attached): prune the float model, then quantize."""
    found = quantized_module_names(model)
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise PruningError(
            f"cannot prune a quantized model (quantized/observed modules: {shown}); prune the "
            "float model first, then quantize it (e.g. the prune-l1-structured-<p>-int8 variant)"
        )


def masked_tensor_names(model: nn.Module) -> list[str]:
    """Names of parameters still under ``torch.nn.utils.prune`` reparametrization (a
    ``<name>_orig`` parameter with its pruning hook or ``<name>_mask`` buffer)."""
    from torch.nn.utils import prune

    found = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        hooked = {
            hook._tensor_name
            for hook in module._forward_pre_hooks.values()
            if isinstance(hook, prune.BasePruningMethod)
        }
        buffers = dict(module.named_buffers(recurse=False))
        for name, _ in module.named_parameters(recurse=False):
            base = name[: -len("_orig")] if name.endswith("_orig") else None
            if base is not None and (base in hooked or f"{base}_mask" in buffers):
                found.append(prefix + base)
    return found


# -- layouts -------------------------------------------------------------------------------------


def pruned_shapes(model: nn.Module) -> dict[str, dict[str, int]]:
    """The channel layout of every Conv2d and BatchNorm2d of ``model`` (JSON-compatible):
    ``{name: {"kind": "conv2d", "in_channels", "out_channels", "groups"}}`` and
    ``{name: {"kind": "batchnorm2d", "num_features"}}``."""
    shapes: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if type(m) is nn.Conv2d:
            shapes[name] = {"kind": "conv2d", "in_channels": m.in_channels,
                            "out_channels": m.out_channels, "groups": m.groups}
        elif type(m) is nn.BatchNorm2d:
            shapes[name] = {"kind": "batchnorm2d", "num_features": m.num_features}
    return shapes


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def apply_pruned_shapes(model: nn.Module, shapes: dict[str, dict[str, int]]) -> None:
    """Reshape ``model``'s Conv2d / BatchNorm2d layers in place to ``shapes`` (from
    :func:`pruned_shapes`): each layer that differs is replaced by a fresh one of the recorded
    channel counts (same kernel, stride, padding, bias, eps, momentum), ready for
    ``load_state_dict``.

    Raises:
        PruningError: a recorded layer the model lacks, or of another kind.
    """
    modules = dict(model.named_modules())
    for name, s in shapes.items():
        m = modules.get(name)
        kind = s.get("kind")
        if kind == "conv2d" and type(m) is nn.Conv2d:
            if (m.in_channels, m.out_channels, m.groups) == (s["in_channels"], s["out_channels"],
                                                             s["groups"]):
                continue
            new = nn.Conv2d(int(s["in_channels"]), int(s["out_channels"]), m.kernel_size,
                            stride=m.stride, padding=m.padding, dilation=m.dilation,
                            groups=int(s["groups"]), bias=m.bias is not None,
                            padding_mode=m.padding_mode)
        elif kind == "batchnorm2d" and type(m) is nn.BatchNorm2d:
            if m.num_features == s["num_features"]:
                continue
            new = nn.BatchNorm2d(int(s["num_features"]), eps=m.eps, momentum=m.momentum,
                                 affine=m.affine, track_running_stats=m.track_running_stats)
        else:
            raise PruningError(f"pruned layout does not fit the model: {name!r} is recorded as "
                               f"{kind}, the model has {type(m).__name__ if m else 'no such layer'}")
        _set_module(model, name, new.train(m.training))


# -- saving and loading --------------------------------------------------------------------------


def save_pruned(path: str | os.PathLike, model: nn.Module, meta: dict | None = None) -> None:
    """Save a (structurally) pruned float detector atomically as a navya checkpoint whose
    ``meta`` also holds ``pruned_shapes`` (every conv/BN channel layout) and ``pruning``
    (the model's ``pruning_info``). Load it with :func:`load_pruned` (or
    :func:`navya.models.load_checkpoint`).

    Raises:
        PruningError: a quantized model (save the float pruned model, quantize after loading)
            or one with pruning masks still attached.
    """
    check_prunable(model)
    masked = masked_tensor_names(model)
    if masked:
        raise PruningError(f"pruning masks still attached to {masked[:3]}; call "
                           "torch.nn.utils.prune.remove first")
    extra: dict[str, Any] = {"pruned_shapes": pruned_shapes(model)}
    info = getattr(model, "pruning_info", None)
    if info:
        extra["pruning"] = _jsonable(info)
    save_checkpoint(path, model, {**(meta or {}), **extra})


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def load_pruned(path: str | os.PathLike) -> tuple[SSDLite, Checkpoint]:
    """Load a checkpoint written by :func:`save_pruned` (or a plain one): rebuild the base
    model, reshape it to the recorded layout, load the weights. Returns ``(model in eval mode,
    Checkpoint)``; ``model.pruning_info`` is restored when it was saved."""
    model, ckpt = load_checkpoint(path)
    if "pruning" in ckpt.meta:
        model.pruning_info = dict(ckpt.meta["pruning"])
    return model.eval(), ckpt
