"""Pruned layouts: a structurally pruned detector's channel counts, saved with its checkpoint.

A structurally pruned model (:func:`navya.compress.prune.prune_structured`) no longer fits its
builder: its convolutions and BatchNorms have fewer channels.
:func:`navya.models.checkpoint.save_pruned` writes a navya checkpoint whose ``meta`` records
every Conv2d and BatchNorm2d shape (:func:`pruned_shapes`); :func:`navya.models.load_checkpoint`
(and :func:`~navya.models.checkpoint.load_pruned`) rebuilds the base model, reshapes those
layers (:func:`apply_pruned_shapes`) and loads the weights (``weights_only=True``, nothing
pickled). This module holds the layouts and imports no checkpoint code (no import cycle).

Only float models are saved this way: prune the float model, save it, quantize after loading
(:func:`check_prunable` refuses quantized, QAT-prepared or observed models).
"""

from __future__ import annotations

from torch import nn

from navya.errors import NavyaError

__all__ = [
    "PruningError",
    "apply_pruned_shapes",
    "check_prunable",
    "masked_tensor_names",
    "pruned_shapes",
    "quantized_module_names",
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
