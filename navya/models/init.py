"""Start a detector from weights trained elsewhere.

- :func:`load_matching`: every tensor of a source state dict whose name and shape fit the
  model is copied; the rest keep their fresh initialization (a checkpoint of other classes:
  its classification heads do not fit and start afresh). The report lists what was loaded and
  what was not, and why; loading refuses when almost nothing fits (another architecture).
- :func:`torchvision_backbone_state`: an ImageNet classifier's state dict in torchvision's
  layout (``features.<i>....`` of ``mobilenet_v2`` / ``mobilenet_v3_large``) renamed to the
  detector's backbone (``core.backbone.stage1/stage2....``). The map is built from the modules
  themselves: navya's backbone is torchvision's ``features`` cut at the stride-16 expansion, so
  a fresh torchvision model and its cut share their tensors.
- :func:`resolve_backbone_weights`: a local ``.pt``/``.pth`` state dict; a ``.tflite`` MobileNetV2
  1.0 ImageNet classifier (uint8/int8 or float; dequantized, its folded batch norm mapped, by
  :mod:`navya.models.tflite`); ``imagenet``, the quantized MobileNetV2 classifier that lives beside
  the checkout (``$NAVYA_IMAGENET_WEIGHTS``, else ``../shared/weights/``; the error says where to
  get it); or a torchvision weights name (``MobileNet_V2_Weights.IMAGENET1K_V1``) resolved
  through torchvision's weights API (a machine with internet downloads and caches it as
  torchvision does; without, the error says so and names the file to download).

Known differences: navya's MobileNetV2 uses ReLU where torchvision's uses ReLU6 (quantization
fuses Conv-BN-ReLU), so ImageNet V2 weights start a slightly different function; navya's V3 uses
the reduced tail of torchvision's SSD-Lite (the last blocks have half the channels), so those
blocks do not fit an ImageNet V3-Large classifier and start afresh.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from navya.errors import NavyaError
from navya.models.checkpoint import sha256_file

__all__ = ["InitError", "InitReport", "backbone_bn_eps", "class_output_names",
           "imagenet_weights_path", "load_matching", "resolve_backbone_weights",
           "torchvision_backbone_state"]

#: Below this fraction of the model's parameters (by count) loaded, loading refuses.
MIN_LOADED_FRACTION = 0.3


class InitError(NavyaError, ValueError):
    """Weights that cannot start this model (the message names the source and why)."""


@dataclass
class InitReport:
    """What :func:`load_matching` did. ``skipped``: model tensors left at their initialization
    (name -> why); ``unused``: source tensors that fit nothing."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)
    loaded_params: int = 0
    total_params: int = 0

    @property
    def fraction(self) -> float:
        return self.loaded_params / self.total_params if self.total_params else 0.0

    def summary(self, limit: int = 8) -> str:
        """Lines for a person: counts, then the skipped tensors grouped by reason."""
        lines = [f"{self.source}: loaded {len(self.loaded)} tensors "
                 f"({self.loaded_params:,} of {self.total_params:,} parameters, "
                 f"{self.fraction:.1%}); {len(self.skipped)} left at their initialization; "
                 f"{len(self.unused)} source tensors unused"]
        by_reason: dict[str, list[str]] = {}
        for name, why in self.skipped.items():
            by_reason.setdefault(why.split(":")[0], []).append(name)
        for why, names in by_reason.items():
            more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
            lines.append(f"  not loaded ({why}): {', '.join(names[:limit])}{more}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "loaded": len(self.loaded),
                "skipped": sorted(self.skipped), "loaded_params": self.loaded_params,
                "total_params": self.total_params}


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str, *,
                  prefix: str = "", min_fraction: float = MIN_LOADED_FRACTION,
                  scope: str = "", exclude: dict[str, str] | None = None) -> InitReport:
    """Copy into ``model`` every tensor of ``state`` (its names prefixed with ``prefix``) whose
    name and shape fit. ``scope``: only model tensors under this name count towards the
    fraction (``core.backbone.`` for backbone weights). ``exclude``: model tensors never
    loaded, name -> why (a source of other classes: :func:`class_output_names`). Raises
    :class:`InitError` when less than ``min_fraction`` of those parameters fit (another
    architecture)."""
    own = model.state_dict()
    params = dict(model.named_parameters())
    report = InitReport(source)
    incoming = {prefix + k: v for k, v in state.items()}
    update = {}
    for name, tensor in own.items():
        in_scope = name.startswith(scope)
        if name in params and in_scope:
            report.total_params += tensor.numel()
        if exclude and name in exclude:
            report.skipped[name] = exclude[name]
            continue
        if name not in incoming:
            if in_scope:
                report.skipped[name] = "not in the source"
            continue
        other = incoming[name]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            shape = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other)
            report.skipped[name] = f"shape: {shape} in the source, {tuple(tensor.shape)} here"
            continue
        update[name] = other.to(tensor.dtype)
        report.loaded.append(name)
        if name in params:
            report.loaded_params += tensor.numel()
    report.unused = [k for k in incoming if k not in own]
    if report.fraction < min_fraction:
        raise InitError(f"{source}: only {report.loaded_params:,} of {report.total_params:,} "
                        f"parameters{f' under {scope}' if scope else ''} fit this "
                        f"{getattr(model, 'arch', type(model).__name__)} by name and shape "
                        f"({report.fraction:.1%}, below {min_fraction:.0%}): another "
                        f"architecture? {len(report.unused)} source tensors match no name, e.g. "
                        f"{', '.join(report.unused[:3]) or '-'}")
    model.load_state_dict(update, strict=False)
    return report


