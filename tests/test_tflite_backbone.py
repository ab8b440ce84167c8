"""--backbone-weights from a TFLite MobileNetV2 ImageNet classifier (navya.models.tflite).

Without any downloaded file: synthetic TFLite graphs written here from a torchvision
``mobilenet_v2`` (batch norm folded, float32 or with quantized weights) read back exactly and run
by the TFLite interpreter like the mapped torchvision model; corrupt and foreign files are
refused naming the file; ``imagenet`` without its file says where to put which file.

With Google's quantized ImageNet classifier beside the checkout (``imagenet``, see
:data:`navya.models.tflite.IMAGENET`) and the photographs of google-coral/test_data (both under
``../shared/``, never committed; each test skips loudly naming what is missing and where to get
it): the mapped torchvision classifier and the TFLite interpreter agree on real photographs, and
the weights load into the whole detector backbone.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import tflite as T
import torch
from PIL import Image
from torch import nn
from torchvision.models import mobilenet_v2

from navya.models import build_model
from navya.models.init import (
    InitError,
    backbone_bn_eps,
    imagenet_weights_path,
    load_matching,
    resolve_backbone_weights,
    torchvision_backbone_state,
)
from navya.models.tflite import (
    IMAGENET,
    TFLiteError,
    mobilenet_v2_classifier,
    read_mobilenet_v2,
    tf_same_padding,
)

pytestmark = pytest.mark.usefixtures("one_thread_per_module")

ROOT = Path(__file__).resolve().parents[1]
#: google-coral/test_data's photographs (Apache-2.0 repository), kept beside the checkout
PHOTOS_ENV = "NAVYA_IMAGENET_PHOTOS"
PHOTOS_DEFAULT = ROOT.parent / "shared" / "photos" / "coral_test_data"
PHOTOS = ("bird.bmp", "cat.bmp", "dragonfly.bmp", "grace_hopper.bmp", "hot_dog.jpg", "owl.jpg",
          "parrot.jpg", "sunflower.bmp")


# --- a TFLite writer for synthetic graphs -------------------------------------------------------

class _Writer:
    """The few TFLite flatbuffer pieces a MobileNetV2 needs."""

    def __init__(self):
        self.b = flatbuffers.Builder(1 << 20)
        self.tensors: list[int] = []
        self.buffers: list[int] = [self._buffer(b"")]  # buffer 0: empty, by convention
        self.ops: list[int] = []
        self.codes: list[int] = []

    def _buffer(self, data: bytes) -> int:
        b = self.b
        vec = None
        if data:
            b.StartVector(1, len(data), 16)  # tensor data 16-byte aligned, as the converter does
            b.head -= len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            vec = b.EndVector()
        T.BufferStart(b)
        if vec is not None:
            T.BufferAddData(b, vec)
        return T.BufferEnd(b)

    def tensor(self, name: str, shape, data: np.ndarray | None = None,
               ttype: int = T.TensorType.FLOAT32, quant=None) -> int:
        b = self.b
        buffer = 0
        if data is not None:
            self.buffers.append(self._buffer(np.ascontiguousarray(data).tobytes()))
            buffer = len(self.buffers) - 1
        q = None
        if quant is not None:
            scales, zeros, axis = quant
            sv = b.CreateNumpyVector(np.asarray(scales, np.float32).reshape(-1))
            zv = b.CreateNumpyVector(np.asarray(zeros, np.int64).reshape(-1))
            T.QuantizationParametersStart(b)
            T.QuantizationParametersAddScale(b, sv)
            T.QuantizationParametersAddZeroPoint(b, zv)
            T.QuantizationParametersAddQuantizedDimension(b, axis)
            q = T.QuantizationParametersEnd(b)
        nm = b.CreateString(name)
        sh = b.CreateNumpyVector(np.asarray(shape, np.int32))
        T.TensorStart(b)
        T.TensorAddShape(b, sh)
        T.TensorAddType(b, ttype)
        T.TensorAddBuffer(b, buffer)
        T.TensorAddName(b, nm)
        if q is not None:
            T.TensorAddQuantization(b, q)
        self.tensors.append(T.TensorEnd(b))
        return len(self.tensors) - 1

    def op(self, code: int, inputs, outputs, options_type: int = 0, options=None) -> None:
        b = self.b
        if code not in self.codes:
            self.codes.append(code)
        opts = options(b) if options else None
        iv = b.CreateNumpyVector(np.asarray(inputs, np.int32))
        ov = b.CreateNumpyVector(np.asarray(outputs, np.int32))
        T.OperatorStart(b)
        T.OperatorAddOpcodeIndex(b, self.codes.index(code))
        T.OperatorAddInputs(b, iv)
        T.OperatorAddOutputs(b, ov)
        if opts is not None:
            T.OperatorAddBuiltinOptionsType(b, options_type)
            T.OperatorAddBuiltinOptions(b, opts)
        self.ops.append(T.OperatorEnd(b))

    def _offsets(self, items: list[int]) -> int:
        self.b.StartVector(4, len(items), 4)
        for item in reversed(items):
            self.b.PrependUOffsetTRelative(item)
        return self.b.EndVector()

    def finish(self, inputs, outputs) -> bytes:
        b = self.b
        tensors, ops = self._offsets(self.tensors), self._offsets(self.ops)
        iv = b.CreateNumpyVector(np.asarray(inputs, np.int32))
        ov = b.CreateNumpyVector(np.asarray(outputs, np.int32))
        T.SubGraphStart(b)
        T.SubGraphAddTensors(b, tensors)
        T.SubGraphAddInputs(b, iv)
        T.SubGraphAddOutputs(b, ov)
        T.SubGraphAddOperators(b, ops)
        graph = T.SubGraphEnd(b)
        codes = []
        for code in self.codes:
            T.OperatorCodeStart(b)
            T.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            T.OperatorCodeAddBuiltinCode(b, code)
            T.OperatorCodeAddVersion(b, 1)
            codes.append(T.OperatorCodeEnd(b))
        codes_v, graphs_v = self._offsets(codes), self._offsets([graph])
        buffers_v = self._offsets(self.buffers)
        T.ModelStart(b)
        T.ModelAddVersion(b, 3)
        T.ModelAddOperatorCodes(b, codes_v)
        T.ModelAddSubgraphs(b, graphs_v)
        T.ModelAddBuffers(b, buffers_v)
        b.Finish(T.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _conv_options(stride: int, act: int, depthwise: bool):
    def build(b):
        prefix = "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions"
        getattr(T, f"{prefix}Start")(b)
        getattr(T, f"{prefix}AddPadding")(b, T.Padding.SAME)
        getattr(T, f"{prefix}AddStrideH")(b, stride)
        getattr(T, f"{prefix}AddStrideW")(b, stride)
        getattr(T, f"{prefix}AddFusedActivationFunction")(b, act)
        if depthwise:
            T.DepthwiseConv2DOptionsAddDepthMultiplier(b, 1)
        return getattr(T, f"{prefix}End")(b)
    return build


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Batch norm folded into the convolution, as the TFLite converter does."""
    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return ((conv.weight * s.view(-1, 1, 1, 1)).numpy(),
                (bn.bias - bn.running_mean * s).numpy())


