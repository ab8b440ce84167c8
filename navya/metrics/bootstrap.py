"""Bootstrap confidence intervals for Pascal VOC AP and mAP, resampling images.

A figure measured on a hundred photographs is uncertain mostly because of *which* photographs
they are. The bootstrap estimates that uncertainty from the data alone: draw as many images as
the set has, with replacement; compute AP on the drawn set; repeat; the interval holding the
central ``confidence`` share of those APs is the percentile interval (Efron's percentile
method). The image is the unit that is resampled: the detections and ground truth of an image
stay together, since they are not independent of one another.

The AP is navya's own (:mod:`navya.metrics.detection`): the same matching, the same AP methods,
the same treatment of difficult boxes. The point estimate is
:func:`~navya.metrics.detection.evaluate_detections` on the data as given.

How a resample is scored
------------------------
The VOC matching of a detection looks only at the ground truth of its own image and at the
detections of its image ranked above it. So whether a detection is a true positive, a false
positive or ignored (on a difficult box) does not depend on the other images, and the matching is
done once (:func:`~navya.metrics.detection.match_detections`). A resample is a count per image
(how many times it was drawn); an image drawn ``c`` times contributes ``c`` copies of each of its
ranked detections and ``c`` times its non-difficult ground truth. Its precision/recall curve and
AP come from :meth:`~navya.metrics.detection.ClassMatches.precision_recall` and
:func:`~navya.metrics.detection.average_precision`.

The resample is taken with its images in their original order (copies of an image side by
side), which is the order :func:`~navya.metrics.detection.evaluate_detections` breaks score ties
by; the AP of each resample therefore equals ``evaluate_detections`` on the list of drawn images
sorted by index, exactly, ties included (checked in ``tests/test_bootstrap.py``). Where a class
has no tied scores this costs a ``numpy.repeat`` per class and resample; with ties, one
``numpy.lexsort``. 1,000 resamples of 100 images with 100 detections each over 20 classes take
a few seconds on one core.

Classes that a resample leaves without ground truth
---------------------------------------------------
A class with non-difficult ground truth in few images is absent from some resamples; its AP there
is undefined (NaN, as in :class:`~navya.metrics.detection.DetectionEvaluation`) and the mAP of
that resample is the mean over the classes that are present, as
:meth:`~navya.metrics.detection.DetectionEvaluation.map` does. A class's interval is taken over
the resamples in which it is present (their number is :attr:`BootstrapAP.valid`). A class
without non-difficult ground truth in the data has point and interval NaN.

The percentile interval need not contain the point estimate (the bootstrap distribution of AP can
be skewed and biased on small sets); :attr:`APInterval.contains_point` says whether it does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from navya.metrics._detection_input import _to_numpy
from navya.metrics.detection import (
    APMethod,
    ClassMatches,
    average_precision,
    check_pairs,
    evaluate_detections,
    match_detections,
    method_names,
)

__all__ = ["APInterval", "BootstrapAP", "bootstrap_ap", "percentile_interval"]


class APInterval(NamedTuple):
    """An AP (or mAP) and its bootstrap percentile interval; unpacks as ``point, low, high``."""

    point: float
    low: float
    high: float

    @property
    def width(self) -> float:
        """``high - low`` (NaN when the interval is undefined)."""
        return self.high - self.low

    @property
    def contains_point(self) -> bool:
        """Whether ``low <= point <= high`` (False when any of them is NaN)."""
        return bool(self.low <= self.point <= self.high)


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` share of ``samples``: their ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles (numpy's default linear interpolation).

    NaN samples are left out; ``(nan, nan)`` when none is left.

    Raises:
        ValueError: ``confidence`` is not strictly between 0 and 1.
    """
    conf = _check_confidence(confidence)
    values = np.asarray(samples, dtype=np.float64).reshape(-1)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(values, [(1.0 - conf) / 2.0, (1.0 + conf) / 2.0])
    return float(low), float(high)


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    return c


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


