"""Static model statistics: parameter counts and sparsity, serialized size, MACs.

All functions are pure: they read the model, never change it (no mode switch, no fusion,
no engine change), and return frozen dataclasses. Quantized models converted by eager
``torch.ao.quantization`` are first-class: their packed weights are counted like float
weights, so an INT8 model reports the same parameter count and MACs as its float twin.
"""

from __future__ import annotations

import io
import re
import threading
import warnings
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
from torch import Tensor, nn

from navya.models.pruned import masked_tensor_names

__all__ = [
    "MacStats",
    "ParamStats",
    "SizeStats",
    "artifact_size",
    "count_macs",
    "param_stats",
    "serialized_size",
]

_MB = 10**6


# --------------------------------------------------------------------------------------
# Weights: float, pruning-reparametrized and packed quantized
# --------------------------------------------------------------------------------------


def _quantized_weighted_types() -> tuple[type, ...]:
    """Quantized modules that keep their weight packed (``m.weight()`` is a method)."""
    import torch.ao.nn.quantized as nnq

    return (nnq.modules.conv._ConvNd, nnq.Linear)


def _quantized_prunable_types() -> tuple[type, ...]:
    import torch.ao.nn.quantized as nnq

    # Includes the fused ConvReLU*d / LinearReLU and the dynamic Linear (subclasses).
    return (nnq.Conv1d, nnq.Conv2d, nnq.Conv3d, nnq.Linear)


