"""Import torchvision's ``ssdlite320_mobilenet_v3_large`` from its state dict.

A user who fine-tuned torchvision's SSD-Lite (``torchvision.models.detection.
ssdlite320_mobilenet_v3_large``) gates it with navya without retraining: its ``state_dict``
(or a ``torchvision/references/detection`` checkpoint, ``{"model": state_dict, ...}``) loads
into navya's quantizable SSD-Lite on MobileNetV3-Large, tensor for tensor, under these renames:

============================================  =================================================
torchvision                                   navya
============================================  =================================================
``backbone.features.0.*``                     ``core.backbone.stage1.*`` (up to the C4 expansion)
``backbone.features.1.0.{j}.*``               ``core.backbone.stage2.{j-1}.*`` (C4's block, from
                                              its depthwise convolution on)
``backbone.features.1.{k}.*``, ``k >= 1``      ``core.backbone.stage2.{n-2+k}.*`` (the blocks after
                                              C4; ``n`` = the C4 block's layers)
``backbone.extra.{i}.*``                      ``core.extras.{i}.*``
``head.classification_head.module_list.{i}``  ``core.cls_heads.{i}``
``head.regression_head.module_list.{i}``      ``core.reg_heads.{i}``
============================================  =================================================

The model keeps torchvision's semantics: ReLU6 in the extra layers and the heads
(``activation="relu6"``), anchors of ``DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2,
max_ratio=0.95)`` at 320 x 320, softmax scores, and torchvision's post-processing defaults
(score threshold 0.001, the top 300 candidates of each class, NMS IoU 0.55, 300 detections).
The backbone's tail (reduced or not: torchvision reduces it when no ImageNet backbone was
loaded) is read from the tensors' shapes, and so is the number of classes. Every tensor of one
side must find its place on the other, with the same shape; otherwise the import is refused with
the names that do not fit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from navya.errors import NavyaError
from navya.models.checkpoint import sha256_file
from navya.models.ssdlite import SSDLite, ssdlite_mobilenet_v3_large

__all__ = ["TorchvisionImportError", "TORCHVISION_CONFIG", "import_torchvision_ssdlite",
           "torchvision_to_navya_key"]

#: navya's model options that reproduce torchvision's ssdlite320_mobilenet_v3_large
TORCHVISION_CONFIG = {
    "image_size": 320, "min_ratio": 0.2, "max_ratio": 0.95, "aspect_ratios": (2, 3),
    "activation": "relu6", "score_thresh": 0.001, "nms_thresh": 0.55,
    "detections_per_img": 300, "topk_candidates": 300, "topk_scope": "per_class",
    "image_mean": 0.5, "image_std": 0.5,
}


class TorchvisionImportError(NavyaError, ValueError):
    """A state dict that is not torchvision's ssdlite320_mobilenet_v3_large (names, shapes)."""


#: torchvision name pattern -> navya name (``c4`` the C4 block's layer count; see the module doc)
_RENAMES = (
    (r"backbone\.features\.0\.(.+)", lambda m, c4: f"core.backbone.stage1.{m[1]}"),
    (r"backbone\.features\.1\.0\.(\d+)\.(.+)",
     lambda m, c4: f"core.backbone.stage2.{int(m[1]) - 1}.{m[2]}"),
    (r"backbone\.features\.1\.(\d+)\.(.+)",
     lambda m, c4: f"core.backbone.stage2.{c4 - 2 + int(m[1])}.{m[2]}"),
    (r"backbone\.extra\.(.+)", lambda m, c4: f"core.extras.{m[1]}"),
    (r"head\.(classification|regression)_head\.module_list\.(.+)",
     lambda m, c4: f"core.{'cls' if m[1] == 'classification' else 'reg'}_heads.{m[2]}"),
)