def class_output_names(model: nn.Module) -> list[str]:
    """The tensors of the last layer of each classification head (``core.cls_heads[i][-1]``): the
    ones that give each class its score. A start trained on other classes must not hand its
    classes' scores to this model's, even when their number (and so the shapes) agree."""
    last = {id(head[-1]) for mod in model.modules()
            for head in getattr(mod, "cls_heads", ())}
    return [f"{mod_name}.{p}" if mod_name else p
            for mod_name, mod in model.named_modules() if id(mod) in last
            for p, _ in mod.named_parameters(recurse=False)]


def _torchvision_features(arch: str) -> nn.Sequential:
    from torchvision.models import mobilenet_v2, mobilenet_v3_large

    if arch == "ssdlite_mobilenet_v2":
        return mobilenet_v2().features
    if arch == "ssdlite_mobilenet_v3_large":
        return mobilenet_v3_large().features
    raise InitError(f"no torchvision ImageNet backbone for {arch!r}")


def torchvision_backbone_state(model: nn.Module, state: dict[str, torch.Tensor]
                               ) -> dict[str, torch.Tensor]:
    """``state`` (a torchvision ``mobilenet_v2``/``mobilenet_v3_large`` classifier's state dict,
    ``features.*``, ``classifier.*``) renamed to ``model``'s backbone; the classifier is
    dropped. Names are mapped by building torchvision's ``features`` and navya's cut of it,
    which share their tensors."""
    from navya.models.ssdlite import MobileNetFeatures

    features = _torchvision_features(model.arch)
    cut = MobileNetFeatures(features)
    by_id = {id(t): n for n, t in cut.state_dict(keep_vars=True).items()}
    rename = {f"features.{n}": f"core.backbone.{by_id[id(t)]}"
              for n, t in features.state_dict(keep_vars=True).items() if id(t) in by_id}
    if not any(k in rename for k in state):
        raise InitError("the weights have no torchvision backbone tensor (features.*): not a "
                        f"torchvision {model.arch.removeprefix('ssdlite_')} state dict? first "
                        f"keys: {', '.join(list(state)[:3])}")
    return {rename[k]: v for k, v in state.items() if k in rename}


def backbone_bn_eps(model: nn.Module) -> float:
    """The eps of the first ``BatchNorm2d`` of ``model``'s backbone (navya's detectors: 1e-3),
    for :func:`resolve_backbone_weights`'s ``bn_eps``; torchvision's 1e-5 where it has none."""
    from navya.models.tflite import TORCHVISION_BN_EPS

    backbone = getattr(getattr(model, "core", model), "backbone", model)
    return next((m.eps for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)),
                TORCHVISION_BN_EPS)


