"""Deployment runtimes as transforms: ONNX Runtime, OpenVINO (with NNCF), ExecuTorch (XNNPACK).

A team ships its detector through a runtime, not through eager PyTorch. Each transform here
exports the network (``model.core``) of the float detector to a deployable **artifact** (an
``.onnx`` file, an OpenVINO IR ``.xml`` + ``.bin`` pair, an ExecuTorch ``.pte`` program),
quantizing it on the way where its config asks, and returns a detector whose ``core`` is a
:class:`RuntimeCore`: a **runner** that executes that artifact with its runtime. navya's own
float pre-processing and post-processing wrap every runner, so detections, mAP, end-to-end and
network-only latency are computed the same way for every variant.

- The artifact's files are held as bytes (:meth:`RuntimeCore.artifact_files`): the size a user
  ships. The float network it was exported from is kept beside it (:attr:`RuntimeCore.float_twin`,
  not pickled) for parameter and MAC counts: an INT8 graph does its float twin's MACs.
- The runner opens its runtime session on first use at the caller's intra-op thread count
  (``torch.get_num_threads()``; inter-op the same, execution sequential) and opens it again when
  that count changes, so the suite's thread pinning (:func:`navya.runtime.num_threads`) holds
  for every runtime. A pickled runner (the speed and RSS workers, stored builds) carries the
  artifact bytes and opens its session afresh in the process that loads it.
- The exported graphs have a static batch of 1 (ExecuTorch's XNNPACK delegate wants static
  shapes); a batch runs image by image.
- A runtime that is not installed, or a CPU without what a variant needs (OpenVINO bf16 without
  native bf16), is :func:`unavailable_reason`: the suite skips those variants loudly, with the
  reason. A network that does not export raises :class:`ExportError` naming the operator.

``source``: every config may name a transform config applied to the float reference first
(e.g. ``StructuredConfig(0.3)``): the pruned model through a runtime.
"""

from __future__ import annotations

import copy
import logging
import re
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from navya.compress.base import CompressContext, apply_transform, register_transform
from navya.compress.quantize import _calibration_plan, _require_data

__all__ = [
    "ExecuTorchConfig",
    "ExecuTorchCore",
    "ExportError",
    "OnnxRuntimeConfig",
    "OnnxRuntimeCore",
    "OpenVINOConfig",
    "OpenVINOCore",
    "RuntimeCore",
    "RuntimeUnavailable",
    "export_onnx",
    "runtime_versions",
    "unavailable_reason",
]

# the runners live in navya.compress.runners; their names stay importable from here, where models
# pickled before the move (cached artifacts, stored builds) look them up
from navya.compress.runners import (  # noqa: E402, F401
    INPUT_NAME,
    OUTPUT_NAMES,
    RUNTIME_MODULES,
    ExecuTorchCore,
    ExportError,
    OnnxRuntimeCore,
    OpenVINOCore,
    RuntimeCore,
    RuntimeUnavailable,
    _ov_bf16_native,
    _ov_core,
    _require,
    runtime_versions,
    unavailable_reason,
)

# -- configs ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _RuntimeConfig:
    """What every runtime config has (keyword-only): navya's calibration plan for INT8 (as
    :class:`~navya.compress.quantize.PTQConfig`: 2 % of the train split by default, drawn with
    ``seed`` or the context's) and an optional ``source`` transform config applied first."""

    calibration_fraction: float = 0.02
    calibration_images: int | None = None
    seed: int | None = None
    source: Any = None

    def __post_init__(self) -> None:
        if not 0.0 < self.calibration_fraction <= 1.0:
            raise ValueError(f"calibration_fraction must be in (0, 1], got "
                             f"{self.calibration_fraction!r}")
        if self.calibration_images is not None and self.calibration_images < 1:
            raise ValueError("calibration_images must be >= 1 or None")

    def unavailable(self) -> None:
        """Raise :class:`RuntimeUnavailable` when this config cannot be built here."""
        reason = None if self.source is None else unavailable_reason(self.source)
        if reason:
            raise RuntimeUnavailable(reason)


