"""The runners of the deployment runtimes and what they need: which runtime modules must import,
the artifact's input and output names, and one :class:`RuntimeCore` per runtime that executes
an exported artifact (ONNX Runtime, OpenVINO, ExecuTorch) inside navya's float pre- and
post-processing. :mod:`navya.compress.deploy` builds the artifacts; a runner only runs one.

A runner opens its runtime session on first use at the caller's intra-op thread count and opens
it again when that count changes; a pickled runner (the speed and RSS workers, stored builds)
carries the artifact bytes and opens its session afresh in the process that loads it.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from navya.errors import NavyaError

#: the Python modules each runtime needs (imported, not only found: a compiled extension that
#: does not load against this torch makes its runtime unavailable)
RUNTIME_MODULES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnx", "onnxscript", "onnxruntime", "onnxruntime.quantization"),
    "openvino": ("openvino",),
    "nncf": ("nncf",),
    "executorch": ("executorch.exir", "executorch.runtime",
                   "executorch.backends.xnnpack.partition.xnnpack_partitioner"),
    "executorch-quantizer": ("torchao.quantization.pt2e.quantize_pt2e",
                             "executorch.backends.xnnpack.quantizer.xnnpack_quantizer"),
}
OUTPUT_NAMES = ("bbox_regression", "cls_logits")
INPUT_NAME = "images"


class RuntimeUnavailable(NavyaError, RuntimeError):
    """A runtime that is not installed or cannot run here (the suite skips the variant)."""


class ExportError(NavyaError, RuntimeError):
    """The network could not be exported to a runtime's format; the message names the
    operator where the exporter said which."""


_import_problems: dict[str, str | None] = {}


def _import_problem(module: str) -> str | None:
    if module not in _import_problems:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(module)
            _import_problems[module] = None
        except Exception as exc:  # noqa: BLE001 - ImportError, or a native library that fails
            _import_problems[module] = f"{type(exc).__name__}: {exc}"
    return _import_problems[module]


def _require(*runtimes: str) -> None:
    for runtime in runtimes:
        for module in RUNTIME_MODULES[runtime]:
            problem = _import_problem(module)
            if problem is not None:
                raise RuntimeUnavailable(
                    f"{runtime} is not usable here: `import {module}` failed ({problem}); "
                    f"install it with README's install command")


def runtime_versions() -> dict[str, str | None]:
    """Installed versions of the runtimes (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("onnxruntime", "onnx", "openvino", "nncf", "executorch", "torchao"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def unavailable_reason(config: Any) -> str | None:
    """Why a config's variant cannot be built on this machine (None: it can). Only runtime
    configs can be unavailable; a ``source`` config is checked too."""
    check = getattr(config, "unavailable", None)
    if check is None:
        return None
    try:
        check()
    except RuntimeUnavailable as exc:
        return str(exc)
    return None


# -- the runner ------------------------------------------------------------------------------


class RuntimeCore(nn.Module):
    """The network of a detector executed by a deployment runtime from its artifact.

    ``forward(x)`` takes the normalized batch ``[N, 3, S, S]`` (float32) and returns
    ``(bbox_regression [N, A, 4], cls_logits [N, A, K])`` as float32 tensors, like
    :class:`~navya.models.ssdlite.SSDLiteCore`.

    Subclasses set :attr:`runtime` and implement :meth:`_open`.
    """

    runtime = ""

    def __init__(self, files: dict[str, bytes], *, image_size: int, precision: str,
                 float_twin: nn.Module | None = None, info: dict[str, Any] | None = None):
        super().__init__()
        self.files = dict(files)
        self.image_size = int(image_size)
        self.precision = precision
        self.info = dict(info or {})
        object.__setattr__(self, "_twin", float_twin)
        object.__setattr__(self, "_session", None)

    @property
    def float_twin(self) -> nn.Module | None:
        """The float network the artifact was exported from (None after unpickling)."""
        return self._twin

    def artifact_files(self) -> dict[str, bytes]:
        """The artifact a user ships: file name -> bytes."""
        return dict(self.files)

    def _open(self, threads: int) -> Callable[[Tensor], Sequence[Tensor]]:
        raise NotImplementedError

    def runner(self) -> Callable[[Tensor], Sequence[Tensor]]:
        """The runtime session for the caller's thread count (opened on first use)."""
        threads = torch.get_num_threads()
        if self._session is None or self._session[0] != threads:
            object.__setattr__(self, "_session", (threads, self._open(threads)))
        return self._session[1]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(f"{type(self).__name__} runs [N, 3, {self.image_size}, "
                             f"{self.image_size}] batches, got {tuple(x.shape)}")
        run = self.runner()
        x = x.detach().float().contiguous()
        outs = [run(x[i : i + 1]) for i in range(x.shape[0])]
        return tuple(torch.cat(parts, 0) if len(parts) > 1 else parts[0]
                     for parts in zip(*outs, strict=True))

    def train(self, mode: bool = True) -> RuntimeCore:
        # an exported graph has no training mode (BN folded, no dropout): keep the flag only
        self.training = mode
        return self

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_session"] = None
        state["_twin"] = None
        return state

    def cache_extras(self) -> dict[str, Any]:
        """What the artifact cache keeps beside the pickle (which leaves the twin out, so the
        speed worker's copies stay small): the float twin."""
        return {"float_twin": self._twin}

    def restore_cache_extras(self, extras: dict[str, Any]) -> None:
        object.__setattr__(self, "_twin", extras.get("float_twin"))

    def extra_repr(self) -> str:
        size = sum(len(b) for b in self.files.values())
        return (f"runtime={self.runtime}, precision={self.precision}, "
                f"artifact={sorted(self.files)} ({size / 1e6:.2f} MB)")


class OnnxRuntimeCore(RuntimeCore):
    """An ``.onnx`` graph run by ONNX Runtime's CPU execution provider (all graph
    optimizations on, sequential execution, intra- and inter-op threads = the caller's)."""

    runtime = "onnxruntime"

    def _open(self, threads: int):
        _require("onnxruntime")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        session = ort.InferenceSession(self.files["model.onnx"], options,
                                       providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run(x: Tensor) -> list[Tensor]:
            return [torch.from_numpy(o) for o in session.run(None, {name: x.numpy()})]

        return run


_OV_CORE = None


def _ov_core():
    global _OV_CORE
    if _OV_CORE is None:
        import openvino as ov

        _OV_CORE = ov.Core()
    return _OV_CORE


def _ov_bf16_native() -> bool:
    try:
        return "BF16" in _ov_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - no CPU plugin: not native either
        return False


class OpenVINOCore(RuntimeCore):
    """An OpenVINO IR (``model.xml`` + ``model.bin``) compiled for the CPU plugin with
    ``INFERENCE_NUM_THREADS`` = the caller's threads, one stream, the latency hint, and the
    inference precision of :attr:`precision` (``f32`` or ``bf16``; an INT8 IR runs its int8
    ops and keeps f32 elsewhere). Thread placement is left to the process (the speed worker
    pins it): ``ENABLE_CPU_PINNING`` off."""

    runtime = "openvino"

    def _open(self, threads: int):
        _require("openvino")
        import numpy as np
        import openvino as ov

        core = _ov_core()
        model = core.read_model(model=self.files["model.xml"],
                                weights=ov.Tensor(np.frombuffer(self.files["model.bin"],
                                                                np.uint8)))
        compiled = core.compile_model(model, "CPU", {
            "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False,
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32"})
        request = compiled.create_infer_request()
        n_out = len(compiled.outputs)

        def run(x: Tensor) -> list[Tensor]:
            request.infer({0: x.numpy()})
            return [torch.from_numpy(request.get_output_tensor(i).data.copy())
                    for i in range(n_out)]

        return run


#: ExecuTorch's XNNPACK thread pool is one per process, and a program loaded before it is
#: resized keeps a pointer to the old pool (using it aborted the speed worker: glibc's
#: ``__pthread_tpp_change_priority`` assertion on the freed pool's mutex). Every resize bumps
#: the generation; a session of an older generation is opened again before its next call.
_ET_POOL = {"generation": 0}


class ExecuTorchCore(RuntimeCore):
    """An ExecuTorch ``.pte`` program (XNNPACK-delegated) run by ExecuTorch's runtime. Its
    XNNPACK thread pool (one per process) is sized to the caller's threads *before* the program
    is loaded; programs loaded for another size are loaded again (see ``_ET_POOL``)."""

    runtime = "executorch"

    def runner(self):
        threads = torch.get_num_threads()
        session = self._session
        if session is None or session[0] != threads or session[2] != _ET_POOL["generation"]:
            _require("executorch")
            from executorch.extension.pybindings import portable_lib

            object.__setattr__(self, "_session", None)
            if portable_lib._threadpool_get_thread_count() != threads:
                portable_lib._unsafe_reset_threadpool(threads)
                _ET_POOL["generation"] += 1
            object.__setattr__(self, "_session",
                               (threads, self._open(threads), _ET_POOL["generation"]))
        return self._session[1]

    def _open(self, threads: int):
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(self.files["model.pte"])
        method = program.load_method("forward")

        def run(x: Tensor, _program=program) -> list[Tensor]:
            # _program: a Method does not keep its Program alive (running one whose Program
            # was freed crashed under qemu-x86_64; natively it happened to work)
            return [t.clone() for t in method.execute((x,))]

        return run