@dataclass(frozen=True, eq=False)
class BootstrapAP:
    """Per-class AP and mAP of a detector with their bootstrap intervals (one IoU threshold).

    Attributes:
        class_names: index ``i`` is label id ``i + 1``.
        iou_threshold: IoU needed for a detection to match a ground truth.
        confidence: the share of the bootstrap distribution each interval holds (0.95: 95 %).
        n_resamples: resamples drawn.
        n_images: images in the data (and in every resample).
        seed: the seed the resamples were drawn with (None: a Generator was passed, or none).
        ap: ``ap[method][class_name]``: an :class:`APInterval`; NaN throughout for a class
            without non-difficult ground truth.
        mean_ap: ``mean_ap[method]``: the mAP's :class:`APInterval`.
        valid: resamples in which each class has non-difficult ground truth (its interval is
            taken over those).
        ap_samples: ``ap_samples[method]``: float64 ``[n_resamples, n_classes]``, the AP of every
            class in every resample (NaN where the class is absent).
        map_samples: ``map_samples[method]``: float64 ``[n_resamples]``, the mAP of every
            resample.
    """

    class_names: tuple[str, ...]
    iou_threshold: float
    confidence: float
    n_resamples: int
    n_images: int
    seed: int | None
    ap: dict[str, dict[str, APInterval]]
    mean_ap: dict[str, APInterval]
    valid: dict[str, int]
    ap_samples: dict[str, np.ndarray] = field(repr=False)
    map_samples: dict[str, np.ndarray] = field(repr=False)

    @property
    def methods(self) -> tuple[str, ...]:
        """The AP methods that were computed."""
        return tuple(self.mean_ap)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN written as ``None``; the samples are left out)."""

        def triple(iv: APInterval) -> dict[str, float | None]:
            return {"point": _nan_to_none(iv.point), "low": _nan_to_none(iv.low),
                    "high": _nan_to_none(iv.high)}

        return {
            "class_names": list(self.class_names),
            "iou_threshold": self.iou_threshold,
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "n_images": self.n_images,
            "seed": self.seed,
            "resampled": "images, with replacement; percentile interval",
            "ap": {m: {k: triple(v) for k, v in d.items()} for m, d in self.ap.items()},
            "map": {m: triple(v) for m, v in self.mean_ap.items()},
            "valid": dict(self.valid),
        }


def _gt_counts(targets: Sequence[Mapping[str, Any]], num_classes: int) -> np.ndarray:
    """``[n_images, num_classes]`` int64: non-difficult ground truths of each class per image.

    The targets have been validated by :func:`match_detections` already."""
    counts = np.zeros((len(targets), num_classes), dtype=np.int64)
    for i, target in enumerate(targets):
        labels = _to_numpy(target["labels"]).reshape(-1).astype(np.int64)
        difficult = target.get("difficult")
        if difficult is None:
            keep = np.ones(labels.size, dtype=bool)
        else:
            keep = ~_to_numpy(difficult).reshape(-1).astype(bool)
        np.add.at(counts[i], labels[keep] - 1, 1)
    return counts


class _RankedClass:
    """One class's ranked detections, expanded to any resample's per-image counts."""

    def __init__(self, matches: ClassMatches) -> None:
        self.matches = matches
        self.positions = np.arange(matches.scores.size)
        # Only distinct detections with equal scores need the exact tie order of a resample;
        # copies of one detection are interchangeable.
        self.ties = bool(np.any(matches.scores[1:] == matches.scores[:-1]))

    def resampled(self, counts: np.ndarray, num_gt: int) -> ClassMatches:
        m = self.matches
        weight = counts[m.image_index]
        rep = np.repeat(self.positions, weight)
        if self.ties and rep.size:
            # copy number of each repeated entry (0 .. weight - 1)
            starts = np.cumsum(weight) - weight
            copy = np.arange(rep.size) - np.repeat(starts, weight)
            # evaluate_detections' order on the drawn images sorted by index: score
            # descending, then image, then copy of the image, then the detection's index
            order = np.lexsort((m.detection_index[rep], copy, m.image_index[rep],
                                -m.scores[rep]))
            rep = rep[order]
        return ClassMatches(
            num_gt=num_gt,
            num_ignored=0,
            scores=m.scores[rep],
            true_positive=m.true_positive[rep],
            image_index=m.image_index[rep],
            detection_index=m.detection_index[rep],
        )


def bootstrap_ap(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    methods: Sequence[APMethod] = ("all-point", "voc07"),
    iou_threshold: float = 0.5,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int | np.random.Generator | None = 0,
) -> BootstrapAP:
    """Per-class AP and mAP with bootstrap percentile intervals, resampling images.

    Args:
        predictions: one mapping per image, as for
            :func:`~navya.metrics.detection.evaluate_detections`.
        targets: one mapping per image (same order and length), likewise.
        class_names: name of label ``i + 1`` at index ``i``.
        methods: AP methods (``"all-point"``, ``"voc07"``, ``"101-point"``).
        iou_threshold: minimum IoU for a match, in ``(0, 1]``.
        confidence: share of the bootstrap distribution the interval holds, strictly between 0
            and 1 (default 0.95).
        n_resamples: how many resamples to draw (default 1000).
        seed: seed of the ``numpy.random.Generator`` that draws the resamples (the same seed
            gives the same intervals), or a Generator to draw from.

    Returns:
        A :class:`BootstrapAP`; its points equal ``evaluate_detections`` on the same data.

    Raises:
        ValueError: no images; no non-difficult ground truth of any class (nothing to
            measure); ``confidence`` not in ``(0, 1)``; ``n_resamples`` below 1; an unknown
            method; or any input ``evaluate_detections`` refuses.
    """
    check_pairs(predictions, targets)
    if len(targets) == 0:
        raise ValueError("bootstrap_ap needs at least one image, got no predictions and targets")
    conf = _check_confidence(confidence)
    if isinstance(n_resamples, bool) or int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    n_resamples = int(n_resamples)
    method_list = method_names(methods)

    point = evaluate_detections(predictions, targets, class_names,
                                iou_threshold=iou_threshold, methods=method_list)
    names = point.class_names
    if not any(point.num_gt[name] > 0 for name in names):
        raise ValueError("the targets hold no non-difficult ground truth of any class: "
                         "AP is undefined, there is nothing to bootstrap")
    matches = match_detections(predictions, targets, names, iou_threshold=iou_threshold)
    gt = _gt_counts(targets, len(names))
    ranked = {k: _RankedClass(matches[name]) for k, name in enumerate(names)
              if point.num_gt[name] > 0}

    n = len(targets)
    rng = np.random.default_rng(seed)
    ap_samples = {m: np.full((n_resamples, len(names)), np.nan) for m in method_list}
    for b in range(n_resamples):
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n)
        num_gt = counts @ gt
        for k, cls in ranked.items():
            if num_gt[k] == 0:
                continue
            recall, precision = cls.resampled(counts, int(num_gt[k])).precision_recall()
            for m in method_list:
                ap_samples[m][b, k] = average_precision(recall, precision, m)

    present = ~np.isnan(ap_samples[method_list[0]])
    valid = {name: int(np.count_nonzero(present[:, k])) for k, name in enumerate(names)}
    ap: dict[str, dict[str, APInterval]] = {}
    mean_ap: dict[str, APInterval] = {}
    map_samples: dict[str, np.ndarray] = {}
    for m in method_list:
        ap[m] = {}
        for k, name in enumerate(names):
            low, high = percentile_interval(ap_samples[m][:, k], conf)
            ap[m][name] = APInterval(float(point.ap[m][name]), low, high)
        row_has = present.any(axis=1)
        maps = np.full(n_resamples, np.nan)
        maps[row_has] = np.nanmean(ap_samples[m][row_has], axis=1)
        map_samples[m] = maps
        low, high = percentile_interval(maps, conf)
        mean_ap[m] = APInterval(point.map(m), low, high)
    return BootstrapAP(
        class_names=names,
        iou_threshold=point.iou_threshold,
        confidence=conf,
        n_resamples=n_resamples,
        n_images=n,
        seed=int(seed) if isinstance(seed, int | np.integer) else None,
        ap=ap,
        mean_ap=mean_ap,
        valid=valid,
        ap_samples=ap_samples,
        map_samples=map_samples,
    )