@dataclass(frozen=True)
class OnnxRuntimeConfig(_RuntimeConfig):
    """Export to ONNX (``torch.onnx.export``, the dynamo exporter) and run with ONNX Runtime;
    with ``quantize``, static INT8 by ``onnxruntime.quantization.quantize_static`` (QDQ format,
    uint8 activations, int8 weights, per-tensor or ``per_channel``; ``calibrate_method``
    ``minmax``/``entropy``/``percentile``) calibrated on navya's calibration plan."""

    quantize: bool = False
    per_channel: bool = False
    calibrate_method: str = "minmax"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.calibrate_method not in ("minmax", "entropy", "percentile"):
            raise ValueError(f"calibrate_method must be minmax, entropy or percentile, got "
                             f"{self.calibrate_method!r}")

    def unavailable(self) -> None:
        _require("onnxruntime")
        super().unavailable()


@dataclass(frozen=True)
class OpenVINOConfig(_RuntimeConfig):
    """Convert to OpenVINO IR (``openvino.convert_model`` from the torch network) and run with
    OpenVINO's CPU plugin. ``precision``: ``f32``; ``bf16`` (the CPU plugin's bf16 inference
    precision; only where the CPU has native bf16, else unavailable); ``int8`` (NNCF
    post-training quantization, ``nncf.quantize`` with its defaults, calibrated on navya's
    plan)."""

    precision: str = "f32"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.precision not in ("f32", "bf16", "int8"):
            raise ValueError(f"precision must be f32, bf16 or int8, got {self.precision!r}")

    def unavailable(self) -> None:
        _require("openvino", *(("nncf",) if self.precision == "int8" else ()))
        if self.precision == "bf16" and not _ov_bf16_native():
            raise RuntimeUnavailable(
                "openvino bf16 needs native bf16 on the CPU (AVX512-BF16 or AMX); OpenVINO's "
                f"CPU plugin reports {_ov_core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')}")
        super().unavailable()


@dataclass(frozen=True)
class ExecuTorchConfig(_RuntimeConfig):
    """Export with ``torch.export``, lower to ExecuTorch with the XNNPACK partitioner and run
    the ``.pte`` with ExecuTorch's runtime: the embedded Arm path, exercised on x86 with the same
    kernels library. With ``quantize``: PT2E with the ``XNNPACKQuantizer`` (symmetric int8,
    ``per_channel`` weights), calibrated on navya's plan, before lowering."""

    quantize: bool = False
    per_channel: bool = True

    def unavailable(self) -> None:
        _require("executorch", *(("executorch-quantizer",) if self.quantize else ()))
        super().unavailable()


# -- the transforms --------------------------------------------------------------------------


def _float_source(model: nn.Module, config, context: CompressContext) -> nn.Module:
    """The float detector to export: the reference, or ``config.source`` applied to it."""
    if not isinstance(getattr(model, "core", None), nn.Module):
        raise ExportError(f"{type(model).__name__} has no `core` submodule to export")
    if config.source is None:
        return copy.deepcopy(model).eval()
    out = apply_transform(model, config.source, context).eval()
    if any(p.is_quantized for p in out.core.state_dict().values() if isinstance(p, Tensor)):
        raise ExportError(f"source {type(config.source).__name__} gives a quantized eager "
                          "model; a runtime exports a float network (quantize in the runtime)")
    return out


def _begin(model: nn.Module, config, context: CompressContext | None
           ) -> tuple[CompressContext, nn.Module, dict[str, Any]]:
    """Every runtime transform's start: the context, the runtime available (else
    :class:`RuntimeUnavailable`), the float detector to export, and its build info."""
    context = context or CompressContext()
    config.unavailable()
    return context, _float_source(model, config, context), {}


def _calibration_inputs(model: nn.Module, config, context: CompressContext) -> list[Tensor]:
    """The preprocessed calibration images (``[1, 3, S, S]`` each) of navya's plan."""
    dataset = _require_data(context, f"INT8 calibration of {type(config).__name__}")
    indices = _calibration_plan(len(dataset), config, context)  # the same draw as int8-ptq
    with torch.no_grad():
        return [model.preprocess([dataset[i][0]]) for i in indices]


_OP_PATTERN = re.compile(r"(aten[.:]{1,2}[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?|torch\.ops\.[\w.]+|"
                         r"torchvision[.:]{1,2}\w+|quantized[.:]{1,2}\w+)")


