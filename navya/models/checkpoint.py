"""Checkpoints: a state dict plus the metadata needed to rebuild and trust the model.

File content (a plain dict, loadable with ``torch.load(..., weights_only=True)``)::

    {"format": "navya-checkpoint", "format_version": 1,
     "arch": "ssdlite_mobilenet_v2", "num_classes": 11, "model_config": {...},
     "state_dict": {...}, "meta": {...}}

``meta`` holds class names, training config, data fingerprint, measured val mAP, torch version
and whatever else the writer records (JSON-compatible values only). Writes are atomic: a
temporary file in the same folder, fsync, then ``os.replace``.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from navya._io import atomic_write_bytes
from navya.errors import NavyaError
from navya.models.pruned import (
    PruningError,
    apply_pruned_shapes,
    check_prunable,
    masked_tensor_names,
    pruned_shapes,
)
from navya.models.ssdlite import SSDLite, build_model

#: The reference checkpoint navya ships (SSD-Lite MobileNetV2 trained on the synthetic set).
DEFAULT_CHECKPOINT = (Path(__file__).resolve().parents[1] / "checkpoints"
                      / "ssdlite_mobilenet_v2.pt")

FORMAT = "navya-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(NavyaError, ValueError):
    """A checkpoint that cannot be read or does not fit the requested model."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    arch: str
    num_classes: int
    model_config: dict
    state_dict: dict
    meta: dict

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.meta.get("class_names", ()))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to memory, then an atomic write (:mod:`navya._io`) over ``path``."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_fingerprint(model: nn.Module) -> str:
    """A SHA-1 of ``model``'s class name and state dict (names, dtypes, shapes and the values
    of every non-quantized tensor): equal for two models with the same weights. A cache key
    (a fine-tune, a reference score), not a file checksum (:func:`sha256_file`)."""
    h = hashlib.sha1()
    h.update(type(model).__qualname__.encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        if not t.is_quantized:
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, model: SSDLite, meta: dict | None = None) -> None:
    """Write ``model`` (float, unfused) and ``meta`` to ``path`` atomically."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": model.arch,
        "num_classes": model.num_classes,
        "model_config": dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        # str(): torch.__version__ is a TorchVersion, which weights_only loading refuses
        "meta": {"torch_version": str(torch.__version__), **(meta or {})},
    }
    atomic_torch_save(payload, path)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint file (``weights_only=True``: no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        # TorchVersion (a str subclass) allowed: files written before torch_version was str()'d
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # random bytes also raise KeyError, ValueError, struct.error...
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupted? {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a navya checkpoint (no 'format': {FORMAT!r} entry)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload['format_version']} is newer than this "
            f"navya reads ({FORMAT_VERSION})"
        )
    missing = [k for k in ("arch", "num_classes", "model_config", "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    return Checkpoint(path, payload["arch"], int(payload["num_classes"]),
                      dict(payload["model_config"]), payload["state_dict"],
                      dict(payload.get("meta", {})))


def load_into(model: nn.Module, ckpt: Checkpoint) -> None:
    """Load ``ckpt`` into ``model``, with an error that says what does not fit."""
    arch = getattr(model, "arch", None)
    if arch is not None and arch != ckpt.arch:
        raise CheckpointError(f"{ckpt.path}: checkpoint is a {ckpt.arch}, the model a {arch}")
    nc = getattr(model, "num_classes", None)
    if nc is not None and nc != ckpt.num_classes:
        raise CheckpointError(
            f"{ckpt.path}: checkpoint has {ckpt.num_classes} classes (background included), "
            f"the model {nc}"
        )
    own = model.state_dict()
    missing = sorted(set(own) - set(ckpt.state_dict))
    unexpected = sorted(set(ckpt.state_dict) - set(own))
    wrong = sorted(k for k in set(own) & set(ckpt.state_dict)
                   if own[k].shape != ckpt.state_dict[k].shape)
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} (e.g. {missing[:3]})")
        if unexpected:
            detail.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            detail.append(f"{len(wrong)} with other shapes (e.g. {k}: checkpoint "
                          f"{tuple(ckpt.state_dict[k].shape)}, model {tuple(own[k].shape)})")
        raise CheckpointError(f"{ckpt.path}: weights do not fit the model: {'; '.join(detail)}")
    model.load_state_dict(ckpt.state_dict)


def load_checkpoint(path: str | os.PathLike) -> tuple[SSDLite, Checkpoint]:
    """Rebuild the model a checkpoint describes and load its weights. Returns it in eval mode."""
    ckpt = read_checkpoint(path)
    try:
        model = build_model(ckpt.arch, ckpt.num_classes, **ckpt.model_config)
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{ckpt.path}: cannot rebuild the model it describes: {exc}") from exc
    shapes = ckpt.meta.get("pruned_shapes")
    if shapes:  # a structurally pruned model: give the fresh layers the recorded shapes first
        try:
            apply_pruned_shapes(model, shapes)
        except PruningError as exc:
            raise CheckpointError(f"{ckpt.path}: {exc}") from exc
    load_into(model, ckpt)
    return model.eval(), ckpt


# -- structurally pruned checkpoints (the layouts: navya.models.pruned) ----------------------


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
