"""The data of the VOC evaluation: predictions and ground truth checked and turned into arrays
(each problem named by its image and field), box IoU, and the flattening of a data set's
detections per class with their best-matching ground truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``[x1, y1, x2, y2]`` boxes (continuous coordinates, no "+1").

    Args:
        a: ``[N, 4]`` boxes.
        b: ``[M, 4]`` boxes.

    Returns:
        ``[N, M]`` float64 array, ``iou[i, j] = |a_i & b_j| / |a_i | b_j|``. Pairs whose
        union has zero area (two degenerate boxes) get IoU 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    iou = np.zeros_like(inter)
    np.divide(inter, union, out=iou, where=union > 0)
    return iou



def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        try:
            return np.asarray(x)
        except TypeError:  # e.g. bfloat16, which numpy does not have
            return np.asarray(x.float())
    return np.asarray(x)

def _field(entry: Any, key: str, what: str, index: int) -> np.ndarray:
    if not isinstance(entry, Mapping):
        raise ValueError(f"image {index}: {what} must be a mapping, got {type(entry).__name__}")
    if key not in entry:
        raise ValueError(f"image {index}: {what} has no {key!r} entry")
    return _to_numpy(entry[key])

def _boxes(entry: Mapping, what: str, index: int) -> np.ndarray:
    boxes = _field(entry, "boxes", what, index)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"image {index}: {what} 'boxes' must have shape [N, 4], got {boxes.shape}")
    if not np.issubdtype(boxes.dtype, np.number) or np.issubdtype(boxes.dtype, np.complexfloating):
        raise ValueError(f"image {index}: {what} 'boxes' must be real numbers, got {boxes.dtype}")
    boxes = boxes.astype(np.float64)
    if not np.all(np.isfinite(boxes)):
        raise ValueError(f"image {index}: {what} 'boxes' contain NaN or infinity")
    if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
        raise ValueError(
            f"image {index}: {what} 'boxes' must be [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1 "
            "(were [x, y, w, h] boxes passed?)"
        )
    return boxes

def _vector(entry: Mapping, key: str, what: str, index: int, n: int) -> np.ndarray:
    values = _field(entry, key, what, index)
    if values.size == 0 and n == 0:
        return values.reshape(0)
    if values.shape != (n,):
        raise ValueError(
            f"image {index}: {what} {key!r} must have shape [{n}] to match 'boxes', got {values.shape}"
        )
    return values

def _labels(entry: Mapping, what: str, index: int, n: int, num_classes: int) -> np.ndarray:
    labels = _vector(entry, "labels", what, index, n)
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.number):
        raise ValueError(f"image {index}: {what} 'labels' must be integers, got {labels.dtype}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError(f"image {index}: {what} 'labels' must be integer class ids")
    labels = labels.astype(np.int64)
    bad = (labels < 1) | (labels > num_classes)
    if np.any(bad):
        raise ValueError(
            f"image {index}: {what} label {int(labels[bad][0])} is out of range; labels must be "
            f"1..{num_classes} (1-based ids into class_names; 0 is background)"
        )
    return labels

@dataclass(frozen=True, eq=False)
class _Flat:
    """All images concatenated: every detection with its best same-class ground truth."""

    det_label: np.ndarray  # [D] int, 1-based
    det_score: np.ndarray  # [D] float
    det_image: np.ndarray  # [D] int, image index
    det_index: np.ndarray  # [D] int, index within its image's predictions
    det_iou: np.ndarray  # [D] float, IoU with the best same-class GT (-1 if none)
    det_gt: np.ndarray  # [D] int, global index of that GT (-1 if none)
    gt_label: np.ndarray  # [G] int
    gt_difficult: np.ndarray  # [G] bool

def check_pairs(predictions: Sequence[Mapping[str, Any]],
                targets: Sequence[Mapping[str, Any]]) -> None:
    """A ValueError unless ``predictions`` and ``targets`` are sequences of one mapping per
    image, of the same length."""
    if isinstance(predictions, Mapping) or isinstance(targets, Mapping):
        raise ValueError("predictions and targets must be sequences with one mapping per image")
    if len(predictions) != len(targets):
        raise ValueError(
            f"predictions and targets must have the same length (one entry per image), "
            f"got {len(predictions)} predictions and {len(targets)} targets"
        )

def _flatten(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    num_classes: int,
) -> _Flat:
    check_pairs(predictions, targets)
    det_parts: list[tuple[np.ndarray, ...]] = []
    gt_labels: list[np.ndarray] = []
    gt_difficult: list[np.ndarray] = []
    gt_offset = 0
    for i, (pred, target) in enumerate(zip(predictions, targets, strict=True)):
        d_boxes = _boxes(pred, "prediction", i)
        n = len(d_boxes)
        scores = _vector(pred, "scores", "prediction", i, n)
        if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(
            scores.dtype, np.complexfloating
        ):
            raise ValueError(
                f"image {i}: prediction 'scores' must be real numbers, got {scores.dtype}"
            )
        scores = scores.astype(np.float64)
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"image {i}: prediction 'scores' contain NaN or infinity")
        d_labels = _labels(pred, "prediction", i, n, num_classes)

        g_boxes = _boxes(target, "target", i)
        m = len(g_boxes)
        g_labels = _labels(target, "target", i, m, num_classes)
        if isinstance(target, Mapping) and target.get("difficult") is not None:
            difficult = _vector(target, "difficult", "target", i, m)
            if difficult.dtype != np.bool_:
                if not np.issubdtype(difficult.dtype, np.number) or not np.all(
                    (difficult == 0) | (difficult == 1)
                ):
                    raise ValueError(f"image {i}: target 'difficult' must be booleans (or 0/1)")
            difficult = difficult.astype(bool)
        else:
            difficult = np.zeros(m, dtype=bool)

        if n and m:
            iou = box_iou(d_boxes, g_boxes)
            iou[d_labels[:, None] != g_labels[None, :]] = -1.0  # only same-class GTs compete
            best = np.argmax(iou, axis=1)  # first maximum on ties, as the devkit
            best_iou = iou[np.arange(n), best]
            best_gt = np.where(best_iou >= 0.0, best + gt_offset, -1)
        else:
            best_iou = np.full(n, -1.0)
            best_gt = np.full(n, -1, dtype=np.int64)
        det_parts.append((d_labels, scores, np.full(n, i), np.arange(n), best_iou, best_gt))
        gt_labels.append(g_labels)
        gt_difficult.append(difficult)
        gt_offset += m

    def cat(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype=dtype)

    cols = list(zip(*det_parts, strict=True)) if det_parts else [[] for _ in range(6)]
    return _Flat(
        det_label=cat(list(cols[0]), np.int64),
        det_score=cat(list(cols[1]), np.float64),
        det_image=cat(list(cols[2]), np.int64),
        det_index=cat(list(cols[3]), np.int64),
        det_iou=cat(list(cols[4]), np.float64),
        det_gt=cat(list(cols[5]), np.int64),
        gt_label=cat(gt_labels, np.int64),
        gt_difficult=cat(gt_difficult, bool),
    )

def _check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(class_names, str):
        raise ValueError("class_names must be a sequence of names, not a single string")
    names = tuple(class_names)
    if not all(isinstance(name, str) for name in names):
        raise ValueError("class_names must all be strings")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be unique, got {names}")
    return names

def _check_iou_threshold(iou_threshold: float) -> float:
    t = float(iou_threshold)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    return t