def _export_error(what: str, exc: BaseException) -> ExportError:
    text = f"{type(exc).__name__}: {exc}"
    ops = sorted(set(_OP_PATTERN.findall(text)))
    where = f"at operator(s) {', '.join(ops[:5])}" if ops else "(the exporter named no operator)"
    first = text.strip().splitlines()[0][:500] if text.strip() else type(exc).__name__
    return ExportError(f"{what} failed {where}: {first}")


def export_onnx(core: nn.Module, image_size: int) -> bytes:
    """The network as ONNX bytes (dynamo exporter, batch 1, input ``images``, outputs
    ``bbox_regression`` and ``cls_logits``)."""
    _require("onnxruntime")
    x = torch.zeros(1, 3, image_size, image_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(core.eval(), (x,), input_names=[INPUT_NAME],
                                            output_names=list(OUTPUT_NAMES), dynamo=True,
                                            verbose=False)
            program.save(str(path))
        except Exception as exc:  # noqa: BLE001 - any exporter failure, named
            raise _export_error("export of the network to ONNX", exc) from exc
        extra = [p.name for p in Path(tmp).iterdir() if p.name != "model.onnx"]
        if extra:
            raise ExportError(f"the ONNX export wrote external data files {extra}; navya ships "
                              "single-file ONNX models (< 2 GB)")
        return path.read_bytes()


@register_transform(OnnxRuntimeConfig)
def to_onnxruntime(model: nn.Module, config: OnnxRuntimeConfig,
                   context: CompressContext | None = None) -> nn.Module:
    """The detector with its network exported to ONNX (and quantized by ONNX Runtime)."""
    context, src, info = _begin(model, config, context)
    t = time.perf_counter()
    data = export_onnx(src.core, src.image_size)
    info["export_s"] = time.perf_counter() - t
    if config.quantize:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        inputs = _calibration_inputs(src, config, context)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = iter(inputs)

            def get_next(self):
                x = next(self.items, None)
                return None if x is None else {INPUT_NAME: x.numpy()}

        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[config.calibrate_method]
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            fp32, pre, q = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
            fp32.write_bytes(data)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
                    reduce_range, info["reduce_range"] = _ort_reduce_range(config.per_channel)
                    quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ,
                                    activation_type=QuantType.QUInt8,
                                    weight_type=QuantType.QInt8, reduce_range=reduce_range,
                                    per_channel=config.per_channel, calibrate_method=method)
            except Exception as exc:  # noqa: BLE001
                raise _export_error("ONNX Runtime quantize_static", exc) from exc
            data = q.read_bytes()
        info["quantize_s"] = time.perf_counter() - t
        info["calibration_images"] = len(inputs)
    out = src
    out.core = OnnxRuntimeCore({"model.onnx": data}, image_size=src.image_size,
                               precision="int8" if config.quantize else "f32",
                               float_twin=src.core, info=info)
    return out


def _int8_dot_here(runtime: str) -> tuple[bool, str]:
    """Whether ``runtime``'s INT8 kernels have int8 dot products here (VNNI, AMX, Arm
    dotprod), and their class: a runtime that no environment restricts runs at the host's
    class, OpenVINO at the restricted one (navya.cpuclass)."""
    from navya.cpuclass import UNRESTRICTABLE, class_features, host_class, kernel_class

    cls = host_class() if runtime in UNRESTRICTABLE else kernel_class()
    return class_features(cls)["int8_dot"], cls


def _nncf_overflow_fix() -> tuple[Any, str]:
    """NNCF's ``overflow_fix`` (7-bit weights so that u8 x s8 pairs cannot saturate int16
    lanes), and why (recorded in the artifact's info): ``ENABLE``, every layer, on every CPU
    class. Without int8 dot products NNCF's default (the first layer only) moved the detections
    of tests/test_deploy.py's model on an AVX2 EPYC; on the real person detector it lost
    2.2 [0.1, 4.1] AP points on an AVX512-VNNI EPYC, where ``ENABLE`` lost none on either
    class (README, "INT8 on the real detector"): one recipe for every class."""
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
    )

    dot, cls = _int8_dot_here("openvino")
    return (AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE),
            f"enable (7-bit weights in every layer) on every class; here {cls}, "
            + ("with int8 dot products" if dot else "whose int16 accumulation saturates"))


