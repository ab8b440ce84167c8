"""What a run measures on and how: the settings, the workload (reference model and data) and
its loader."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from navya.errors import NavyaError

REFERENCE = "fp32"

#: Fresh speed runs a figure outside its tolerance is judged on (the first one included): the
#: median of five. Three were not enough: a noisy spell of the host can outlast two runs
#: (docs/results/code_decisions/README.md).
SPEED_CONFIRM_RUNS = 5



class BenchError(NavyaError, ValueError):
    """Settings or a workload that cannot be measured (e.g. the model's classes differ from
    the data's)."""


@dataclass(frozen=True)
class BenchSettings:
    """How a run measures. ``threads`` is the timing thread count (1: the embedded case)."""

    threads: int = 1
    rounds: int = 30
    warmup: int = 5
    batch_size: int = 1
    eval_batch_size: int = 8
    rss: bool = True
    progress: bool = False
    seed: int = 0
    #: speed ratios: timed ABBA pairs per fresh worker run (see :meth:`Bench.speed_runs`)
    speed_rounds: int = 60
    #: time speed ratios in a fresh worker process pinned to one core (False: in this process,
    #: unpinned, as before the per-machine gate; for quick local looks only)
    isolated_speed: bool = True
    pin: bool = True
    #: slowdowns injected into the speed workers (the gate's tests and power study):
    #: ``{"network": {variant: fraction}, "postprocess": fraction}``
    inject: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for name, low in (("threads", 1), ("rounds", 3), ("warmup", 0), ("batch_size", 1),
                          ("eval_batch_size", 1), ("speed_rounds", 3)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise BenchError(f"BenchSettings.{name} must be an integer >= {low}, "
                                 f"got {value!r}")


@dataclass
class Workload:
    """What a run measures on: the reference model and the data.

    Accuracy is scored on the first ``eval_images`` items of ``eval_dataset`` (all when
    None). ``provenance`` is what deterministic figures depend on (checkpoint sha256, data
    fingerprint, split, number of evaluation images, torch version); ``notes`` are warnings a
    person should read (a fingerprint mismatch, no train split).
    """

    reference: nn.Module
    eval_dataset: Dataset
    train_dataset: Dataset | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    eval_images: int | None = None
    #: accuracy figures come with bootstrap intervals over the evaluation images
    intervals: bool = False
    #: the fewest calibration images (the whole train split when smaller); 1: 2 % as it is
    min_calibration_images: int = 1

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.eval_dataset.class_names)

    @property
    def eval_count(self) -> int:
        n = len(self.eval_dataset)
        return n if self.eval_images is None else min(n, self.eval_images)


def load_workload(checkpoint: str | os.PathLike, data: str | os.PathLike, *, split: str = "val",
                  eval_images: int | None = 500, train_split: str | None = "train",
                  size_policy: str = "image", other_classes: str = "error",
                  classes: tuple[str, ...] | None = None, source_package: str | None = None,
                  intervals: bool = False, content_fingerprint: bool = False,
                  min_calibration_images: int = 1) -> Workload:
    """The workload of a checkpoint and a VOC folder (the train split feeds calibration).
    Large JPEGs decode reduced to the model's input size (``VOCDataset(decode_size=...)``);
    ``size_policy`` and ``other_classes`` are the reader's (what a wrong ``<size>`` and an
    object of a class the model does not detect mean). A checkpoint ending in ``.pb`` is a TF OD
    API frozen graph, imported with ``classes`` (:func:`navya.models.tfod.load_graph`).
    ``intervals``: accuracy figures come with bootstrap intervals over the images.
    ``content_fingerprint``: data without a synthetic set's recorded fingerprint is identified
    by its contents (the evaluation and train splits' images and annotations), so that a
    baseline recorded on another set is not comparable. ``min_calibration_images``: the fewest
    images a calibration uses (:class:`~navya.compress.base.CompressContext`)."""
    from navya.data.memory import UInt8Images
    from navya.data.synthetic import read_fingerprint, verify_synthetic
    from navya.data.voc import VOCDataset
    from navya.models import load_checkpoint
    from navya.models.checkpoint import sha256_file

    if Path(checkpoint).suffix == ".pb":
        from navya.models.tfod import load_graph

        reference, ckpt = load_graph(checkpoint, classes or (), source_package=source_package)
    else:
        reference, ckpt = load_checkpoint(checkpoint)
    names = ckpt.class_names or None
    try:
        eval_set = VOCDataset(data, split, class_names=names, limit=eval_images,
                              size_policy=size_policy, decode_size=reference.image_size,
                              other_classes=other_classes)
    except NavyaError as exc:
        if names and "class" in str(exc):
            raise BenchError(
                f"the checkpoint {ckpt.path} ({len(names)} classes: {', '.join(names)}) does "
                f"not fit the data {data}: {exc}") from exc
        raise
    fingerprint = read_fingerprint(eval_set.voc_dir)
    if fingerprint is not None:
        problems = verify_synthetic(eval_set.voc_dir)
        if problems:
            raise BenchError(f"{eval_set.voc_dir}: the synthetic set does not match its "
                             f"navya_synthetic.json (its fingerprint would be a lie): "
                             + "; ".join(problems[:5])
                             + f"; regenerate it with `navya data synth {data}`")
    notes = []
    trained_on = ckpt.meta.get("data_fingerprint")
    if trained_on and fingerprint and trained_on != fingerprint:
        notes.append(f"WARNING: data fingerprint {fingerprint[:12]} differs from the one the "
                     f"checkpoint was trained with ({trained_on[:12]}): accuracy figures and "
                     "baselines are not comparable")
    train = None
    if train_split:
        try:
            train = VOCDataset(data, train_split, class_names=names, size_policy=size_policy,
                               decode_size=reference.image_size, other_classes=other_classes)
        except NavyaError as exc:
            notes.append(f"no {train_split} split in {data} ({exc}): variants that calibrate "
                         "or fine-tune cannot be built")
    if len(eval_set.class_names) != reference.num_classes - 1:
        raise BenchError(
            f"{ckpt.path}: the model has {reference.num_classes - 1} classes, the data "
            f"{len(eval_set.class_names)} ({', '.join(eval_set.class_names)})")
    provenance = {
        "checkpoint_sha256": sha256_file(ckpt.path),
        "data_fingerprint": fingerprint,
        "eval_images": len(eval_set),
        "split": split,
        "torch_version": torch.__version__,
    }
    if fingerprint is None and content_fingerprint:
        import hashlib

        parts = [eval_set.fingerprint()] + ([train.fingerprint()] if train is not None else [])
        provenance["data_fingerprint"] = hashlib.sha256(" ".join(parts).encode()).hexdigest()
    if other_classes != "error":  # objects of other classes left out of the ground truth
        provenance["other_classes"] = other_classes
    if min_calibration_images != 1:
        provenance["min_calibration_images"] = min_calibration_images
    return Workload(reference.eval(), UInt8Images(eval_set), train, provenance, notes,
                    intervals=intervals, min_calibration_images=min_calibration_images)

