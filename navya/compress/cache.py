"""The artifact cache: a transform's result kept by a hash of everything it depends on.

Calibrating, fine-tuning and exporting give the same model for the same inputs, so a run looks
the result up before it runs the transform (:func:`navya.compress.base.apply_transform_info`
does, when the context carries an :class:`ArtifactCache`). The key (:meth:`ArtifactCache.key_parts`)
is the SHA-256 of:

- ``config``: the config as a dict (:func:`~navya.compress.base.config_to_dict`), nested
  configs included;
- ``input``: the input model (:func:`model_digest`: class, structure, every tensor's bytes),
  i.e. the reference checkpoint's weights, or the pruned model a nested quantization gets;
- ``data``: the training data's fingerprint (:meth:`navya.data.voc.VOCDataset.fingerprint`:
  ids, parsed ground truth, image bytes), None when the context has none;
- ``seed``: the context's seed;
- ``sources``: the SHA-256 of the source of every navya module the transform can run: the
  modules of the transforms of the config and of its nested configs, followed through their
  imports (:func:`navya._cache.module_sources`). A change to the training loop, a transform,
  the model code or the data reader is a miss; a change to the report, the suite or the engine
  is not (the layers keep them out of a transform's imports);
- ``versions``: Python, torch, torchvision, numpy and every library a transform calls
  (torch-pruning, ONNX, ONNX Runtime, OpenVINO, NNCF, ExecuTorch, torchao);
- ``machine``: the CPU model, its ISA features and the usable cores (training and calibration
  are not bit-reproducible across CPUs, so a result is reused only where it was made).

A hit returns the stored model (float twins of runtime networks included) and the seconds the
transform took when it was built. ``rebuild`` ignores entries (and replaces them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from navya._cache import CacheWarning, ResultStore, digest, module_sources, package_versions
from navya.compress.base import BuildInfo, config_to_dict, transform_for

__all__ = [
    "TRANSFORM_LIBRARIES",
    "ArtifactCache",
    "BuildInfo",
    "model_digest",
    "nested_configs",
]

#: Distributions whose version is part of every key (what the transforms call).
TRANSFORM_LIBRARIES = ("torch", "torchvision", "numpy", "torch-pruning", "onnx", "onnxscript",
                       "onnxruntime", "openvino", "nncf", "executorch", "torchao")
KIND = "artifacts"


def nested_configs(config: Any) -> list[Any]:
    """``config`` and every config dataclass nested in its fields, depth first."""
    out = [config]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = value if isinstance(value, (tuple, list)) else [value]
        for v in values:
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                out.extend(nested_configs(v))
    return out


def _tensor_bytes(h, t: torch.Tensor) -> None:
    t = t.detach().cpu()
    h.update(str((t.dtype, tuple(t.shape))).encode())
    if t.is_quantized:
        h.update(str(t.qscheme()).encode())
        if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            h.update(str((t.q_scale(), t.q_zero_point())).encode())
        else:
            _tensor_bytes(h, t.q_per_channel_scales())
            _tensor_bytes(h, t.q_per_channel_zero_points())
            h.update(str(t.q_per_channel_axis()).encode())
        t = t.int_repr()
    t = t.contiguous()
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def model_digest(model: nn.Module) -> str:
    """SHA-256 of a model: its class, its structure (``repr``: layers and their settings), its
    config attribute if any, every tensor of its state dict (quantized ones by their integer
    values, scales and zero points) and the files of any runtime network in it. Equal for two
    copies of the same model."""
    h = hashlib.sha256()
    h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    h.update(repr(model).encode())
    h.update(repr(getattr(model, "config", None)).encode())
    for name, value in model.state_dict().items():
        h.update(name.encode())
        if isinstance(value, torch.Tensor):
            _tensor_bytes(h, value)
        else:  # packed params and other extra state
            h.update(repr(value).encode())
    for name, module in model.named_modules():  # a runtime network: its artifact's bytes
        files = getattr(module, "artifact_files", None)
        if callable(files):
            for fname, data in sorted(files().items()):
                h.update(f"{name}/{fname}".encode())
                h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def model_modules(model: nn.Module) -> list[str]:
    """The navya modules the model's layers come from (what its evaluation's key names)."""
    return sorted({type(m).__module__ for m in model.modules()
                   if type(m).__module__.startswith("navya")})


def _cache_extras(model: nn.Module) -> dict[str, dict[str, Any]]:
    """What modules of ``model`` leave out of their pickle but a cached model needs back (a
    runtime network's float twin): modules with ``cache_extras()``."""
    return {name: m.cache_extras() for name, m in model.named_modules()
            if callable(getattr(m, "cache_extras", None))}


def _restore_extras(model: nn.Module, extras: dict[str, dict[str, Any]]) -> None:
    modules = dict(model.named_modules())
    for name, value in extras.items():
        modules[name].restore_cache_extras(value)


class ArtifactCache:
    """Transform results in a :class:`~navya._cache.ResultStore` (kind ``artifacts``).

    Args:
        store: where entries live.
        machine: the machine part of every key (default: CPU model, ISA features, usable
            cores; see :func:`machine_part`).
    """

    def __init__(self, store: ResultStore, *, machine: dict[str, Any] | None = None):
        self.store = store
        self.machine = machine if machine is not None else machine_part()
        self.rebuild = False
        self._versions: dict[str, str | None] | None = None
        self._data: dict[int, tuple[Any, str]] = {}
        self._source_memo: dict[tuple[str, ...], dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"ArtifactCache({str(self.store.root)!r})"

    @contextlib.contextmanager
    def rebuilding(self, on: bool = True) -> Iterator[None]:
        """Within the block (when ``on``), ignore entries and replace them."""
        before, self.rebuild = self.rebuild, self.rebuild or on
        try:
            yield
        finally:
            self.rebuild = before

    def _sources(self, roots: tuple[str, ...]) -> dict[str, str]:
        known = self._source_memo.get(roots)
        if known is None:
            known = self._source_memo[roots] = module_sources(roots)
        return known

    def versions(self) -> dict[str, str | None]:
        if self._versions is None:
            self._versions = {"python": sys.version.split()[0],
                              **package_versions(TRANSFORM_LIBRARIES)}
        return self._versions

    def data_fingerprint(self, dataset: Any) -> str | None:
        """The training data's fingerprint (memoized per data set object; image files hashed
        once per content, remembered in the store)."""
        if dataset is None:
            return None
        known = self._data.get(id(dataset))
        if known is not None and known[0] is dataset:
            return known[1]
        fingerprint = getattr(dataset, "fingerprint", None)
        if fingerprint is None:
            raise ValueError(f"the training data ({type(dataset).__name__}) has no "
                             "fingerprint() to key cached results by")
        value = fingerprint(self.store.file_digests)
        self.store.file_digests.save()
        self._data[id(dataset)] = (dataset, value)
        return value

    def key_parts(self, model: nn.Module, config: Any, context: Any) -> dict[str, Any]:
        """Everything the result of ``config``'s transform on ``model`` depends on (module
        docstring). Raises ValueError when a part cannot be fingerprinted."""
        roots = []
        for c in nested_configs(config):
            try:
                fn = transform_for(type(c))
            except Exception:  # noqa: BLE001 - a nested value that is not a transform config
                continue
            roots += [fn.__module__, type(c).__module__]
        return {
            "format": 1,
            "config": config_to_dict(config),
            "input": model_digest(model),
            "data": self.data_fingerprint(context.train_dataset),
            "seed": context.seed,
            # only where it is not the default, so that keys made before it existed still hold
            **({"min_calibration_images": context.min_calibration_images}
               if getattr(context, "min_calibration_images", 1) != 1 else {}),
            "sources": self._sources(tuple(dict.fromkeys(roots))),
            "versions": self.versions(),
            "machine": self.machine,
            # a transform's bits depend on its intra-op thread count (floating-point sums
            # split differently); named only where it is not all cores, so that keys made
            # before it was part of them still hold
            **({"threads": threads} if (threads := torch.get_num_threads())
               != self.machine.get("cores") else {}),
        }

    def build(self, fn: Callable[[], nn.Module], model: nn.Module, config: Any,
              context: Any) -> tuple[nn.Module, BuildInfo]:
        """The cached result of ``fn()`` (the transform of ``config`` on ``model``), or
        ``fn()`` run now and stored."""
        try:
            parts = self.key_parts(model, config, context)
        except ValueError as exc:
            t0 = time.perf_counter()
            out = fn()
            return out, BuildInfo("uncached", time.perf_counter() - t0, why=str(exc))
        key = digest(parts)
        if not self.rebuild:
            hit, why = self._read(key)
            if hit is not None:
                return hit
        # one process builds an entry; another that needs it meanwhile (a parallel build
        # worker, a shard on the same machine) waits here and then reads it
        with self.store.lock(KIND, key):
            if not self.rebuild:
                hit, why = self._read(key)
                if hit is not None:
                    return hit
            else:
                why = "rebuild requested"
            return self._build_and_store(fn, key, parts, why)

    def _read(self, key: str) -> tuple[tuple[nn.Module, BuildInfo] | None, str]:
        """``((model, info), "")`` from the entry of ``key``, or ``(None, why not)``."""
        entry = self.store.get(KIND, key)
        if entry is None:
            return None, "not in the cache"
        try:
            from navya.runtime import repair_unpickled

            out = repair_unpickled(entry.value["model"])
            _restore_extras(out, entry.value.get("extras", {}))
            meta = entry.meta
            return (out.eval(), BuildInfo("cache", float(meta["build_s"]), entry.load_s, key,
                                          meta.get("built_at"))), ""
        except Exception as exc:  # noqa: BLE001 - an entry of another shape: rebuild
            warnings.warn(f"cache entry {entry.path} is unusable ({type(exc).__name__}: "
                          f"{exc}): treated as a miss, it will be rebuilt",
                          CacheWarning, stacklevel=3)
            return None, "entry unusable"

    def _build_and_store(self, fn: Callable[[], nn.Module], key: str, parts: dict[str, Any],
                         why: str) -> tuple[nn.Module, BuildInfo]:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        meta = {"build_s": seconds,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "modules": model_modules(out),
                "config": parts["config"], "parts": {k: v for k, v in parts.items()
                                                     if k != "config"}}
        try:
            self.store.put(KIND, key, {"model": out, "extras": _cache_extras(out)}, meta)
        except OSError as exc:  # a full disk or a read-only cache: the run goes on
            warnings.warn(f"could not write the artifact cache: {exc}", CacheWarning,
                          stacklevel=2)
        return out, BuildInfo("built", seconds, 0.0, key, meta["built_at"], why)


def machine_part() -> dict[str, Any]:
    """The machine part of a key: CPU model, ISA features (:data:`navya.runtime.ISA_FLAGS`)
    and usable cores."""
    from navya.runtime import machine_key

    key = machine_key(1)
    return {"cpu_model": key["cpu_model"], "isa": key["isa"], "cores": key["cores"],
            "kernel_class": key["kernel_class"]}