def _ort_reduce_range(per_channel: bool) -> tuple[bool, str]:
    """ONNX Runtime's ``reduce_range`` (7-bit weights) for this CPU, and why: per-channel
    weights use the full int8 range per channel, which saturates the int16 accumulation of a
    CPU without int8 dot products (a real SSD-Lite lost 20.6 AP points that way on AVX2);
    per-tensor weights keep the default."""
    dot, cls = _int8_dot_here("onnxruntime")
    if per_channel and not dot:
        return True, (f"True: per-channel weights on {cls}, no int8 dot products (int16 "
                      "accumulation saturates)")
    return False, ("False: " + ("per-tensor weights" if not per_channel
                                else f"{cls} has int8 dot products"))


@register_transform(OpenVINOConfig)
def to_openvino(model: nn.Module, config: OpenVINOConfig,
                context: CompressContext | None = None) -> nn.Module:
    """The detector with its network converted to OpenVINO IR (int8: quantized by NNCF)."""
    context, src, info = _begin(model, config, context)
    import openvino as ov

    s = src.image_size
    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ov_model = ov.convert_model(src.core.eval(), example_input=torch.zeros(1, 3, s, s))
    except Exception as exc:  # noqa: BLE001
        raise _export_error("conversion of the network to OpenVINO IR", exc) from exc
    info["export_s"] = time.perf_counter() - t
    if config.precision == "int8":
        import nncf

        nncf.set_log_level(logging.ERROR)
        inputs = _calibration_inputs(src, config, context)
        t = time.perf_counter()
        fix, info["overflow_fix"] = _nncf_overflow_fix()
        try:
            ov_model = nncf.quantize(ov_model, nncf.Dataset([x.numpy() for x in inputs]),
                                     subset_size=len(inputs), advanced_parameters=fix)
        except Exception as exc:  # noqa: BLE001
            raise _export_error("NNCF quantization", exc) from exc
        info["quantize_s"] = time.perf_counter() - t
        info["calibration_images"] = len(inputs)
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "model.xml"
        # weights stored as they are (f32, or int8 after NNCF): no fp16 compression
        ov.save_model(ov_model, str(xml), compress_to_fp16=False)
        files = {"model.xml": xml.read_bytes(), "model.bin": xml.with_suffix(".bin").read_bytes()}
    out = src
    out.core = OpenVINOCore(files, image_size=s, precision=config.precision,
                            float_twin=src.core, info=info)
    return out


def xnnpack_quantized(exported: torch.export.ExportedProgram, inputs: Sequence[Tensor],
                      per_channel: bool = True) -> nn.Module:
    """PT2E with ExecuTorch's ``XNNPACKQuantizer`` (symmetric int8 weights, per channel or
    per tensor): observers inserted, ``inputs`` fed through, converted to the quantized graph
    (explicit quantize/dequantize ops) that lowering to XNNPACK turns into int8 kernels."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    prepared = prepare_pt2e(exported.module(), quantizer)
    with torch.no_grad():
        for x in inputs:
            prepared(x)
    return convert_pt2e(prepared)


@register_transform(ExecuTorchConfig)
def to_executorch(model: nn.Module, config: ExecuTorchConfig,
                  context: CompressContext | None = None) -> nn.Module:
    """The detector with its network lowered to an ExecuTorch XNNPACK program (int8: PT2E with
    the XNNPACK quantizer first)."""
    context, src, info = _begin(model, config, context)
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    s = src.image_size
    example = (torch.zeros(1, 3, s, s),)
    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = torch.export.export(src.core.eval(), example)
            if config.quantize:
                inputs = _calibration_inputs(src, config, context)
                info["calibration_images"] = len(inputs)
                exported = torch.export.export(
                    xnnpack_quantized(exported, inputs, config.per_channel), example)
            program = to_edge_transform_and_lower(
                exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    except Exception as exc:  # noqa: BLE001
        raise _export_error("lowering of the network to ExecuTorch (XNNPACK)", exc) from exc
    info["export_s"] = time.perf_counter() - t
    out = src
    out.core = ExecuTorchCore({"model.pte": bytes(program.buffer)}, image_size=s,
                              precision="int8" if config.quantize else "f32",
                              float_twin=src.core, info=info)
    return out

