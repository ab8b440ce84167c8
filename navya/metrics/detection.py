"""Pascal VOC detection accuracy: per-class average precision (AP) and mAP.

Everything here is a pure function of its inputs: no printing, no file I/O.

Inputs
------
``predictions`` and ``targets`` are sequences with one entry per image (same
length, same image order). Each entry is a mapping whose values are numpy arrays
or torch tensors (tensors are moved to the CPU and converted):

* prediction: ``boxes`` float ``[N, 4]``, ``scores`` float ``[N]``, ``labels`` int ``[N]``
* target: ``boxes`` float ``[M, 4]``, ``labels`` int ``[M]``, optional
  ``difficult`` bool ``[M]`` (missing means all ``False``)

An image without detections (or without ground truth) has ``N == 0`` (``M == 0``);
empty arrays of any shape, e.g. ``torch.empty(0)``, are accepted as ``[0, 4]``.

Labels are 1-based class ids: label ``i + 1`` is ``class_names[i]``; label 0 is
the background and is never a valid prediction or ground-truth label.

Box format and units
--------------------
Boxes are ``[x1, y1, x2, y2]`` in pixels with *continuous* coordinates
(``x2 >= x1``, ``y2 >= y1``): the area of a box is ``(x2 - x1) * (y2 - y1)``, with
**no "+1"**. This deliberately differs from the original Pascal VOC devkit, which
treats coordinates as inclusive pixel indices and uses ``(x2 - x1 + 1) * (y2 - y1 + 1)``;
navya follows pycocotools and torchvision instead (detectors built on torchvision
emit continuous boxes). IoUs therefore differ slightly from the devkit's for small
boxes. A box with ``x2 < x1`` or ``y2 < y1`` (typically an ``[x, y, w, h]`` box passed
by mistake) is rejected with ``ValueError``.

Matching (as the VOC devkit, ``VOCevaldet.m`` / ``voc_eval.py``)
---------------------------------------------------------------
For each class independently, the detections of that class from all images are
ranked by descending score (stable sort, ``kind="mergesort"``: ties keep image
order, then the detection's order within its image). Walking down the ranking,
each detection is compared with the ground-truth boxes *of its class in its
image* and assigned to the one with the highest IoU (first one on ties), whether
or not that ground truth is already taken. Then:

* IoU ``>= iou_threshold`` and the ground truth is *difficult*: the detection is
  **ignored** (neither true nor false positive, removed from the ranking). This
  applies to every detection on a difficult box, so duplicates on it are ignored
  too.
* IoU ``>= iou_threshold``, not difficult, not yet matched: **true positive**; the
  ground truth becomes matched.
* IoU ``>= iou_threshold``, not difficult, already matched: **false positive**
  (duplicate detection).
* IoU ``< iou_threshold``, or no ground truth of that class in the image:
  **false positive**.

Difficult ground truths are not counted in the number of positives, so missing
them costs nothing. With ``P`` non-difficult ground truths of the class,
``recall = cumTP / P`` and ``precision = cumTP / (cumTP + cumFP)`` along the ranking.
The matching is computed once per class and shared by all AP methods.

AP methods (:data:`APMethod`)
----------------------------
* ``"all-point"`` (VOC2010 and later): the precision envelope (made monotonically
  non-increasing in recall) integrated as a step function over the recall
  change points, with precision 0 beyond the highest recall reached.
* ``"voc07"`` (VOC2007 11-point): mean over ``t in {0, 0.1, ..., 1}`` of the
  maximum precision among ranks with ``recall >= t`` (0 if there is none). The
  thresholds are ``k / 10`` exactly; the devkit's ``np.arange(0, 1.1, 0.1)`` instead
  yields ``0.30000000000000004``, ``0.6000000000000001`` and ``0.7000000000000001``,
  so for a class whose recall is exactly 0.3, 0.6 or 0.7 navya counts that threshold
  as reached and the Python devkit does not.
* ``"101-point"``: as pycocotools' ``COCOeval.accumulate`` (recall thresholds
  ``np.linspace(0, 1, 101)``, monotone precision envelope,
  ``np.searchsorted(recall, thresholds, side="left")``, thresholds beyond the
  highest recall contribute 0, mean of the 101 values). With the VOC matching
  above this equals COCO's AP50 whenever the two matchings agree (see the tests).

A class without non-difficult ground truth has AP ``NaN`` and is left out of the
mAP; a class with ground truth but no (non-ignored) detection has AP 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from navya.metrics._detection_input import (
    _check_class_names,
    _check_iou_threshold,
    _Flat,
    _flatten,
    box_iou,
    check_pairs,
)

__all__ = [
    "AP_METHODS",
    "APMethod",
    "ClassMatches",
    "DetectionEvaluation",
    "average_precision",
    "box_iou",
    "check_pairs",
    "evaluate_detections",
    "match_detections",
    "method_names",
]

APMethod = Literal["all-point", "voc07", "101-point"]
AP_METHODS: tuple[str, ...] = get_args(APMethod)

# Recall thresholds of the 11-point (VOC2007) metric: k / 10 exactly (see module docstring).
_VOC07_RECALL_THRESHOLDS = np.arange(11) / 10.0
# Recall thresholds of COCOeval (pycocotools Params.setDetParams), written the same way.
_COCO_RECALL_THRESHOLDS = np.linspace(
    0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True
)


# --------------------------------------------------------------------------- AP from a PR curve


def _check_method(method: str) -> None:
    if method not in AP_METHODS:
        raise ValueError(f"unknown AP method {method!r}; expected one of {AP_METHODS}")


def average_precision(recall: np.ndarray, precision: np.ndarray, method: APMethod) -> float:
    """Average precision of one class from its precision/recall curve.

    Args:
        recall: ``[K]`` recall after each of the ``K`` ranked detections, non-decreasing,
            in ``[0, 1]``.
        precision: ``[K]`` precision after each ranked detection, in ``[0, 1]``.
        method: ``"all-point"``, ``"voc07"`` or ``"101-point"`` (see module docstring).

    Returns:
        AP in ``[0, 1]``; 0 for an empty curve (no detections).
    """
    _check_method(method)
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.ndim != 1 or recall.shape != precision.shape:
        raise ValueError(
            f"recall and precision must be 1-D arrays of equal length, "
            f"got shapes {recall.shape} and {precision.shape}"
        )
    if recall.size == 0:
        return 0.0
    if not (np.all(np.isfinite(recall)) and np.all(np.isfinite(precision))):
        raise ValueError("recall and precision must be finite")
    if np.any(np.diff(recall) < 0):
        raise ValueError("recall must be non-decreasing along the ranking")

    if method == "voc07":
        reached = recall[None, :] >= _VOC07_RECALL_THRESHOLDS[:, None]  # [11, K]
        best = np.max(np.broadcast_to(precision, reached.shape), axis=1, where=reached, initial=0.0)
        return float(np.mean(best))

    if method == "101-point":
        # Precision envelope: best precision at this rank or any later (higher-recall) one.
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, _COCO_RECALL_THRESHOLDS, side="left")
        reached = idx < recall.size
        q = np.zeros_like(_COCO_RECALL_THRESHOLDS)
        q[reached] = envelope[idx[reached]]
        return float(np.mean(q))

    # all-point: VOC devkit voc_ap, with sentinels (recall 0 and 1, precision 0 at both
    # ends), the precision envelope, and the area of the step curve at recall changes.
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    change = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


# --------------------------------------------------------------------------- input handling


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True, eq=False)
class ClassMatches:
    """Ranked detections of one class after VOC matching (detections on difficult GT removed).

    Attributes:
        num_gt: number of non-difficult ground-truth boxes of the class.
        num_ignored: detections dropped because they hit a difficult ground truth.
        scores: ``[K]`` scores, descending (stable order).
        true_positive: ``[K]`` bool; ``False`` means false positive.
        image_index: ``[K]`` index of the image each detection comes from.
        detection_index: ``[K]`` index of the detection within that image's predictions.
    """

    num_gt: int
    num_ignored: int
    scores: np.ndarray
    true_positive: np.ndarray
    image_index: np.ndarray
    detection_index: np.ndarray

    def precision_recall(self) -> tuple[np.ndarray, np.ndarray]:
        """``(recall, precision)`` after each ranked detection, ``[K]`` each.

        Recall is NaN throughout when the class has no non-difficult ground truth.
        """
        tp = np.cumsum(self.true_positive, dtype=np.float64)
        fp = np.cumsum(~self.true_positive, dtype=np.float64)
        precision = tp / np.maximum(tp + fp, 1.0)
        recall = tp / self.num_gt if self.num_gt > 0 else np.full_like(tp, np.nan)
        return recall, precision


def _match_class(flat: _Flat, label: int, iou_threshold: float) -> ClassMatches:
    sel = np.flatnonzero(flat.det_label == label)  # image order, then detection order
    order = sel[np.argsort(-flat.det_score[sel], kind="mergesort")]
    gt = flat.det_gt[order]
    hit = flat.det_iou[order] >= iou_threshold
    on_difficult = np.zeros(order.size, dtype=bool)
    on_difficult[hit] = flat.gt_difficult[gt[hit]]
    # The devkit's argmax does not care whether the GT is taken, so the first detection
    # (in ranking order) hitting a given non-difficult GT is the TP and later ones are FPs.
    candidates = np.flatnonzero(hit & ~on_difficult)
    _, first = np.unique(gt[candidates], return_index=True)
    tp = np.zeros(order.size, dtype=bool)
    tp[candidates[first]] = True
    keep = ~on_difficult
    num_gt = int(np.count_nonzero((flat.gt_label == label) & ~flat.gt_difficult))
    return ClassMatches(
        num_gt=num_gt,
        num_ignored=int(np.count_nonzero(on_difficult)),
        scores=flat.det_score[order][keep],
        true_positive=tp[keep],
        image_index=flat.det_image[order][keep],
        detection_index=flat.det_index[order][keep],
    )


def match_detections(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    iou_threshold: float = 0.5,
) -> dict[str, ClassMatches]:
    """VOC matching of detections to ground truth, per class (see module docstring).

    Same inputs as :func:`evaluate_detections`. Returns ``{class_name: ClassMatches}``
    in ``class_names`` order; useful for precision/recall curves and error analysis.
    """
    names = _check_class_names(class_names)
    t = _check_iou_threshold(iou_threshold)
    flat = _flatten(predictions, targets, len(names))
    return {name: _match_class(flat, k + 1, t) for k, name in enumerate(names)}


# --------------------------------------------------------------------------- evaluation


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def _none_to_nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


@dataclass(frozen=True)
class DetectionEvaluation:
    """Per-class AP and mAP of a detector on a data set (one IoU threshold).

    Attributes:
        class_names: index ``i`` is label id ``i + 1`` (label 0, background, is never evaluated).
        iou_threshold: IoU needed for a detection to match a ground truth.
        ap: ``ap[method][class_name]``: AP in ``[0, 1]``, NaN if the class has no
            non-difficult ground truth.
        num_gt: non-difficult ground-truth boxes per class.
        num_detections: predicted boxes per class (including those ignored on difficult GT).
        recall: recall at the end of the ranking (all detections kept) per class, NaN
            without ground truth.
    """

    class_names: tuple[str, ...]
    iou_threshold: float
    ap: dict[str, dict[str, float]]
    num_gt: dict[str, int]
    num_detections: dict[str, int]
    recall: dict[str, float] = field(default_factory=dict)
    #: the per-image predictions scored, where the caller kept them (bootstrap intervals)
    predictions: list | None = field(default=None, repr=False, compare=False)

    @property
    def methods(self) -> tuple[str, ...]:
        """The AP methods that were computed."""
        return tuple(self.ap)

    def _ap_of(self, method: str) -> dict[str, float]:
        if method not in self.ap:
            raise ValueError(f"AP method {method!r} was not computed; available: {self.methods}")
        return self.ap[method]

    def map(self, method: str = "all-point") -> float:
        """Mean AP over the classes with non-difficult ground truth; NaN if there are none."""
        values = [
            v
            for name, v in self._ap_of(method).items()
            if self.num_gt[name] > 0 and not math.isnan(v)
        ]
        return float(np.mean(values)) if values else math.nan

    def per_class_rows(self) -> list[dict[str, Any]]:
        """One row per class, e.g. for a table: ``class``, ``num_gt``, ``num_detections``,
        ``recall`` and ``ap_<method>`` for every computed method, in ``class_names`` order."""
        rows = []
        for name in self.class_names:
            row: dict[str, Any] = {
                "class": name,
                "num_gt": self.num_gt[name],
                "num_detections": self.num_detections[name],
                "recall": self.recall.get(name, math.nan),
            }
            for method, values in self.ap.items():
                row[f"ap_{method}"] = values[name]
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN written as ``None``); inverse of :meth:`from_dict`."""
        return {
            "class_names": list(self.class_names),
            "iou_threshold": self.iou_threshold,
            "ap": {m: {k: _nan_to_none(v) for k, v in d.items()} for m, d in self.ap.items()},
            "num_gt": dict(self.num_gt),
            "num_detections": dict(self.num_detections),
            "recall": {k: _nan_to_none(v) for k, v in self.recall.items()},
            "map": {m: _nan_to_none(self.map(m)) for m in self.ap},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectionEvaluation:
        """Rebuild an evaluation from :meth:`to_dict` output (the ``map`` entry is derived)."""
        return cls(
            class_names=tuple(data["class_names"]),
            iou_threshold=float(data["iou_threshold"]),
            ap={m: {k: _none_to_nan(v) for k, v in d.items()} for m, d in data["ap"].items()},
            num_gt={k: int(v) for k, v in data["num_gt"].items()},
            num_detections={k: int(v) for k, v in data["num_detections"].items()},
            recall={k: _none_to_nan(v) for k, v in data.get("recall", {}).items()},
        )


def method_names(methods: str | Sequence[str]) -> list[str]:
    """``methods`` (one name or several) as a list without repeats, each a known AP method;
    a ValueError for none or an unknown one."""
    if isinstance(methods, str):
        methods = (methods,)
    method_list = list(dict.fromkeys(methods))
    if not method_list:
        raise ValueError("methods must name at least one AP method")
    for method in method_list:
        _check_method(method)
    return method_list


def evaluate_detections(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    iou_threshold: float = 0.5,
    methods: Sequence[APMethod] = ("all-point", "voc07"),
) -> DetectionEvaluation:
    """Pascal VOC AP per class and mAP at one IoU threshold.

    Args:
        predictions: one mapping per image with ``boxes`` ``[N, 4]`` float
            (``[x1, y1, x2, y2]`` pixels, continuous coordinates), ``scores`` ``[N]`` and
            ``labels`` ``[N]`` (1-based class ids). numpy arrays or torch tensors.
        targets: one mapping per image (same order and length) with ``boxes`` ``[M, 4]``,
            ``labels`` ``[M]`` and optionally ``difficult`` ``[M]`` bool (default all False).
        class_names: name of label ``i + 1`` at index ``i``.
        iou_threshold: minimum IoU for a match, in ``(0, 1]`` (VOC uses 0.5).
        methods: AP methods to compute (``"all-point"``, ``"voc07"``, ``"101-point"``);
            the matching is shared between them.

    Returns:
        A :class:`DetectionEvaluation`.

    Raises:
        ValueError: lengths differ, an array has the wrong shape, a label is outside
            ``1..len(class_names)``, a box is inverted or non-finite, a score is non-finite,
            or an argument is invalid. Messages about one image name its index.
    """
    names = _check_class_names(class_names)
    t = _check_iou_threshold(iou_threshold)
    method_list = method_names(methods)

    flat = _flatten(predictions, targets, len(names))
    ap: dict[str, dict[str, float]] = {m: {} for m in method_list}
    num_gt: dict[str, int] = {}
    num_detections: dict[str, int] = {}
    final_recall: dict[str, float] = {}
    for k, name in enumerate(names):
        matches = _match_class(flat, k + 1, t)
        num_gt[name] = matches.num_gt
        num_detections[name] = int(np.count_nonzero(flat.det_label == k + 1))
        if matches.num_gt == 0:
            final_recall[name] = math.nan
            for m in method_list:
                ap[m][name] = math.nan
            continue
        recall, precision = matches.precision_recall()
        final_recall[name] = float(recall[-1]) if recall.size else 0.0
        for m in method_list:
            ap[m][name] = average_precision(recall, precision, m)
    return DetectionEvaluation(
        class_names=names,
        iou_threshold=t,
        ap=ap,
        num_gt=num_gt,
        num_detections=num_detections,
        recall=final_recall,
    )