def torchvision_to_navya_key(key: str, c4_layers: int) -> str | None:
    """The navya name of a torchvision ssdlite320 tensor (None: not a tensor navya keeps)."""
    for pattern, name in _RENAMES:
        m = re.fullmatch(pattern, key)
        if m:
            return name(m, c4_layers)
    return None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise TorchvisionImportError(f"{path}: file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TorchvisionImportError(f"{path}: not a readable torch file ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        payload = payload["model"]  # a torchvision references/detection checkpoint
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor)
                                                for v in payload.values()):
        raise TorchvisionImportError(f"{path}: not a state dict (a mapping of names to tensors, "
                                     "or {'model': state_dict})")
    return {k.removeprefix("module."): v for k, v in payload.items()}


def import_torchvision_ssdlite(source: str | os.PathLike | dict, classes: list[str] | tuple[str, ...],
                               ) -> SSDLite:
    """Load a torchvision ``ssdlite320_mobilenet_v3_large`` state dict (a file, or the dict)
    into navya's SSD-Lite on MobileNetV3-Large. ``classes``: the class names without the
    background, in the model's label order (label ``i + 1`` is ``classes[i]``).

    Returns the model in eval mode, ``model.import_meta`` holding the checkpoint metadata
    (:func:`~navya.models.tfod.save_imported` writes both).

    Raises:
        TorchvisionImportError: not torchvision's layout (the names or shapes that do not fit),
            or class names that do not fit the classification head.
    """
    path = None if isinstance(source, dict) else Path(source)
    sd = dict(source) if path is None else _read_state_dict(path)
    where = str(path) if path is not None else "the state dict"
    head = "head.classification_head.module_list.0.1.weight"
    if head not in sd or "backbone.features.0.0.0.weight" not in sd:
        raise TorchvisionImportError(
            f"{where}: no {head!r} or 'backbone.features.0.0.0.weight': not torchvision's "
            "ssdlite320_mobilenet_v3_large (its keys start " + ", ".join(list(sd)[:3]) + ")")
    anchors = sd["head.regression_head.module_list.0.1.weight"].shape[0] // 4
    num_classes = sd[head].shape[0] // anchors
    if len(classes) != num_classes - 1:
        raise TorchvisionImportError(f"{len(classes)} class name(s) for a model of "
                                     f"{num_classes - 1} class(es) plus the background")
    last = [k for k in sd if k.startswith("backbone.features.1.") and k.endswith(".0.weight")
            and sd[k].dim() == 4]
    reduced = None
    for tail in (True, False):
        model = ssdlite_mobilenet_v3_large(num_classes, **TORCHVISION_CONFIG,
                                           **({} if tail else {"reduced_tail": False}))
        c4 = model.core.backbone.c4_layers
        own = model.state_dict()
        if all(own.get(torchvision_to_navya_key(k, c4), torch.empty(0)).shape == sd[k].shape
               for k in last):
            reduced = tail
            break
    if reduced is None:
        raise TorchvisionImportError(f"{where}: the backbone's last stage fits neither the "
                                     "reduced nor the full MobileNetV3-Large tail")
    mapped, unknown, misfit = {}, [], []
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        name = torchvision_to_navya_key(k, c4)
        if name is None or name not in own:
            unknown.append(k)
        elif own[name].shape != v.shape:
            misfit.append(f"{k} {tuple(v.shape)} -> {name} {tuple(own[name].shape)}")
        else:
            mapped[name] = v
    if unknown or misfit:
        raise TorchvisionImportError(
            f"{where}: " + "; ".join(
                ([f"tensors navya's SSD-Lite has no place for: {', '.join(unknown[:5])}"
                  + (" ..." if len(unknown) > 5 else "")] if unknown else [])
                + ([f"shapes that differ: {', '.join(misfit[:3])}"] if misfit else [])))
    missing = [n for n in own if n not in mapped and not n.endswith("num_batches_tracked")]
    if missing:
        raise TorchvisionImportError(f"{where}: navya tensors that the state dict does not hold: "
                                     f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    model.load_state_dict(mapped, strict=False)
    source_meta = {"format": "torchvision-ssdlite320_mobilenet_v3_large-state-dict",
                   "reduced_tail": reduced}
    if path is not None:
        source_meta.update(file=path.name, sha256=sha256_file(path))
    model.import_meta = {"class_names": list(classes), "source": source_meta,
                         "importer": {"module": "navya.models.tvssd", "tensors": len(mapped)}}
    return model.eval()
