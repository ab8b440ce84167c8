"""Run a detector over a data set and score it with VOC AP (:mod:`navya.metrics.detection`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from navya.metrics.detection import DetectionEvaluation, evaluate_detections


def predict(model: nn.Module, dataset: Dataset, *, batch_size: int = 8, limit: int | None = None,
            progress: bool = False, desc: str = "predict") -> list[dict[str, np.ndarray]]:
    """Detections of ``model`` (eval mode, no grad) for the first ``limit`` items of ``dataset``.

    Returns per image ``{"boxes" [K,4] float32 pixels, "scores" [K], "labels" [K] int64}``.
    """
    from tqdm.auto import tqdm

    n = len(dataset) if limit is None else min(limit, len(dataset))
    was_training = model.training
    model.eval()
    out: list[dict[str, np.ndarray]] = []
    try:
        with torch.inference_mode(), tqdm(total=n, desc=desc, disable=not progress,
                                          unit="img", dynamic_ncols=True) as bar:
            for start in range(0, n, batch_size):
                images = [dataset[i][0] for i in range(start, min(n, start + batch_size))]
                for det in model(images):
                    out.append({k: v.detach().cpu().numpy() for k, v in det.items()})
                bar.update(len(images))
    finally:
        model.train(was_training)
    return out


def targets_of(dataset: Dataset, n: int) -> list[dict]:
    """Ground truth of the first ``n`` items, without loading images when the data set can."""
    get = getattr(dataset, "target", None)
    return [get(i) if get else dataset[i][1] for i in range(n)]


def evaluate_model(model: nn.Module, dataset: Dataset, *, class_names: Sequence[str] | None = None,
                   batch_size: int = 8, limit: int | None = None, progress: bool = False,
                   methods: Sequence[str] = ("all-point", "voc07"),
                   keep_predictions: bool = False) -> DetectionEvaluation:
    """VOC AP per class and mAP at IoU 0.5 of ``model`` on ``dataset`` (first ``limit`` items).
    ``keep_predictions``: the result holds the per-image predictions (``.predictions``), for
    bootstrap intervals (:mod:`navya.metrics.bootstrap`)."""
    preds = predict(model, dataset, batch_size=batch_size, limit=limit, progress=progress,
                    desc="evaluate")
    names = class_names if class_names is not None else dataset.class_names
    ev = evaluate_detections(preds, targets_of(dataset, len(preds)), names,
                             methods=tuple(methods))
    return dataclasses.replace(ev, predictions=preds) if keep_predictions else ev
