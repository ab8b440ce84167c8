"""A TFLite MobileNetV2 1.0 ImageNet classifier read into torchvision's ``mobilenet_v2`` layout.

:func:`read_mobilenet_v2` parses the flatbuffer with the ``tflite`` package (no TensorFlow, no
interpreter) and returns a state dict for ``torchvision.models.mobilenet_v2(num_classes=N)``
(``features.<i>...``, ``classifier.1.*``), which
:func:`navya.models.init.torchvision_backbone_state` then renames onto the detector's backbone
like any torchvision checkpoint.

What is done to the weights:

- **Dequantized** as the file says: ``(q - zero_point) * scale``, per tensor or per output channel
  (``quantized_dimension``); int32 biases with scale ``input_scale * weight_scale``, as TFLite's
  kernels use them (a scale stored with the bias is checked against it). float32 and float16
  files are read as they are.
- **Mapped by graph order and shape**: the 52 convolutions and the classifier of the graph, in
  order, onto torchvision's, checking every weight shape, stride, depthwise-ness and fused
  activation (ReLU6 after every Conv-BN except the projections); anything else (another
  architecture or width, a corrupt file) is refused with a :class:`TFLiteError` naming the file.
- **Batch norm was folded** into the convolutions by the TFLite converter (each conv has a bias,
  there is no BN). torchvision's convolutions have no bias and each is followed by a
  ``BatchNorm2d``, so that layer is made the identity plus the folded bias: ``weight`` 1,
  ``running_mean`` 0, ``running_var`` ``1 - eps`` (in float32 ``(var + eps)`` is then exactly 1,
  so ``(x - 0) / sqrt(var + eps) == x`` bit for bit; ``bn_eps`` is the *target* model's eps:
  torchvision's classifier 1e-5, navya's detector 1e-3), ``bias`` the folded conv bias. The
  statistics of the training set are gone: fine-tuning the BN layers starts from these values,
  not from real running statistics.
- **The classifier** is kept with the file's classes: 1001 for Google's ImageNet models (class 0
  is "background", ImageNet's 1000 are 1..1000), as torchvision's ``classifier.1`` of that size.
  A detector backbone never uses it (:func:`~navya.models.init.torchvision_backbone_state`
  drops ``classifier.*``).

What it costs, besides the quantization error of the uint8 weights (the quantized model's
weights are exactly these values; it is the activations that TFLite also rounds to uint8):

- TFLite uses ReLU6 like torchvision, so the 1001-way torchvision classifier is the same network;
  navya's detector backbone uses ReLU (see :mod:`navya.models.init`), so there the weights start
  a slightly different function, as with torchvision's own ImageNet weights.
- TFLite pads stride-2 convolutions TensorFlow's way ("SAME": on an even input the extra row and
  column go at the bottom/right), torchvision symmetrically (one on each side): the mapped
  torchvision model sees its stride-2 windows shifted by one pixel. :func:`tf_same_padding`
  gives a torchvision classifier TF's padding where exact parity is wanted.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from navya.errors import NavyaError

__all__ = ["IMAGENET", "TFLiteError", "TFLiteWeights", "mobilenet_v2_classifier",
           "read_mobilenet_v2", "tf_same_padding"]

#: torchvision's ``BatchNorm2d`` eps (the default of :func:`read_mobilenet_v2`).
TORCHVISION_BN_EPS = 1e-5


@dataclass(frozen=True)
class _Source:
    file: str
    sha256: str
    repository: str
    commit: str
    licence: str
    env: str  # the variable that names the file
    default: str  # relative to the checkout's parent when the variable is unset


#: The ImageNet weights ``--backbone-weights imagenet`` names: Google's quantized MobileNetV2 1.0
#: 224 classifier (uint8, BN folded, 1001 classes), as published in google-coral/test_data. Not
#: committed here: it lives beside the checkout (README, "ImageNet backbone weights").
IMAGENET = _Source(
    file="mobilenet_v2_1.0_224_quant.tflite",
    sha256="7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
    repository="google-coral/test_data",
    commit="104342d2d3480b3e66203073dac24f4e2dbb4c41",
    licence="Apache-2.0",
    env="NAVYA_IMAGENET_WEIGHTS",
    default="shared/weights/mobilenet_v2_1.0_224_quant.tflite",
)


class TFLiteError(NavyaError, ValueError):
    """A TFLite file that is not a readable MobileNetV2 1.0 classifier (the message names it)."""


@dataclass
class TFLiteWeights:
    """What :func:`read_mobilenet_v2` read: ``state`` for
    ``torchvision.models.mobilenet_v2(num_classes=num_classes)``; the input the graph expects
    (NHWC ``input_shape``; ``input_quantization``: ``(scale, zero_point)`` of a uint8/int8 input,
    ``None`` for a float one); ``labels``: the label file embedded in the model's metadata, if
    any (for Google's ImageNet models: 1001 names, ``background`` first)."""

    path: Path
    state: dict[str, torch.Tensor]
    num_classes: int
    input_shape: tuple[int, ...]
    input_quantization: tuple[float, int] | None
    labels: list[str] | None


def _enum_names(enum: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


class _Graph:
    """The one subgraph of a TFLite model, with typed access to tensors and options."""

    def __init__(self, path: Path, buf: bytes):
        import tflite

        self.path, self.buf, self.tfl = path, buf, tflite
        if len(buf) < 8 or buf[4:8] != b"TFL3":
            raise TFLiteError(f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
        try:
            self.model = tflite.Model.GetRootAsModel(buf, 0)
            if self.model.SubgraphsLength() != 1:
                raise TFLiteError(f"{path}: {self.model.SubgraphsLength()} subgraphs; a "
                                  "MobileNetV2 classifier has one")
            self.graph = self.model.Subgraphs(0)
            op_names = _enum_names(tflite.BuiltinOperator)
            self.opcodes = []
            for i in range(self.model.OperatorCodesLength()):
                code = self.model.OperatorCodes(i)
                builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                self.opcodes.append(op_names.get(builtin, f"builtin {builtin}"))
            self.ops = [self.graph.Operators(i) for i in range(self.graph.OperatorsLength())]
            self.op_types = [self.opcodes[op.OpcodeIndex()] for op in self.ops]
        except TFLiteError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer fails in many ways
            raise TFLiteError(f"{path}: not a readable TFLite model ({type(exc).__name__}: "
                              f"{exc})") from None

    def shape(self, index: int) -> tuple[int, ...]:
        return tuple(int(d) for d in self.graph.Tensors(index).ShapeAsNumpy())

    def name(self, index: int) -> str:
        return self.graph.Tensors(index).Name().decode(errors="replace")

    def quantization(self, index: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        q = self.graph.Tensors(index).Quantization()
        if q is None or q.ScaleLength() == 0:
            return None
        zero = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(q.ScaleLength(), int)
        return (q.ScaleAsNumpy().astype(np.float64), np.asarray(zero, np.int64),
                q.QuantizedDimension())

    def array(self, index: int) -> np.ndarray:
        """The constant tensor ``index`` as stored (its TFLite dtype and shape)."""
        t = self.graph.Tensors(index)
        buffer = self.model.Buffers(t.Buffer())
        if buffer.Offset() > 1:  # large models keep their data after the flatbuffer
            raw = self.buf[buffer.Offset():buffer.Offset() + buffer.Size()]
        else:
            raw = buffer.DataAsNumpy()
            raw = b"" if isinstance(raw, int) else raw.tobytes()
        tt = self.tfl.TensorType
        dtypes = {tt.FLOAT32: np.float32, tt.FLOAT16: np.float16, tt.INT32: np.int32,
                  tt.UINT8: np.uint8, tt.INT8: np.int8}
        if t.Type() not in dtypes:
            raise TFLiteError(f"{self.path}: tensor {self.name(index)!r} has type "
                              f"{_enum_names(tt).get(t.Type(), t.Type())}; only float32, "
                              "float16, int32, uint8 and int8 constants are read")
        shape = self.shape(index)
        values = np.frombuffer(raw, dtypes[t.Type()])
        if values.size != int(np.prod(shape)):
            raise TFLiteError(f"{self.path}: tensor {self.name(index)!r} of shape {shape} has "
                              f"{values.size} values in its buffer (a truncated or corrupt file?)")
        return values.reshape(shape)

    def dequantized(self, index: int, scale: np.ndarray | None = None) -> np.ndarray:
        """The constant tensor ``index`` as float: ``(q - zero_point) * scale``, per tensor or
        along its ``quantized_dimension``. ``scale``: the scale to use instead of the file's,
        with zero point 0 along axis 0 (int32 biases: input scale x weight scale)."""
        values = self.array(index)
        if values.dtype.kind == "f":
            return values.astype(np.float32)
        q = self.quantization(index) if scale is None else (scale, np.zeros(len(scale), int), 0)
        if q is None:
            raise TFLiteError(f"{self.path}: integer tensor {self.name(index)!r} has no "
                              "quantization parameters")
        scales, zeros, axis = q
        if scales.size not in (1, values.shape[axis]) or zeros.size not in (1, scales.size):
            raise TFLiteError(f"{self.path}: tensor {self.name(index)!r}: {scales.size} scales "
                              f"for {values.shape[axis]} channels on axis {axis}")
        view = [1] * values.ndim
        if scales.size > 1:
            view[axis] = -1
        out = (values.astype(np.int64) - zeros.reshape(view)) * scales.reshape(view)
        return out.astype(np.float32)

    def options(self, op, kind: str):
        table = op.BuiltinOptions()
        opts = getattr(self.tfl, kind)()
        if table is None:
            raise TFLiteError(f"{self.path}: an operator has no {kind}")
        opts.Init(table.Bytes, table.Pos)
        return opts


@dataclass
class _Target:
    """One convolution of torchvision's MobileNetV2 and the layers after it."""

    conv: str  # module name of the Conv2d (or of the Linear, for the classifier)
    module: nn.Module
    bn: str | None  # module name of its BatchNorm2d
    relu6: bool  # a ReLU6 follows


def _targets(tv: nn.Module) -> list[_Target]:
    """Every convolution and linear layer of ``tv`` in graph order, with what follows it in
    its ``nn.Sequential`` (a ``BatchNorm2d``, a ``ReLU6``)."""
    found: dict[str, _Target] = {}
    for name, parent in tv.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for i, (leaf, child) in enumerate(children):
            if isinstance(child, nn.Conv2d | nn.Linear):
                nxt = [c for _, c in children[i + 1:i + 3]]
                bn = (f"{name}.{children[i + 1][0]}" if nxt and isinstance(nxt[0], nn.BatchNorm2d)
                      else None)
                relu6 = any(isinstance(c, nn.ReLU6) for c in nxt)
                found[f"{name}.{leaf}"] = _Target(f"{name}.{leaf}", child, bn, relu6)
    # pre-order names the depthwise conv (inside its Conv2dNormActivation) before the
    # projection that follows it in the same block
    return [found[n] for n, m in tv.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _torch_layout(kind: str, weight: np.ndarray) -> np.ndarray:
    if kind == "CONV_2D":  # OHWI -> OIHW
        return weight.transpose(0, 3, 1, 2)
    if kind == "DEPTHWISE_CONV_2D":  # 1HW(C*m) -> (C*m)1HW
        return weight.transpose(3, 0, 1, 2)
    return weight  # FULLY_CONNECTED: (out, in)


def read_mobilenet_v2(path: str | os.PathLike, *, bn_eps: float = TORCHVISION_BN_EPS
                      ) -> TFLiteWeights:
    """The TFLite MobileNetV2 1.0 classifier at ``path`` as a torchvision ``mobilenet_v2``
    state dict (see the module's docstring for what is done). ``bn_eps``: the eps of the
    ``BatchNorm2d`` layers that will hold the folded biases (the identity is exact for it).
    Raises :class:`TFLiteError`, naming the file, for anything else."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise TFLiteError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return _read(path, _Graph(path, buf), bn_eps)
    except (TFLiteError, AssertionError):
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer fails in many ways
        raise TFLiteError(f"{path}: not a readable TFLite model ({type(exc).__name__}: "
                          f"{exc})") from None


def _read(path: Path, g: _Graph, bn_eps: float) -> TFLiteWeights:
    from torchvision.models import mobilenet_v2

    what = "a MobileNetV2 1.0 classifier"
    layers = [(op, kind) for op, kind in zip(g.ops, g.op_types, strict=True)
              if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    if not layers:
        raise TFLiteError(f"{path}: no convolution in the graph: not {what}")
    num_classes = g.shape(layers[-1][0].Inputs(1))[0]  # conv (O, 1, 1, I) or dense (O, I)
    tv = mobilenet_v2(num_classes=num_classes)
    targets = _targets(tv)
    if len(layers) != len(targets):
        raise TFLiteError(f"{path}: {len(layers)} convolution/fully-connected layers, "
                          f"{what} has {len(targets)}: another architecture")
    act_names = _enum_names(g.tfl.ActivationFunctionType)
    state: dict[str, torch.Tensor] = {}
    for i, ((op, kind), target) in enumerate(zip(layers, targets, strict=True)):
        where = f"{path}: layer {i} ({kind} {g.name(op.Outputs(0))!r})"
        module = target.module
        is_dw = isinstance(module, nn.Conv2d) and module.groups > 1
        expected_kind = ("DEPTHWISE_CONV_2D" if is_dw else "FULLY_CONNECTED/CONV_2D"
                         if isinstance(module, nn.Linear) else "CONV_2D")
        if kind not in expected_kind.split("/"):
            raise TFLiteError(f"{where}: {what} has a {expected_kind} here ({target.conv}): "
                              "another architecture")
        options = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
                   "FULLY_CONNECTED": "FullyConnectedOptions"}[kind]
        opts = g.options(op, options)
        weight = _torch_layout(kind, g.dequantized(op.Inputs(1)))
        if kind == "CONV_2D" and isinstance(module, nn.Linear):
            weight = weight.reshape(weight.shape[0], -1) if weight.shape[2:] == (1, 1) else weight
        if tuple(weight.shape) != tuple(module.weight.shape):
            raise TFLiteError(f"{where}: weight of shape {tuple(weight.shape)} (torch layout), "
                              f"{what} has {tuple(module.weight.shape)} ({target.conv}): "
                              "another architecture or width")
        if isinstance(module, nn.Conv2d):
            stride = (opts.StrideH(), opts.StrideW())
            if stride != tuple(module.stride):
                raise TFLiteError(f"{where}: stride {stride}, {what} has "
                                  f"{tuple(module.stride)} ({target.conv})")
            if module.kernel_size != (1, 1) and opts.Padding() != g.tfl.Padding.SAME:
                raise TFLiteError(f"{where}: VALID padding, {what} pads its "
                                  f"{module.kernel_size[0]}x{module.kernel_size[1]} convolutions "
                                  "(SAME)")
            if is_dw and opts.DepthMultiplier() != 1:
                raise TFLiteError(f"{where}: depth multiplier {opts.DepthMultiplier()}, "
                                  f"{what} has 1")
        act = act_names.get(opts.FusedActivationFunction(), "?")
        if act != ("RELU6" if target.relu6 else "NONE"):
            raise TFLiteError(f"{where}: fused activation {act}, {what} has "
                              f"{'ReLU6' if target.relu6 else 'none'} after {target.conv}")
        out_channels = weight.shape[0]
        bias = np.zeros(out_channels, np.float32)
        if op.InputsLength() > 2 and op.Inputs(2) >= 0:
            bias = _bias(g, op, where)
        if bias.shape != (out_channels,):
            raise TFLiteError(f"{where}: bias of shape {bias.shape}, expected ({out_channels},)")
        state[f"{target.conv}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        if target.bn is None:  # the classifier (the only layer with a bias in torchvision)
            state[f"{target.conv}.bias"] = torch.from_numpy(bias)
            continue
        state[f"{target.bn}.weight"] = torch.ones(out_channels)
        state[f"{target.bn}.bias"] = torch.from_numpy(bias)
        state[f"{target.bn}.running_mean"] = torch.zeros(out_channels)
        # computed in float32: float32(1 - eps) + eps rounds to exactly 1 (checked below)
        state[f"{target.bn}.running_var"] = torch.full((out_channels,), 1.0 - bn_eps)
        state[f"{target.bn}.num_batches_tracked"] = torch.tensor(0)
    var = state[f"{targets[0].bn}.running_var"][:1]
    if not torch.equal(var + bn_eps, torch.ones(1)):
        raise TFLiteError(f"bn_eps={bn_eps}: float32(1 - eps) + eps is not exactly 1; the "
                          "folded batch norm would not be the identity")
    missing = set(tv.state_dict()) ^ set(state)
    if missing:  # the targets cover torchvision's whole state dict
        raise AssertionError(f"state dict keys differ from torchvision's: {sorted(missing)[:5]}")
    graph_input = g.graph.Inputs(0)
    in_q = g.quantization(graph_input)
    in_type = g.graph.Tensors(graph_input).Type()
    quantized = in_q is not None and in_type in (g.tfl.TensorType.UINT8, g.tfl.TensorType.INT8)
    return TFLiteWeights(
        path=path, state=state, num_classes=num_classes, input_shape=g.shape(graph_input),
        input_quantization=(float(in_q[0][0]), int(in_q[1][0])) if quantized else None,
        labels=_embedded_labels(path, num_classes))


def _bias(g: _Graph, op, where: str) -> np.ndarray:
    """The bias of ``op`` as float; an int32 bias has scale ``input_scale * weight_scale``
    (TFLite's rule; checked against the bias's own scale where the file gives one)."""
    index = op.Inputs(2)
    raw = g.array(index)
    if raw.dtype != np.int32:
        return g.dequantized(index)
    in_q, w_q = g.quantization(op.Inputs(0)), g.quantization(op.Inputs(1))
    if in_q is None or w_q is None:
        raise TFLiteError(f"{where}: int32 bias but an unquantized input or weight")
    product = np.broadcast_to(in_q[0][0] * w_q[0], raw.shape)
    own = g.quantization(index)
    if own is not None:
        scale = np.broadcast_to(own[0], raw.shape)
        if not np.allclose(scale, product, rtol=1e-4, atol=0):
            raise TFLiteError(f"{where}: bias scale {scale[:3]}... is not input scale x "
                              f"weight scale {product[:3]}...")
        if np.any(own[1] != 0):
            raise TFLiteError(f"{where}: int32 bias with a non-zero zero point")
    return g.dequantized(index, scale=np.asarray(product, np.float64))


def _embedded_labels(path: Path, num_classes: int) -> list[str] | None:
    """The label file that TFLite metadata packs into the model (a zip after the flatbuffer),
    when it has one line per class."""
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.endswith(".txt"):
                    lines = z.read(name).decode("utf-8", errors="replace").splitlines()
                    if len(lines) == num_classes:
                        return lines
    except (zipfile.BadZipFile, OSError):
        pass
    return None


def mobilenet_v2_classifier(weights: TFLiteWeights) -> nn.Module:
    """torchvision's ``mobilenet_v2`` with the file's classes (1001 for Google's ImageNet
    models), holding ``weights`` (read with the default ``bn_eps``), in eval mode. It takes
    NCHW float input: the file's uint8 input dequantized (for Google's models
    ``(q - 128) / 128``, i.e. ``x * 2 / 255 - 1``)."""
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2(num_classes=weights.num_classes)
    model.load_state_dict(weights.state, strict=True)
    return model.eval()


def tf_same_padding(model: nn.Module, image_size: int) -> nn.Module:
    """Give every convolution of ``model`` (a torchvision MobileNetV2) TensorFlow's "SAME"
    padding for ``image_size`` x ``image_size`` inputs, in place: the stride-2 convolutions pad
    ``(0, 1)`` instead of ``(1, 1)`` on even sizes. For parity checks against TFLite."""
    size = image_size
    for module in model.features.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        k, s = module.kernel_size[0], module.stride[0]
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        before, after = total // 2, total - total // 2
        if before != after:
            module.padding = (0, 0)
            module.register_forward_pre_hook(
                lambda _m, args, p=(before, after, before, after):
                (torch.nn.functional.pad(args[0], p),))
        else:
            module.padding = (before, before)
        size = out
    return model