def _quantize(w: np.ndarray, axis: int | None):
    """``w`` as int8 per channel along ``axis`` (symmetric) or uint8 per tensor (zero 128)."""
    if axis is None:
        scale = np.float32(np.abs(w).max() / 127)
        q = np.clip(np.round(w / scale) + 128, 0, 255).astype(np.uint8)
        return q, np.array([scale]), np.array([128]), 0
    other = tuple(i for i in range(w.ndim) if i != axis)
    scale = (np.abs(w).max(axis=other) / 127).astype(np.float32)
    view = [1] * w.ndim
    view[axis] = -1
    q = np.clip(np.round(w / scale.reshape(view)), -127, 127).astype(np.int8)
    return q, scale, np.zeros_like(scale, dtype=np.int64), axis


def _write_mobilenet_v2(tv: nn.Module, size: int = 224, quantized: bool = False,
                        bias_scale_error: float = 1.0) -> tuple[bytes, dict]:
    """``tv`` (a torchvision MobileNetV2 classifier) as a TFLite graph with folded batch norm;
    float32, or with int8 per-channel conv weights, a uint8 per-tensor classifier and int32
    biases (``bias_scale_error``: a bias scale off by this factor). Returns the file and, per
    torchvision state-dict name, the float value the reader should give."""
    w = _Writer()
    expected: dict[str, np.ndarray] = {}
    a_scale = float(np.float32(0.05))  # the activations' scale, as the file stores it
    act_q = (np.array([a_scale]), np.array([0]), 0) if quantized else None
    x = w.tensor("input", (1, size, size, 3), quant=act_q)
    graph_input = x

    def layer(x, size, conv, bn, name, act, conv_name, bn_name):
        stride, dw = conv.stride[0], conv.groups > 1
        weight, bias = _folded(conv, bn) if bn is not None else (
            conv.weight.detach().numpy(), conv.bias.detach().numpy())
        tfl = weight.transpose(1, 2, 3, 0) if dw else weight.transpose(0, 2, 3, 1)
        out_size = -(-size // stride)
        if quantized:
            q, scale, zero, axis = _quantize(tfl, 3 if dw else 0)
            wt = w.tensor(f"{name}/weights", tfl.shape, q, T.TensorType.INT8, (scale, zero, axis))
            deq = (q.astype(np.int64) - zero.reshape([-1 if i == axis else 1 for i in
                                                      range(4)])) * scale.reshape(
                [-1 if i == axis else 1 for i in range(4)])
            deq = deq.astype(np.float32)
            bscale = a_scale * scale.astype(np.float64) * bias_scale_error
            qb = np.round(bias / (a_scale * scale.astype(np.float64))).astype(np.int32)
            bt = w.tensor(f"{name}/bias", bias.shape, qb, T.TensorType.INT32,
                          (bscale, np.zeros_like(bscale, dtype=np.int64), 0))
            expected_w = deq.transpose(3, 0, 1, 2) if dw else deq.transpose(0, 3, 1, 2)
            expected_b = (qb * (a_scale * scale.astype(np.float64))).astype(np.float32)
        else:
            wt = w.tensor(f"{name}/weights", tfl.shape, tfl)
            bt = w.tensor(f"{name}/bias", bias.shape, bias)
            expected_w, expected_b = weight, bias
        expected[f"{conv_name}.weight"] = expected_w
        expected[f"{bn_name}.bias"] = expected_b
        out = w.tensor(name, (1, out_size, out_size, weight.shape[0]), quant=act_q)
        code = T.BuiltinOperator.DEPTHWISE_CONV_2D if dw else T.BuiltinOperator.CONV_2D
        otype = (T.BuiltinOptions.DepthwiseConv2DOptions if dw
                 else T.BuiltinOptions.Conv2DOptions)
        w.op(code, [x, wt, bt], [out], otype, _conv_options(stride, act, dw))
        return out, out_size

    relu6, none = T.ActivationFunctionType.RELU6, T.ActivationFunctionType.NONE
    f = tv.features
    x, size = layer(x, size, f[0][0], f[0][1], "Conv", relu6, "features.0.0", "features.0.1")
    for i, block in enumerate(f[1:18], start=1):
        y, s = x, size
        for j, cna in enumerate(block.conv[:-2]):
            y, s = layer(y, s, cna[0], cna[1], f"block{i}/{j}", relu6,
                         f"features.{i}.conv.{j}.0", f"features.{i}.conv.{j}.1")
        n = len(block.conv) - 2
        y, s = layer(y, s, block.conv[n], block.conv[n + 1], f"block{i}/project", none,
                     f"features.{i}.conv.{n}", f"features.{i}.conv.{n + 1}")
        if block.use_res_connect:
            out = w.tensor(f"block{i}/add", (1, s, s, block.conv[n].out_channels), quant=act_q)
            w.op(T.BuiltinOperator.ADD, [y, x], [out])
            y = out
        x, size = y, s
    x, size = layer(x, size, f[18][0], f[18][1], "Conv_1", relu6, "features.18.0",
                    "features.18.1")
    pooled = w.tensor("pool", (1, 1, 1, 1280), quant=act_q)

    def pool_options(b):
        T.Pool2DOptionsStart(b)
        T.Pool2DOptionsAddPadding(b, T.Padding.VALID)
        T.Pool2DOptionsAddStrideH(b, 1)
        T.Pool2DOptionsAddStrideW(b, 1)
        T.Pool2DOptionsAddFilterHeight(b, size)
        T.Pool2DOptionsAddFilterWidth(b, size)
        return T.Pool2DOptionsEnd(b)

    w.op(T.BuiltinOperator.AVERAGE_POOL_2D, [x], [pooled], T.BuiltinOptions.Pool2DOptions,
         pool_options)
    shape = w.tensor("shape", (2,), np.array([1, 1280], np.int32), T.TensorType.INT32)
    flat = w.tensor("flat", (1, 1280), quant=act_q)
    w.op(T.BuiltinOperator.RESHAPE, [pooled, shape], [flat])
    fc = tv.classifier[1]
    weight, bias = fc.weight.detach().numpy(), fc.bias.detach().numpy()
    if quantized:
        q, scale, zero, _ = _quantize(weight, None)
        wt = w.tensor("logits/weights", weight.shape, q, T.TensorType.UINT8, (scale, zero, 0))
        qb = np.round(bias / (a_scale * scale[0])).astype(np.int32)
        bt = w.tensor("logits/bias", bias.shape, qb, T.TensorType.INT32)  # no own scale
        expected["classifier.1.weight"] = ((q.astype(np.int64) - 128) * scale[0]).astype(
            np.float32)
        expected["classifier.1.bias"] = (qb * (a_scale * scale[0].astype(np.float64))).astype(
            np.float32)
    else:
        wt = w.tensor("logits/weights", weight.shape, weight)
        bt = w.tensor("logits/bias", bias.shape, bias)
        expected["classifier.1.weight"], expected["classifier.1.bias"] = weight, bias
    logits = w.tensor("logits", (1, fc.out_features), quant=act_q)

    def fc_options(b):
        T.FullyConnectedOptionsStart(b)
        T.FullyConnectedOptionsAddFusedActivationFunction(b, none)
        return T.FullyConnectedOptionsEnd(b)

    w.op(T.BuiltinOperator.FULLY_CONNECTED, [flat, wt, bt], [logits],
         T.BuiltinOptions.FullyConnectedOptions, fc_options)
    return w.finish([graph_input], [logits]), expected


def _random_mobilenet_v2(num_classes: int = 1001, width_mult: float = 1.0) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    tv = mobilenet_v2(num_classes=num_classes, width_mult=width_mult).eval()
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            elif isinstance(m, nn.Linear):
                m.bias.copy_(0.1 * torch.randn(m.out_features, generator=g))
    return tv


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A random torchvision MobileNetV2 (1001 classes) and its float32 TFLite file."""
    tv = _random_mobilenet_v2()
    data, expected = _write_mobilenet_v2(tv)
    path = tmp_path_factory.mktemp("tflite") / "synthetic_mnv2.tflite"
    path.write_bytes(data)
    return tv, path, expected


def _interpreter(**kw):
    litert = pytest.importorskip("ai_edge_litert.interpreter",
                                 reason="ai-edge-litert (the test extra) is not installed")
    with warnings.catch_warnings():  # preserve_all_tensors: a debugging option, as used here
        warnings.simplefilter("ignore", UserWarning)
        interpreter = litert.Interpreter(num_threads=1, **kw)
    interpreter.allocate_tensors()
    return interpreter


# --- without any downloaded file ----------------------------------------------------------------

def test_a_float_tflite_mobilenet_v2_reads_back_exactly_and_runs_like_tflite(synthetic):
    tv, path, expected = synthetic
    weights = read_mobilenet_v2(path)
    assert weights.num_classes == 1001 and weights.input_quantization is None
    state = weights.state
    assert len(expected) == 2 * 53  # conv weights, their folded biases in the BN layers after
    for name, value in expected.items():
        assert np.array_equal(state[name].numpy(), value), name
    bns = [k.removesuffix(".running_var") for k in state if k.endswith(".running_var")]
    assert len(bns) == 52
    for bn in bns:  # identities: (x - 0) / sqrt(var + eps) * 1 == x exactly
        one = torch.ones_like(state[f"{bn}.weight"])
        assert torch.equal(state[f"{bn}.weight"], one)
        assert torch.equal(state[f"{bn}.running_mean"], torch.zeros_like(one))
        assert torch.equal(state[f"{bn}.running_var"] + 1e-5, one)
    mapped = tf_same_padding(mobilenet_v2_classifier(weights), 224)
    original = tf_same_padding(tv, 224)
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 2 - 1
    interpreter = _interpreter(model_content=path.read_bytes())
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                           x.permute(0, 2, 3, 1).numpy().copy())
    interpreter.invoke()
    lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    with torch.no_grad():
        ours, theirs = mapped(x)[0].numpy(), original(x)[0].numpy()
    scale = np.abs(lite).max()
    print(f"\nsynthetic float MobileNetV2: max |logit| {scale:.3f}; mapped vs TFLite "
          f"{np.abs(ours - lite).max():.2e}; mapped vs the unfolded torchvision model "
          f"{np.abs(ours - theirs).max():.2e}")
    assert np.abs(ours - lite).max() <= 1e-4 * max(scale, 1.0)
    assert np.abs(ours - theirs).max() <= 1e-4 * max(scale, 1.0)
    assert np.argsort(-ours)[:5].tolist() == np.argsort(-lite)[:5].tolist()


def test_quantized_weights_are_dequantized_per_channel_and_per_tensor(tmp_path):
    tv = _random_mobilenet_v2()
    data, expected = _write_mobilenet_v2(tv, quantized=True)
    path = tmp_path / "int8_mnv2.tflite"
    path.write_bytes(data)
    weights = read_mobilenet_v2(path, bn_eps=1e-3)
    assert weights.input_quantization is None  # float input tensor type, quantized activations
    state = weights.state
    assert len(expected) == 2 * 53 and "features.2.conv.1.0.weight" in expected  # a depthwise
    for name, value in expected.items():  # int8 per channel (axis 0 or 3), uint8 per tensor
        assert np.array_equal(state[name].numpy(), value), name
    assert torch.equal(state["features.0.1.running_var"] + 1e-3, torch.ones(32))
    bad = tmp_path / "bad_bias_scale.tflite"
    bad.write_bytes(_write_mobilenet_v2(tv, quantized=True, bias_scale_error=1.5)[0])
    with pytest.raises(TFLiteError, match=r"bad_bias_scale\.tflite: layer 0 .*bias scale"):
        read_mobilenet_v2(bad)


def test_corrupt_and_foreign_files_are_refused_naming_the_file(tmp_path, synthetic):
    whole = synthetic[1].read_bytes()
    cases = {
        "truncated.tflite": (whole[:len(whole) // 2], "not a readable TFLite model|values in "
                                                      "its buffer"),
        "not_tflite.tflite": (b"PK\x03\x04 a zip, not a model" * 4, "no 'TFL3'"),
        "garbage.tflite": (b"\xff\xff\xff\x7fTFL3" + bytes(range(256)) * 4,
                           "not a readable TFLite model"),
    }
    one_conv = _Writer()
    x = one_conv.tensor("input", (1, 8, 8, 3))
    wt = one_conv.tensor("w", (4, 3, 3, 3), np.zeros((4, 3, 3, 3), np.float32))
    y = one_conv.tensor("y", (1, 8, 8, 4))
    one_conv.op(T.BuiltinOperator.CONV_2D, [x, wt, -1], [y], T.BuiltinOptions.Conv2DOptions,
                _conv_options(1, T.ActivationFunctionType.NONE, False))
    cases["one_conv.tflite"] = (one_conv.finish([x], [y]),
                                r"1 convolution/fully-connected layers, a MobileNetV2 1\.0 "
                                r"classifier has 53: another architecture")
    cases["half_width.tflite"] = (
        _write_mobilenet_v2(_random_mobilenet_v2(num_classes=10, width_mult=0.5), size=32)[0],
        r"layer 0 .*weight of shape \(16, 3, 3, 3\).* has \(32, 3, 3, 3\).*another "
        r"architecture or width")
    for name, (data, why) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(TFLiteError, match=rf"{re.escape(str(path))}: .*({why})"):
            read_mobilenet_v2(path)
        with pytest.raises(InitError, match=rf"{re.escape(str(path))}: .*({why})"):
            resolve_backbone_weights(path)
    with pytest.raises(InitError, match=r"missing\.tflite: backbone weights file not found"):
        resolve_backbone_weights(tmp_path / "missing.tflite")


def test_imagenet_without_its_file_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.delenv(IMAGENET.env, raising=False)
    checkout = tmp_path / "checkout"
    with pytest.raises(InitError) as info:
        imagenet_weights_path(checkout)
    msg = str(info.value)
    print(f"\n{msg}")
    assert str(tmp_path / "shared" / "weights" / "mobilenet_v2_1.0_224_quant.tflite") in msg
    for part in (f"{IMAGENET.env} is unset", "mobilenet_v2_1.0_224_quant.tflite",
                 "google-coral/test_data", IMAGENET.commit, "Apache-2.0", "LICENSE",
                 IMAGENET.sha256):
        assert part in msg, part
    missing = tmp_path / "nowhere" / "mnv2.tflite"
    monkeypatch.setenv(IMAGENET.env, str(missing))
    with pytest.raises(InitError, match=rf"are not at {IMAGENET.env}={re.escape(str(missing))}: "
                                        r"put there the file "
                                        r"mobilenet_v2_1\.0_224_quant\.tflite of the public "
                                        r"GitHub repository google-coral/test_data"):
        resolve_backbone_weights("imagenet")
    other = tmp_path / "other.tflite"
    other.write_bytes(b"another file")
    monkeypatch.setenv(IMAGENET.env, str(other))
    with pytest.raises(InitError, match=r"other\.tflite: sha256 .* pass its path to "
                                        r"--backbone-weights instead"):
        resolve_backbone_weights("imagenet")


# --- with Google's ImageNet classifier and real photographs (beside the checkout) -------------

def _imagenet_file() -> Path:
    try:
        return imagenet_weights_path()
    except InitError as exc:
        pytest.skip(f"NOT RUN, the ImageNet weights are missing: {exc}")


def _photos() -> list[Path]:
    folder = Path(os.environ.get(PHOTOS_ENV, "").strip() or PHOTOS_DEFAULT)
    missing = [p for p in PHOTOS if not (folder / p).is_file()]
    if missing:
        pytest.skip(f"NOT RUN, real photographs missing in {folder}: {', '.join(missing)}; set "
                    f"{PHOTOS_ENV} to a folder holding {', '.join(PHOTOS)} of the public GitHub "
                    f"repository {IMAGENET.repository} (commit {IMAGENET.commit}, Apache-2.0; "
                    f"`git show {IMAGENET.commit}:cat.bmp > cat.bmp` ...), by default "
                    f"{PHOTOS_DEFAULT}")
    return [folder / p for p in PHOTOS]


def _logits_tensor(interpreter, path: Path) -> dict:
    """The classifier's pre-softmax output: the input of the graph's last SOFTMAX (the
    interpreter numbers tensors as the file does)."""
    model = T.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    for i in reversed(range(graph.OperatorsLength())):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == T.BuiltinOperator.SOFTMAX:
            index = int(op.Inputs(0))
            return next(d for d in interpreter.get_tensor_details() if d["index"] == index)
    raise AssertionError(f"{path}: no SOFTMAX")


def test_the_mapped_classifier_agrees_with_the_tflite_interpreter_on_real_photos():
    path, photos = _imagenet_file(), _photos()
    weights = read_mobilenet_v2(path)
    assert weights.num_classes == 1001 and weights.labels[0] == "background"
    interpreter = _interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    inp = interpreter.get_input_details()[0]
    assert inp["dtype"] == np.uint8 and tuple(inp["shape"]) == weights.input_shape
    scale, zero = inp["quantization"]
    assert (scale, zero) == weights.input_quantization == (0.0078125, 128)
    out = _logits_tensor(interpreter, path)
    out_scale, out_zero = out["quantization"]
    plain = mobilenet_v2_classifier(weights)  # torchvision's symmetric padding
    same = tf_same_padding(mobilenet_v2_classifier(weights), 224)  # TFLite's
    rows, stats = [], {"plain": [0, 0, 0.0], "same": [0, 0, 0.0]}
    for photo in photos:
        image = np.asarray(Image.open(photo).convert("RGB").resize((224, 224), Image.BILINEAR))
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        lite = (interpreter.get_tensor(out["index"]).astype(np.float64).reshape(-1)
                - out_zero) * out_scale
        # the same uint8 pixels, dequantized as the model's input says: (q - 128) / 128
        x = torch.from_numpy(((image.astype(np.float32) - zero) * scale).transpose(2, 0, 1)[None]
                             .copy())
        top_lite = np.argsort(-lite)[:5].tolist()
        row = [photo.name, f"{top_lite[0]} {weights.labels[top_lite[0]]}"]
        for key, model in (("plain", plain), ("same", same)):
            with torch.no_grad():
                logits = model(x)[0].numpy().astype(np.float64)
            top = np.argsort(-logits)[:5].tolist()
            s = stats[key]
            s[0] += top[0] == top_lite[0]
            s[1] += set(top) == set(top_lite)
            s[2] = max(s[2], float(np.abs(logits - lite).max()))
            row.append(f"{top[0]} top-5 {'=' if set(top) == set(top_lite) else '!='}")
        rows.append(row)
    n = len(photos)
    print(f"\nTFLite {path.name} (ai-edge-litert) vs the mapped torchvision mobilenet_v2 "
          f"(1001 classes), {n} photographs of google-coral/test_data, 224x224 bilinear, "
          f"logit step {out_scale:.4f}:")
    for key, label in (("plain", "torchvision padding"), ("same", "TF SAME padding")):
        s = stats[key]
        print(f"  {label:20s} top-1 {s[0]}/{n}, top-5 set {s[1]}/{n}, max |logit diff| "
              f"{s[2]:.3f}")
    for row in rows:
        print(f"  {row[0]:17s} TFLite top-1 {row[1]:35.35s} plain {row[2]:14s} same {row[3]}")
    assert stats["same"][0] == n and stats["same"][1] == n  # same top-5 classes, every photo
    assert stats["same"][2] < 10 * out_scale  # activations rounded to uint8 in TFLite
    assert stats["plain"][0] == n  # the one-pixel shift of the stride-2 windows: top-1 kept
    by_photo = {r[0]: r[1] for r in rows}
    assert by_photo["grace_hopper.bmp"].endswith("military uniform")
    assert "cat" in by_photo["cat.bmp"]


def test_the_imagenet_weights_load_the_whole_detector_backbone(monkeypatch):
    path = _imagenet_file()
    model = build_model("ssdlite_mobilenet_v2", 4, image_size=96)
    eps = backbone_bn_eps(model)
    assert eps == 1e-3
    state, origin = resolve_backbone_weights("imagenet", bn_eps=eps)
    assert origin == {"file": str(path), "sha256": IMAGENET.sha256, "format": "tflite"}
    report = load_matching(model, torchvision_backbone_state(model, state), "imagenet",
                           scope="core.backbone.")
    print(f"\n{report.summary()}")
    backbone = {k for k in model.state_dict() if k.startswith("core.backbone.")}
    assert set(report.loaded) == backbone and report.skipped == {} and report.unused == []
    assert report.fraction == 1.0
    bn = model.core.backbone.stage1[0][1]
    assert torch.equal(bn.running_var + bn.eps, torch.ones_like(bn.running_var))
    assert torch.equal(model.core.backbone.stage1[0][0].weight, state["features.0.0.weight"])
    # the same file by its path: the same tensors
    by_path, origin2 = resolve_backbone_weights(path, bn_eps=eps)
    assert origin2 == origin and all(torch.equal(by_path[k], state[k]) for k in state)


def _voc_tree(root: Path, n: int = 4, size: int = 96) -> Path:
    voc = root / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    (voc / "classes.txt").write_text("cat\ndog\n")
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{i}.png")
        (voc / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.png</filename><size><width>{size}</width><height>{size}"
            f"</height></size><object><name>{('cat', 'dog')[i % 2]}</name><bndbox><xmin>10"
            "</xmin><ymin>10</ymin><xmax>60</xmax><ymax>70</ymax></bndbox></object></annotation>")
    ids = "\n".join(str(i) for i in range(n)) + "\n"
    for split in ("train", "val"):
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text(ids)
    return root


def test_navya_train_backbone_weights_imagenet_records_the_file(tmp_path, capsys):
    from navya.cli import main
    from navya.models import load_checkpoint

    path = _imagenet_file()
    out = tmp_path / "from_imagenet.pt"
    assert main(["train", "--data", str(_voc_tree(tmp_path / "data")), "--out", str(out),
                 "--image-size", "96", "--backbone-weights", "imagenet", "--max-iters", "1",
                 "--batch-size", "2", "--val-split", "", "--freeze-backbone", "1",
                 "--threads", "1"]) == 0
    assert "imagenet: loaded 312 tensors" in capsys.readouterr().out
    model, ckpt = load_checkpoint(out)
    init = ckpt.meta["init"]
    assert (init["file"], init["sha256"], init["format"]) == (str(path), IMAGENET.sha256,
                                                              "tflite")
    assert init["loaded_params"] == init["total_params"] and init["skipped"] == []
    state, _ = resolve_backbone_weights(path, bn_eps=1e-3)
    # one frozen iteration: the first conv is still the file's
    assert torch.equal(model.core.backbone.stage1[0][0].weight, state["features.0.0.weight"])