def imagenet_weights_path(root: str | os.PathLike | None = None) -> Path:
    """Where ``imagenet`` (:data:`navya.models.tflite.IMAGENET`) is: ``$NAVYA_IMAGENET_WEIGHTS``,
    else ``<root>/../shared/weights/mobilenet_v2_1.0_224_quant.tflite`` (``root``: the checkout,
    by default this package's). Raises :class:`InitError` saying which file to put where, and
    where to get it, when it is not there or is another file."""
    from navya.models.tflite import IMAGENET as src

    value = os.environ.get(src.env, "").strip()
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    path = Path(value) if value else root.parent / src.default
    where = (f"{src.env}={value}" if value else
             f"{path} ({src.env} is unset; it names the file elsewhere)")
    get = (f"the file {src.file} of the public GitHub repository {src.repository} (commit "
           f"{src.commit}, {src.licence}: put its LICENSE beside it), sha256 {src.sha256}")
    if not path.is_file():
        raise InitError(f"the ImageNet backbone weights 'imagenet' are not at {where}: put "
                        f"there {get} (README, 'ImageNet backbone weights'); without them, "
                        "`--init tfod-person` starts from the real-photograph detector navya "
                        "ships (what `--preset finetune` does; docs/results/finetune_real/)")
    digest = sha256_file(path)
    if digest != src.sha256:
        raise InitError(f"{path}: sha256 {digest}, but 'imagenet' names {get}; to start from "
                        "another file, pass its path to --backbone-weights instead")
    return path


def _tflite_weights(path: Path, bn_eps: float) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from navya.models.tflite import TFLiteError, read_mobilenet_v2

    if not path.is_file():
        raise InitError(f"{path}: backbone weights file not found")
    try:
        weights = read_mobilenet_v2(path, bn_eps=bn_eps)
    except TFLiteError as exc:
        raise InitError(str(exc)) from exc
    return weights.state, {"file": str(path), "sha256": sha256_file(path), "format": "tflite"}


def resolve_backbone_weights(spec: str | os.PathLike, *, bn_eps: float | None = None
                             ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict named by ``spec`` and where it came from: a file (``{"file": path,
    "sha256": ...}``, with ``"format": "tflite"`` for a ``.tflite`` classifier), ``imagenet``
    (the ``.tflite`` file of :func:`imagenet_weights_path`), or a torchvision weights name such
    as ``MobileNet_V2_Weights.IMAGENET1K_V1`` (``{"torchvision_weights": name, "url": ...}``).

    ``bn_eps``: the eps of the model's ``BatchNorm2d`` (:func:`backbone_bn_eps`); a ``.tflite``
    file's batch norm is folded, and its ``BatchNorm2d`` layers are made exact identities for
    this eps (default: torchvision's 1e-5). Other sources hold real statistics and ignore it."""
    from navya.models.tflite import TORCHVISION_BN_EPS

    eps = TORCHVISION_BN_EPS if bn_eps is None else bn_eps
    if str(spec) == "imagenet":
        return _tflite_weights(imagenet_weights_path(), eps)
    path = Path(spec)
    if path.suffix == ".tflite":
        return _tflite_weights(path, eps)
    if path.suffix in (".pt", ".pth", ".bin") or path.exists():
        if not path.is_file():
            raise InitError(f"{path}: backbone weights file not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
            raise InitError(f"{path}: not a readable state dict ({type(exc).__name__}: "
                            f"{exc})") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise InitError(f"{path}: holds a {type(state).__name__}, not a state dict")
        return state, {"file": str(path), "sha256": sha256_file(path)}
    from torchvision.models import get_weight

    try:
        weights = get_weight(str(spec))
    except (ValueError, KeyError, AttributeError) as exc:
        raise InitError(f"{spec!r} is neither a file nor a torchvision weights name (e.g. "
                        f"MobileNet_V2_Weights.IMAGENET1K_V1), nor 'imagenet': {exc}") from None
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - no network, a proxy, a bad download
        raise InitError(f"torchvision weights {spec}: could not be downloaded or read "
                        f"({type(exc).__name__}: {exc}); download {weights.url} on a machine "
                        f"with internet and pass the file instead") from None
    return state, {"torchvision_weights": str(spec), "url": weights.url}