_FLOAT_PRUNABLE: tuple[type, ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _is_prunable(module: nn.Module) -> bool:
    """Conv (1d/2d/3d, not transposed) and Linear layers, float, QAT or quantized."""
    return isinstance(module, _FLOAT_PRUNABLE + _quantized_prunable_types())


def _module_weight(module: nn.Module) -> Tensor | None:
    """The weight a conv/linear module computes with (packed, masked or plain), or None."""
    if isinstance(module, _quantized_weighted_types()):
        return module.weight()
    weight = getattr(module, "weight", None)  # with pruning attached: orig * mask
    return weight if isinstance(weight, Tensor) else None


def _own_tensors(module: nn.Module) -> Iterator[tuple[str, Tensor, int | None]]:
    """The parameter tensors owned directly by ``module``, as the model computes with them.

    Yields ``(name, tensor, key)``; ``key`` identifies the stored parameter so shared
    parameters are counted once (None for packed weights, owned by their module alone).
    Packed quantized conv/linear weights and biases are unpacked (``weight()``, ``bias()``);
    a parameter under ``torch.nn.utils.prune`` reparametrization (``X_orig`` with an
    ``X_mask`` buffer) is replaced by the masked tensor ``X``.
    """
    if isinstance(module, _quantized_weighted_types()):
        yield "weight", module.weight(), None
        bias = module.bias()
        if bias is not None:
            yield "bias", bias.detach(), None
    buffers = dict(module.named_buffers(recurse=False))
    for name, param in module.named_parameters(recurse=False):
        if name.endswith("_orig") and f"{name[:-5]}_mask" in buffers:
            base = name[: -len("_orig")]
            yield base, getattr(module, base).detach(), id(param)
        else:
            yield name, param.detach(), id(param)


def _nonzero(t: Tensor) -> int:
    """Number of nonzero entries; a quantized entry is zero when its integer equals its zero point."""
    if not t.is_quantized:
        return int(torch.count_nonzero(t))
    scheme = t.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return int(torch.count_nonzero(t.int_repr().to(torch.int32) - t.q_zero_point()))
    if scheme in (torch.per_channel_affine, torch.per_channel_symmetric):
        axis = t.q_per_channel_axis()
        shape = [1] * t.dim()
        shape[axis] = t.shape[axis]
        zero_points = t.q_per_channel_zero_points().reshape(shape).to(torch.int32)
        return int(torch.count_nonzero(t.int_repr().to(torch.int32) - zero_points))
    # Float zero points (per_channel_affine_float_qparams): dequantized value is 0.
    return int(torch.count_nonzero(t.dequantize()))


# --------------------------------------------------------------------------------------
# Parameters and sparsity
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamStats:
    """Parameter counts of a model.

    Attributes:
        params: all parameters (float, and quantized packed weights/biases unpacked).
        nonzero_params: those that are nonzero (quantized: integer value != zero point).
        prunable_params: weights of Conv1d/2d/3d and Linear layers (float or quantized);
            biases, BatchNorm and other parameters are not prunable.
        prunable_nonzero: nonzero prunable weights.
    """

    params: int
    nonzero_params: int
    prunable_params: int
    prunable_nonzero: int

    @property
    def sparsity(self) -> float:
        """Fraction of zero parameters, over all parameters (0 for an empty model)."""
        return 1.0 - self.nonzero_params / self.params if self.params else 0.0

    @property
    def prunable_sparsity(self) -> float:
        """Fraction of zero weights among conv and linear weights (0 if there are none)."""
        if not self.prunable_params:
            return 0.0
        return 1.0 - self.prunable_nonzero / self.prunable_params


def param_stats(model: nn.Module) -> ParamStats:
    """Count parameters, nonzero parameters, and the same for prunable (conv/linear) weights.

    Quantized conv/linear modules keep their weights packed; they are unpacked so an INT8
    model reports the same ``params`` as its (fused) float twin. Shared parameters and
    shared modules are counted once. With ``torch.nn.utils.prune`` still attached, the
    masked weight is counted (so the mask's zeros show as sparsity), not ``weight_orig``.
    """
    seen: set[int] = set()
    params = nonzero = prunable = prunable_nonzero = 0
    for module in model.modules():  # each module once, even if shared
        module_is_prunable = _is_prunable(module)
        for name, tensor, key in _own_tensors(module):
            if key is not None:
                if key in seen:
                    continue
                seen.add(key)
            count, nz = tensor.numel(), _nonzero(tensor)
            params += count
            nonzero += nz
            if module_is_prunable and name == "weight":
                prunable += count
                prunable_nonzero += nz
    return ParamStats(
        params=params,
        nonzero_params=nonzero,
        prunable_params=prunable,
        prunable_nonzero=prunable_nonzero,
    )


# --------------------------------------------------------------------------------------
# Serialized size
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SizeStats:
    """Size of the serialized state dict, raw and deflated.

    Attributes:
        size_bytes: bytes written by ``torch.save(model.state_dict(), f)``.
        size_zip_bytes: the same bytes compressed with zlib (DEFLATE, level 9); this is
            where unstructured sparsity shows, the raw size does not change with zeros.
    """

    size_bytes: int
    size_zip_bytes: int

    @property
    def size_mb(self) -> float:
        """Raw size in MB (10**6 bytes)."""
        return self.size_bytes / _MB

    @property
    def size_zip_mb(self) -> float:
        """Compressed size in MB (10**6 bytes)."""
        return self.size_zip_bytes / _MB


def serialized_size(model: nn.Module) -> SizeStats:
    """Bytes of ``torch.save(model.state_dict())``, the artifact a user ships, and zlib size.

    Quantized tensors are saved as they are (int8 plus quantization parameters). The state
    dict is written to a memory buffer, so torch.save's zip records are named
    ``archive/...``: the same bytes as a file named ``archive.pt`` (torch.save names the
    records after the file's stem, so another file name shifts the size by a few bytes per
    tensor).

    Raises:
        ValueError: if pruning reparametrization is still attached (``weight_orig`` and
            ``weight_mask`` in the state dict): it stores every pruned tensor twice plus a
            mask, so the size would double. Call ``torch.nn.utils.prune.remove`` first.
    """
    pruned = masked_tensor_names(model)
    if pruned:
        raise ValueError(
            "model still has pruning masks attached (*_orig / *_mask in its state dict) for "
            f"{', '.join(pruned)}; remove them with torch.nn.utils.prune.remove(module, name) "
            "before measuring size, otherwise the size counts every pruned tensor twice"
        )
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    return SizeStats(size_bytes=len(data), size_zip_bytes=len(zlib.compress(data, level=9)))


def artifact_size(files: Mapping[str, bytes]) -> SizeStats:
    """Size of a deployment artifact given as its files (name -> bytes: an ``.onnx`` file, an
    OpenVINO ``.xml`` + ``.bin`` pair, a ``.pte`` program): the bytes a user ships, and the
    zlib (level 9) size of the files concatenated in name order."""
    if not files:
        raise ValueError("an artifact has at least one file")
    data = b"".join(bytes(files[name]) for name in sorted(files))
    return SizeStats(size_bytes=len(data), size_zip_bytes=len(zlib.compress(data, level=9)))


# --------------------------------------------------------------------------------------
# MACs (fvcore)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MacStats:
    """Multiply-accumulate counts of one forward pass.

    Attributes:
        macs: total multiply-accumulates of conv, linear and matmul-family operators.
        effective_macs: ``macs`` with each conv/linear module's MACs scaled by the density
            (nonzero fraction) of its weight: what unstructured sparsity could save.
            Equal to ``macs`` for a dense model.
        by_module: MACs per module name as fvcore aggregates them (a module includes its
            submodules; ``""`` is the whole model).
    """

    macs: int
    effective_macs: int
    by_module: dict[str, int] = field(hash=False)


def _shape(value: Any) -> list[int] | None:
    """Complete shape of a traced value, or None if the trace did not record one."""
    t = value.type()
    if isinstance(t, torch._C.TensorType) and t.sizes() is not None:
        return list(t.sizes())
    return None


def _prod(xs: list[int] | tuple[int, ...]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _zero_handle(inputs: list[Any], outputs: list[Any]) -> int:
    return 0


def _attr_object(root: nn.Module, value: Any) -> Any:
    """Follow a traced ``prim::GetAttr`` chain back to the graph's ``self`` and fetch the object."""
    names: list[str] = []
    node = value.node()
    while node.kind() == "prim::GetAttr":
        names.append(node.s("name"))
        node = node.input().node()
    if node.kind() != "prim::Param":
        raise RuntimeError(f"cannot resolve the packed parameters of {value.debugName()}")
    obj: Any = root
    for name in reversed(names):
        obj = getattr(obj, name)
    return obj


def _quantized_conv_handle(root: nn.Module):
    """MACs of ``quantized::conv*d[_relu]``: N*Cout*prod(out spatial) * (Cin/groups)*prod(kernel).

    The packed weight is an opaque object in the graph: its shape is read from the very
    packed-params object the op consumed (``packed.unpack()[0]``, ``[Cout, Cin/g, *k]``;
    conv1d is packed as 2d with a kernel height of 1), found by following the graph's
    ``prim::GetAttr`` chain on the real module. The output shape is the node's traced type.
    """

    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        out_shape = _shape(outputs[0])
        if out_shape is None:
            raise RuntimeError("quantized conv output has no traced shape")
        weight_shape = _attr_object(root, inputs[1]).unpack()[0].shape
        return _prod(out_shape) * _prod(tuple(weight_shape[1:]))

    return handle


def _quantized_linear_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """MACs of ``quantized::linear[_relu|_dynamic]``: prod(output shape) * in_features."""
    in_shape, out_shape = _shape(inputs[0]), _shape(outputs[0])
    if in_shape is None or out_shape is None:
        raise RuntimeError("quantized linear has no traced shapes")
    return _prod(out_shape) * in_shape[-1]


_QUANTIZED_CONV_OPS = (
    "quantized::conv1d",
    "quantized::conv1d_relu",
    "quantized::conv2d",  # also depthwise (groups = C): same op, groups in the packed weight
    "quantized::conv2d_relu",
    "quantized::conv3d",
    "quantized::conv3d_relu",
)
_QUANTIZED_LINEAR_OPS = (
    "quantized::linear",
    "quantized::linear_relu",
    "quantized::linear_dynamic",
    "quantized::linear_relu_dynamic",
)
# Operators that do no multiply-accumulate (element-wise, concatenation, activations), or
# whose cost is folded into the conv at deployment (BatchNorm: the INT8 model has it fused,
# counting it in the float twin would break the fp32 == INT8 comparison). fvcore counts some
# of them (norms, pooling, resampling) by default: here they are 0 on purpose, as MACs.
_ZERO_MAC_OPS = (
    "quantized::add",
    "quantized::add_relu",
    "quantized::add_scalar",
    "quantized::add_scalar_relu",
    "quantized::mul",
    "quantized::mul_relu",
    "quantized::mul_scalar",
    "quantized::mul_scalar_relu",
    "quantized::cat",
    "quantized::cat_relu",
    "quantized::relu6",
    "quantized::leaky_relu",
    "quantized::hardswish",
    "quantized::sigmoid",
    "quantized::batch_norm1d",
    "quantized::batch_norm2d",
    "quantized::batch_norm2d_relu",
    "quantized::batch_norm3d",
    "aten::quantize_per_tensor",
    "aten::quantize_per_channel",
    "aten::dequantize",
    "aten::batch_norm",
    "aten::group_norm",
    "aten::layer_norm",
    "aten::instance_norm",
    "aten::adaptive_avg_pool2d",
    "aten::upsample_nearest1d",
    "aten::upsample_nearest2d",
    "aten::upsample_nearest3d",
    "aten::upsample_linear1d",
    "aten::upsample_bilinear2d",
    "aten::upsample_trilinear3d",
    "aten::upsample_bicubic2d",
    "aten::grid_sampler",
)
# An operator with no handle whose name matches this probably does MACs: refuse to undercount.
_MAC_LIKE_OP = re.compile(
    r"conv|linear|matmul|einsum"
    r"|::_?(addmm|addmv|addbmm|baddbmm|bmm|mm|mv|dot|vdot|tensordot|_addmm_activation)$"
)

_TRACE_PATCH_LOCK = threading.Lock()


def _has_packed_params(model: nn.Module) -> bool:
    return any(isinstance(v, torch.ScriptObject) for m in model.modules() for v in vars(m).values())


def _module_trace_graph(module: nn.Module, inputs: Any, aliases: Any) -> torch._C.Graph:
    """Drop-in for fvcore's ``_get_scoped_trace_graph`` that can trace packed quantized ops.

    fvcore traces with ``torch.jit._get_trace_graph``, which passes the module state as
    graph inputs and fails on quantized modules (their packed weights are TorchScript
    objects, not tensors). ``torch.jit.trace`` of the module handles them; its inlined
    graph scopes are ``__module.a/__module.a.b`` (registered in fvcore's ``aliases`` as
    names of ``a`` and ``a.b``, since a graph's scopes cannot be renamed) and its attribute
    reads (``prim::GetAttr``) carry no shapes, so tensor attributes (float weights) get
    their real types for fvcore's float handles.
    """
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace", category=FutureWarning)
        traced = torch.jit.trace(module, args, check_trace=False, strict=False)
    graph = traced.inlined_graph
    objects: dict[Any, Any] = {next(iter(graph.inputs())): module}
    for node in graph.nodes():
        if node.kind() == "prim::GetAttr" and node.input() in objects:
            obj = getattr(objects[node.input()], node.s("name"))
            objects[node.output()] = obj
            if isinstance(obj, Tensor) and not obj.is_quantized:
                node.output().setType(torch._C.TensorType.create_from_tensor(obj))
        # Scopes cannot be renamed on a graph: teach fvcore the jit names as aliases.
        for part in node.scopeName().split("/"):
            if part.startswith("__module") and part not in aliases:
                name = part[len("__module.") :]
                if name in aliases:
                    aliases[part] = aliases[name]
    return graph


def _fvcore() -> Any:
    """Import fvcore.nn lazily; its import scripts a loss with ``torch.jit.script``, which
    warns (FutureWarning) in torch 2.14: silence exactly that warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script", category=FutureWarning)
        import fvcore.nn
        import fvcore.nn.jit_analysis  # noqa: F401

    return fvcore.nn


@contextmanager
def _fvcore_traces_modules() -> Iterator[None]:
    jit_analysis = _fvcore().jit_analysis

    with _TRACE_PATCH_LOCK:
        original = jit_analysis._get_scoped_trace_graph
        jit_analysis._get_scoped_trace_graph = _module_trace_graph
        try:
            yield
        finally:
            jit_analysis._get_scoped_trace_graph = original


def count_macs(module: nn.Module, inputs: tuple) -> MacStats:
    """Multiply-accumulates of ``module(*inputs)``, with fvcore's ``FlopCountAnalysis``.

    fvcore counts one multiply-add as one "flop" for conv, linear and matmul operators, so
    its total *is* the MAC count (not 2x). Only operators that multiply-accumulate count:
    element-wise ops, pooling, resampling and BatchNorm count 0 (BatchNorm is folded into
    the conv at deployment). Eager-mode quantized models (``quantized::conv2d``,
    ``conv2d_relu``, ``linear``, ``linear_relu``, ``linear_dynamic``, ...) get handles that
    report exactly the MACs of their float twin; quantized add/cat/activations count 0.

    Args:
        module: the network, traced as is (its train/eval mode is not changed).
        inputs: positional arguments of ``module``, tensors (e.g. ``(x,)``, x ``[N,3,H,W]``).

    Raises:
        RuntimeError: if the trace contains an operator that looks like it does MACs
            (conv, linear, matmul, ...) but has no handle: the count would be too low.
    """
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    analysis = _fvcore().FlopCountAnalysis(module, inputs)
    analysis.set_op_handle(**dict.fromkeys(_ZERO_MAC_OPS, _zero_handle))
    analysis.set_op_handle(**dict.fromkeys(_QUANTIZED_CONV_OPS, _quantized_conv_handle(module)))
    analysis.set_op_handle(**dict.fromkeys(_QUANTIZED_LINEAR_OPS, _quantized_linear_handle))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)

    with torch.no_grad():
        if _has_packed_params(module):
            with _fvcore_traces_modules():
                by_module = analysis.by_module()
        else:
            by_module = analysis.by_module()

    missing = sorted(op for op in analysis.unsupported_ops() if _MAC_LIKE_OP.search(op))
    if missing:
        raise RuntimeError(
            f"count_macs: no MAC handle for operator(s) {missing}; the count would be too low"
        )

    by_module = {name: int(v) for name, v in by_module.items()}
    total = by_module.get("", 0)
    saved = Fraction(0)
    for name, sub in module.named_modules():
        if not _is_prunable(sub) or not by_module.get(name):
            continue
        weight = _module_weight(sub)
        if weight is None or weight.numel() == 0:
            continue
        zeros = weight.numel() - _nonzero(weight.detach())
        saved += Fraction(by_module[name] * zeros, weight.numel())
    return MacStats(macs=total, effective_macs=round(total - saved), by_module=by_module)
