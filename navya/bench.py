"""The measurement engine: one run, each variant built once, each figure computed once.

A :class:`Bench` holds one run over one :class:`Workload` (the fp32 reference, the evaluation
images, the train split for calibration and fine-tunes). Ask it for a figure of a variant
(:meth:`Bench.evaluation`, :meth:`Bench.stats`, :meth:`Bench.speedup`, ...) and it builds the
variant (through :mod:`navya.catalogue`) and computes the figure the first time, then answers
from its cache: the key is a typed :class:`Fig` and the variant name, never a string. Rows
(:meth:`Bench.row`) have one schema, the :class:`~navya.metrics.measure.Measurement` fields
followed by the same-run figures of :data:`SAME_RUN_FIELDS`; budget and baseline comparisons
return :class:`Verdict` values. Nothing here imports pytest: :mod:`navya.suite` turns verdicts
into test outcomes, ``navya measure`` prints rows, :mod:`navya.report` writes them.

Protocol (docs/DESIGN.md, "Measurement protocol"):

- **Accuracy**: VOC AP at IoU 0.5 per class (all-point) and mAP (all-point and VOC07
  11-point) on the workload's evaluation images, with all cores (it is not timed).
- **Cost figures** use the first ``batch_size`` evaluation images as a list (the detector's
  input); MACs, latency and memory of the network alone use ``model.preprocess(images)``.
- **Latency** at ``settings.threads`` intra-op threads: a never-run copy of the model
  (:func:`~navya.runtime.timing_copy`) first called at that thread count, ``warmup`` untimed
  calls, ``rounds`` timed ones. A variant's **speedup** is timed interleaved with the
  reference in this process (:func:`~navya.metrics.latency.compare_latency`); its latency
  row comes from that same comparison.
- **Memory**: memray peak of one call; peak RSS of a fresh subprocess (optional).
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from navya.budgets import (
    BUDGET_KEYS,
    DEFAULT_TOLERANCES,
    BudgetCheck,
    Budgets,
    baseline_path,
    class_baselines,
    compare_baseline,
    provenance_mismatch,
    read_baseline,
    write_baseline,
)
from navya.errors import NavyaError
from navya.metrics.measure import (
    AP_PREFIX,
    ROW_FIELDS,
    Measurement,
    cpu_model,
    git_commit,
    utc_now,
)

__all__ = [
    "REFERENCE",
    "SAME_RUN_FIELDS",
    "SAME_RUN_TEXT_FIELDS",
    "SPEED_CONFIRM_RUNS",
    "Bench",
    "BenchError",
    "BenchSettings",
    "Fig",
    "Verdict",
    "Workload",
    "load_workload",
    "measure",
    "row_columns",
]

REFERENCE = "fp32"

#: Fresh speed runs a figure outside its tolerance is judged on (the first one included): the
#: median of five. Three were not enough: on the recording AMD EPYC an unchanged fp32 gave
#: pipeline figures 0.942, 0.937, 0.978 back to back (baseline 0.968, runs 0.963-0.978; 8 runs
#: minutes later 0.967-0.978), a noisy spell of the host that outlasted two runs.
SPEED_CONFIRM_RUNS = 5

#: Figures of a row that compare a variant with the reference in the same run, and its
#: verdict; they follow the :data:`~navya.metrics.measure.ROW_FIELDS` in every row.
SAME_RUN_FIELDS: tuple[str, ...] = (
    "map_drop_points",  # (reference mAP - mAP) * 100, points
    "size_ratio",  # size(reference) / size(variant), serialized artifact
    "zip_size_ratio",  # the same, zlib-compressed
    "macs_reduction",  # 1 - macs(variant) / macs(reference)
    "speedup",  # t(reference) / t(variant), interleaved in this run
    "speedup_ci_low",
    "speedup_ci_high",
    "map_ci_low",  # bootstrap interval of mAP over the images (models gated with intervals)
    "map_ci_high",
    "map_drop_points_ci_low",  # paired bootstrap interval of the drop, points
    "map_drop_points_ci_high",
    "transform_s",  # seconds the variant's transform took (calibration, fine-tune) when built
    "artifact",  # built / cache (artifact cache hit) / uncached / prebuilt
    "evaluated",  # now / cache (evaluation cache hit)
    "measured",  # speed runs: now / reused (same inputs, from an earlier passing run)
    "status",  # PASS / FAIL: <keys> / NO BUDGET / reference / not checked
)
#: Same-run fields that hold words, not numbers.
SAME_RUN_TEXT_FIELDS = ("artifact", "evaluated", "measured", "status")


def row_columns(class_names: Sequence[str]) -> list[str]:
    """The header of a row: the Measurement fields, the same-run fields, ``ap_<class>``."""
    return [*ROW_FIELDS, *SAME_RUN_FIELDS, *(AP_PREFIX + c for c in class_names)]


class Fig(enum.Enum):
    """What the engine caches per variant (and per thread count for timed copies)."""

    MODEL = "model"
    TRANSFORM_S = "transform seconds"
    #: how the model came to be: a :class:`~navya.compress.cache.BuildInfo`
    BUILD = "build"
    #: where the evaluation came from: "now" or "cache"
    EVAL_SOURCE = "evaluation source"
    TIMED_MODEL = "timed model"
    EVALUATION = "evaluation"
    STATS = "stats"
    SPEEDUP = "speedup"
    #: per speed run, the worker's other pairs: ``{"build": ..., "pipeline": ...}``
    SPEED_PAIRS = "speed pairs"
    LATENCY = "latency"
    NET_LATENCY = "network latency"
    PEAK_MEM = "peak memory"
    RSS = "peak RSS"


#: Figures that hold a model; :meth:`Bench.release` drops them, the numbers stay.
_MODEL_FIGS = (Fig.MODEL, Fig.TIMED_MODEL)


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




# -- verdicts --------------------------------------------------------------------------------


class Outcome(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"  # the figure could not be computed
    UPDATED = "updated"  # a baseline was rewritten (explicit --navya-update-baselines)
    NOT_APPLICABLE = "not applicable"  # e.g. the reference against itself
    NO_BUDGET = "no budget"
    NO_BASELINE = "no baseline"
    NOT_COMPARABLE = "not comparable"  # a baseline of another provenance or machine

    @property
    def skipped(self) -> bool:
        return self in (Outcome.NOT_APPLICABLE, Outcome.NO_BUDGET, Outcome.NO_BASELINE,
                        Outcome.NOT_COMPARABLE)


@dataclass(frozen=True)
class Verdict:
    """The result of one check of one variant: a budget key, or ``baseline``.

    ``measured``/``limit`` are set for budget checks. ``message`` is what a person reads (the
    suite shows it as the failure or skip reason).
    """

    variant: str
    key: str
    outcome: Outcome
    message: str
    measured: float | None = None
    limit: float | None = None

    @property
    def passed(self) -> bool:
        return self.outcome in (Outcome.PASS, Outcome.UPDATED)

    @property
    def failed(self) -> bool:
        return self.outcome in (Outcome.FAIL, Outcome.ERROR)


# -- the engine ------------------------------------------------------------------------------


class Bench:
    """One measurement run over ``workload``.

    Args:
        workload: the reference model and the data.
        settings: how figures are measured.
        budgets: budgets and tolerances (:func:`navya.budgets.load_budgets`); None: every
            budget check says NO BUDGET.
        baselines_dir: the folder of deterministic baselines; None: NO BASELINE.
        models: prebuilt models by name, used instead of the catalogue's variants (e.g.
            ``navya measure`` of a model built elsewhere). The reference name maps to
            ``workload.reference`` unless given here.
        reference: the name of the reference row (default ``fp32``).
        speed_dir: the folder of per-machine speed baselines (default
            ``<baselines_dir>/speed``).
        cache: a :class:`~navya._cache.ResultStore` that keeps built artifacts (the
            :class:`~navya.compress.cache.ArtifactCache`) and their evaluations between runs,
            each by a hash of everything it depends on; None: everything is built and
            evaluated in this run.
        rebuild: ignore (and replace) the cache entries of these variants, or of all (True).
        remeasure: time and measure memory afresh even where the cache holds figures measured
            on the same inputs (:meth:`measurement_key`).
    """

    def __init__(self, workload: Workload, settings: BenchSettings | None = None, *,
                 budgets: Budgets | None = None, baselines_dir: str | os.PathLike | None = None,
                 models: Mapping[str, nn.Module] | None = None, reference: str = REFERENCE,
                 speed_dir: str | os.PathLike | None = None, cache: Any = None,
                 rebuild: bool | Sequence[str] = False, remeasure: bool = False):
        from navya.catalogue import CompressContext
        from navya.compress.cache import ArtifactCache

        self.workload = workload
        self.settings = settings or BenchSettings()
        self.budgets = budgets
        self.baselines_dir = None if baselines_dir is None else Path(baselines_dir)
        self.speed_dir = (Path(speed_dir) if speed_dir is not None
                          else None if baselines_dir is None
                          else self.baselines_dir / "speed")
        self.reference = reference
        self._models = dict(models or {})
        self._models.setdefault(reference, workload.reference)
        self.store = cache
        self.artifacts = None if cache is None else ArtifactCache(cache)
        self.rebuild = rebuild if isinstance(rebuild, bool) else frozenset(rebuild)
        self.remeasure = remeasure
        #: (group, variant) -> "now" / "reused" / "cache" (see measurement_key)
        self.sources: dict[tuple[str, str], str] = {}
        self._ids: dict[str, str | None] = {}
        #: variant -> when (and at which commit) its reused speed runs were measured
        self.reused_from: dict[str, str] = {}
        self.context = CompressContext(train_dataset=workload.train_dataset,
                                       progress=self.settings.progress, seed=self.settings.seed,
                                       artifacts=self.artifacts,
                                       min_calibration_images=workload.min_calibration_images)
        self._cache: dict[tuple[Fig, str, int], Any] = {}
        self._intervals: dict[tuple[str, str], Any] = {}  # bootstrap of each evaluated variant
        self.verdicts: dict[str, dict[str, Verdict]] = {}
        self.order: list[str] = []  # variants in the order they were first measured
        self.errors: dict[str, str] = {}
        #: baselines measured for an explicit refresh, written by commit_baselines
        self.pending_baselines: dict[str, tuple[Path, dict[str, Any], dict[str, Any]]] = {}
        #: per variant: (stored build to time against, or None and why); see stored_build
        self._build_state: dict[str, tuple[Path | None, str | None]] = {}
        #: (figure, variant) -> seconds spent computing it (see profile)
        self.timings: dict[tuple[str, str], float] = {}
        self._inner: list[float] = []

    # -- cache --

    def _cached(self, fig: Fig, variant: str, compute: Callable[[], Any], threads: int = 0):
        key = (fig, variant, threads)
        if key not in self._cache:
            if variant not in self.order:
                self.order.append(variant)
            try:
                with self._timed(fig, variant):
                    self._cache[key] = compute()
            except Exception as exc:
                self.errors.setdefault(variant, f"{fig.value}: {type(exc).__name__}: {exc}")
                raise
        return self._cache[key]

    @contextlib.contextmanager
    def _timed(self, fig: Fig, variant: str):
        """Add the block's wall time, less that of figures computed inside it, to
        :attr:`timings` (the run's profile)."""
        t0 = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            total, inner = time.perf_counter() - t0, self._inner.pop()
            key = (fig.value, variant)
            self.timings[key] = self.timings.get(key, 0.0) + total - inner
            if self._inner:
                self._inner[-1] += total

    def profile(self) -> dict[str, float]:
        """Seconds this run spent per kind of figure (building models, evaluating, speed
        runs, ...), each figure's own time (not that of the figures it needed), largest
        first."""
        out: dict[str, float] = {}
        for (fig, _), seconds in self.timings.items():
            out[fig] = out.get(fig, 0.0) + seconds
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def cache_summary(self) -> str | None:
        """One line: how many models came from the artifact cache and how many were built
        (with the seconds each took), and the same for evaluations; None without a cache."""
        if self.store is None:
            return None
        infos = {v: self.peek(Fig.BUILD, v) for v in self.order}
        hits = {v: i for v, i in infos.items() if i is not None and i.source == "cache"}
        built = {v: i for v, i in infos.items() if i is not None and i.source in ("built",
                                                                                 "uncached")}
        evals = [self.peek(Fig.EVAL_SOURCE, v) for v in self.order]
        line = (f"artifact cache {self.store.root}: {len(hits)} variant(s) from the cache "
                f"(built earlier in {sum(i.build_s for i in hits.values()):.0f} s, read in "
                f"{sum(i.load_s for i in hits.values()):.1f} s), {len(built)} built now in "
                f"{sum(i.build_s for i in built.values()):.0f} s")
        if built:
            line += " (" + ", ".join(f"{v} {i.build_s:.0f} s" for v, i in built.items()) + ")"
        speed = [self.sources.get(("speed", v)) for v in self.order]
        memory = [self.sources.get(("memory", v)) for v in self.order]
        line += (f"; evaluations: {evals.count('cache')} from the cache, "
                 f"{evals.count('now')} computed; speed: {speed.count('reused')} variant(s) "
                 f"reused (same inputs as an earlier passing run), {speed.count('now')} "
                 f"measured now; memory: {memory.count('reused')} reused, "
                 f"{memory.count('now')} measured now")
        if self.remeasure:
            line += " (--navya-remeasure: nothing reused)"
        return line

    def _speed_peek(self, variant: str):
        """The median speed run of ``variant`` if one was made (computes nothing)."""
        return self.speedup(variant) if self.peek(Fig.SPEEDUP, variant) else None

    def has(self, fig: Fig, variant: str, threads: int = 0) -> bool:
        return (fig, variant, threads) in self._cache

    def peek(self, fig: Fig, variant: str, threads: int = 0) -> Any:
        """A figure if it was computed, else None (computes nothing)."""
        return self._cache.get((fig, variant, threads))

    def release(self, variant: str) -> None:
        """Drop the models of ``variant`` (its figures stay); the reference is kept. First,
        its freshly measured speed and memory figures go to the cache when every check of
        the variant passed (:meth:`save_measurements`)."""
        self.save_measurements(variant)
        if variant == self.reference:
            return
        for key in [k for k in self._cache if k[0] in _MODEL_FIGS and k[1] == variant]:
            del self._cache[key]

    # -- inputs --

    @property
    def images(self) -> list[torch.Tensor]:
        """The cost figures' input: the first ``batch_size`` evaluation images."""
        if not hasattr(self, "_images"):
            n = self.settings.batch_size
            if len(self.workload.eval_dataset) < n:
                raise ValueError(f"the evaluation set has {len(self.workload.eval_dataset)} "
                                 f"images, fewer than batch_size {n}")
            self._images = [self.workload.eval_dataset[i][0] for i in range(n)]
        return self._images

    # -- figures --

    def config_dict(self, variant: str) -> dict[str, Any] | None:
        """The variant's config as a dict (None for a prebuilt model)."""
        if variant in self._models:
            return None
        from navya.catalogue import get_variant

        return get_variant(variant).config_dict()

    def adopt_models(self, models: Mapping[str, nn.Module]) -> None:
        """Use models another run built for these catalogue variants (same reference, same
        configs) instead of building them again; their configs still name them."""
        for name, model in models.items():
            self._cache[(Fig.MODEL, name, 0)] = model
            self._cache.setdefault((Fig.TRANSFORM_S, name, 0), 0.0)

    def _tags(self, variant: str) -> tuple[str, ...]:
        from navya.catalogue import get_variant

        return get_variant(variant).tags

    def unavailable(self, variant: str) -> str | None:
        """Why ``variant`` cannot be built on this machine (its runtime is not installed, or
        the CPU lacks what it needs), or None. The suite skips such a variant loudly."""
        if variant in self._models:
            return None
        from navya.catalogue import get_variant
        from navya.compress.deploy import unavailable_reason

        v = get_variant(variant)
        return v.not_applicable(self.cpu_class(variant)) or unavailable_reason(v.config)

    def kernel_dependent(self, variant: str) -> bool:
        """Whether the variant's figures depend on the CPU's kernel class (INT8 and half
        precision, on every runtime): its baselines and budgets are then kept per class. A
        prebuilt model (``models``) is judged by the same rule: quantized or half tensors."""
        if variant in self._models:
            model = self._models[variant]
            return any(t.is_quantized or t.dtype in (torch.bfloat16, torch.float16)
                       for t in model.state_dict().values() if isinstance(t, torch.Tensor))
        from navya.catalogue import get_variant

        return get_variant(variant).kernel_dependent

    def cpu_class(self, variant: str | None = None) -> str:
        """The CPU class (:mod:`navya.cpuclass`) ``variant``'s kernels run at here: torch's
        own kernels at :func:`~navya.cpuclass.kernel_class` (restrictions honoured), a runtime
        that no environment restricts at the host's class."""
        from navya.cpuclass import UNRESTRICTABLE

        if variant is None or variant in self._models:
            return self.machine["kernel_class"]
        from navya.catalogue import get_variant

        if get_variant(variant).runtime in UNRESTRICTABLE:
            return self.machine["cpu_class"]
        return self.machine["kernel_class"]

    def model(self, variant: str) -> nn.Module:
        """The variant's model in eval mode (built once; the transform time is recorded)."""

        def build():
            from navya.compress.cache import BuildInfo

            if variant in self._models:
                self._cache[(Fig.TRANSFORM_S, variant, 0)] = 0.0
                self._cache[(Fig.BUILD, variant, 0)] = BuildInfo("prebuilt", 0.0)
                return self._models[variant].eval()
            import contextlib

            from navya.catalogue import get_variant
            from navya.compress.deploy import ExportError

            spec = get_variant(variant)
            reason = self.unavailable(variant)
            if reason:
                raise BenchError(f"variant {variant!r} cannot be built here: {reason}")
            rebuilding = (self.artifacts.rebuilding(self.rebuilds(variant))
                          if self.artifacts is not None else contextlib.nullcontext())
            try:
                with rebuilding:
                    m, info = spec.apply_info(self.workload.reference, self.context)
            except ExportError as exc:
                raise ExportError(f"variant {variant!r}: {exc}") from exc
            self._cache[(Fig.TRANSFORM_S, variant, 0)] = info.build_s
            self._cache[(Fig.BUILD, variant, 0)] = info
            return m.eval()

        def checked():
            m = build()
            self._check_finite(variant, m)
            return m

        return self._cached(Fig.MODEL, variant, checked)

    def _check_finite(self, variant: str, model: nn.Module) -> None:
        """A model whose network outputs NaN or inf (a diverged or corrupted checkpoint, a
        broken transform) is an error naming the variant, not a mAP of 0."""
        with torch.inference_mode():
            x = model.preprocess(self.images)
            outputs = model.core(x)
        bad = [i for i, t in enumerate(outputs)
               if not bool(torch.isfinite((t.dequantize() if t.is_quantized else t).float())
                           .all())]
        if bad:
            raise BenchError(f"variant {variant!r} outputs NaN or inf (network output(s) "
                             f"{bad}) on the first {len(self.images)} evaluation image(s): "
                             "a diverged or corrupted checkpoint, or a broken transform")

    def timed_model(self, variant: str, threads: int | None = None) -> nn.Module:
        """The copy of the variant's model that is timed at ``threads`` intra-op threads.

        A never-run :func:`~navya.runtime.timing_copy` whose first call runs at ``threads``
        (eager INT8 kernels are built for the thread count of their first call; the model of
        :meth:`model` was evaluated with all cores), one per thread count.
        """
        from navya.runtime import num_threads, timing_copy

        threads = threads or self.settings.threads

        def build():
            m = timing_copy(self.model(variant))
            with num_threads(threads), torch.inference_mode():
                m(self.images)
            return m

        return self._cached(Fig.TIMED_MODEL, variant, build, threads)

    def rebuilds(self, variant: str) -> bool:
        """Whether this run ignores the cache entries of ``variant`` (``rebuild``)."""
        return self.rebuild is True or (not isinstance(self.rebuild, bool)
                                        and variant in self.rebuild)

    def build_info(self, variant: str):
        """How the variant's model came to be (:class:`~navya.compress.cache.BuildInfo`;
        builds it if needed)."""
        self.model(variant)
        return self._cache[(Fig.BUILD, variant, 0)]

    def evaluation(self, variant: str):
        """VOC evaluation (:class:`~navya.metrics.detection.VOCEvaluation`) on the workload.

        With a cache, the evaluation of the same artifact on the same images by the same code
        (:meth:`evaluation_key`) is read from it instead of computed again."""
        from navya.metrics.evaluate import evaluate_model
        from navya.runtime import num_threads, usable_cpus

        def compute():
            with num_threads(usable_cpus()):
                return evaluate_model(self.model(variant), self.workload.eval_dataset,
                                      class_names=self.workload.class_names,
                                      batch_size=self.settings.eval_batch_size,
                                      limit=self.workload.eval_images,
                                      progress=self.settings.progress,
                                      keep_predictions=self.workload.intervals)

        def run():
            parts = self.evaluation_key(variant)
            if parts is None:
                self._cache[(Fig.EVAL_SOURCE, variant, 0)] = "now"
                return compute()
            from navya._cache import digest

            key = digest(parts)
            if not self.rebuilds(variant):
                entry = self.store.get("evaluations", key)
                if entry is not None:
                    self._cache[(Fig.EVAL_SOURCE, variant, 0)] = "cache"
                    return entry.value
            t0 = time.perf_counter()
            result = compute()
            try:
                self.store.put("evaluations", key, result,
                               {"variant": variant, "seconds": time.perf_counter() - t0,
                                "evaluated_at": utc_now(), "parts": parts})
            except OSError as exc:
                import warnings

                from navya._cache import CacheWarning

                warnings.warn(f"could not write the evaluation cache: {exc}", CacheWarning,
                              stacklevel=2)
            self._cache[(Fig.EVAL_SOURCE, variant, 0)] = "now"
            return result

        return self._cached(Fig.EVALUATION, variant, run)

    def evaluation_key(self, variant: str) -> dict[str, Any] | None:
        """What the variant's evaluation depends on, or None when it cannot be cached (no
        cache; a model of unknown origin): the artifact (its cache key, or the digest of a
        float model handed to the engine such as the reference), the evaluation images (their
        fingerprint and count), the class names, the batch size, the thread count, the source
        of the evaluation code and of every navya module the model's layers come from, the
        library versions and the machine."""
        from navya.compress.cache import model_digest
        from navya.runtime import usable_cpus

        if self.store is None or self.artifacts is None:
            return None
        model, info = self.model(variant), self.build_info(variant)
        if info.key is not None:
            artifact = info.key
        elif info.source == "prebuilt":
            artifact = model_digest(model)
        else:
            return None
        data = self.workload.eval_dataset
        try:
            data_fp = self.artifacts.data_fingerprint(data)
        except ValueError:
            return None
        inner = getattr(data, "dataset", None)
        roots = ["navya.metrics.evaluate", type(data).__module__,
                 *([type(inner).__module__] if inner is not None else []),
                 *sorted({type(m).__module__ for m in model.modules()
                          if type(m).__module__.startswith("navya")})]
        return {"format": 1, "artifact": artifact, "data": data_fp,
                **({"predictions": True} if self.workload.intervals else {}),
                "eval_images": self.workload.eval_count,
                "class_names": list(self.workload.class_names),
                "batch_size": self.settings.eval_batch_size, "threads": usable_cpus(),
                "sources": self.artifacts._sources(tuple(dict.fromkeys(roots))),
                "versions": self.artifacts.versions(), "machine": self.artifacts.machine}

    def map(self, variant: str) -> float:
        return float(self.evaluation(variant).map("all-point"))

    def map_drop_points(self, variant: str) -> float:
        return (self.map(self.reference) - self.map(variant)) * 100.0

    #: bootstrap settings of the accuracy intervals (a workload with ``intervals``)
    INTERVAL_RESAMPLES = 1000
    INTERVAL_CONFIDENCE = 0.95

    def _bootstrap(self, variant: str):
        """The bootstrap (:func:`~navya.metrics.bootstrap.bootstrap_ap`, seed 0: every variant
        resamples the same images) of an evaluated variant; None without intervals."""
        if not self.workload.intervals:
            return None
        key = ("bootstrap", variant)
        if key not in self._intervals:
            from navya.metrics.bootstrap import bootstrap_ap
            from navya.metrics.evaluate import targets_of

            ev = self.evaluation(variant)
            if ev.predictions is None:
                return None
            targets = targets_of(self.workload.eval_dataset, len(ev.predictions))
            self._intervals[key] = bootstrap_ap(
                ev.predictions, targets, self.workload.class_names, methods=("all-point",),
                confidence=self.INTERVAL_CONFIDENCE, n_resamples=self.INTERVAL_RESAMPLES, seed=0)
        return self._intervals[key]

    def map_interval(self, variant: str) -> tuple[float, float] | None:
        """The bootstrap interval of the variant's all-point mAP over the evaluation images
        (None: the workload has no intervals)."""
        boot = self._bootstrap(variant)
        return None if boot is None else tuple(boot.mean_ap["all-point"][1:])

    def map_drop_interval(self, variant: str) -> tuple[float, float] | None:
        """The paired bootstrap interval of the mAP drop in points: the reference and the
        variant scored on the same resampled images (None: no intervals)."""
        from navya.metrics.bootstrap import percentile_interval

        ref, own = self._bootstrap(self.reference), self._bootstrap(variant)
        if ref is None or own is None:
            return None
        drops = (ref.map_samples["all-point"] - own.map_samples["all-point"]) * 100.0
        return percentile_interval(drops, self.INTERVAL_CONFIDENCE)

    def stats(self, variant: str) -> dict[str, Any]:
        """Parameters, sparsity, serialized size and MACs of the variant."""
        from navya.metrics.model_stats import count_macs, param_stats, serialized_size

        def run():
            from navya.compress.deploy import RuntimeCore
            from navya.metrics.model_stats import artifact_size

            m = self.model(variant)
            with torch.inference_mode():
                x = m.preprocess(self.images)
            if isinstance(m.core, RuntimeCore):
                # a runtime's network: the artifact's bytes; parameters and MACs of the float
                # network it was exported from (an INT8 graph does its float twin's MACs)
                twin = m.core.float_twin
                if twin is None:
                    raise BenchError(f"variant {variant!r}: its runtime network has no float "
                                     "twin (unpickled?); parameters and MACs cannot be counted")
                ps, size = param_stats(twin), artifact_size(m.core.artifact_files())
                macs = count_macs(twin, (x,))
            else:
                ps, size = param_stats(m), serialized_size(m)
                macs = count_macs(m.core, (x,))
            return {"params": ps.params, "nonzero_params": ps.nonzero_params,
                    "sparsity": ps.sparsity, "prunable_sparsity": ps.prunable_sparsity,
                    "size_bytes": size.size_bytes, "size_zip_bytes": size.size_zip_bytes,
                    "size_mb": size.size_mb, "size_zip_mb": size.size_zip_mb,
                    "macs": macs.macs, "effective_macs": macs.effective_macs}

        return self._cached(Fig.STATS, variant, lambda: self._reused_or(
            "stats", variant, run, lambda v: v["stats"], lambda v: {"stats": v}))

    def size_ratio(self, variant: str) -> float:
        return self.stats(self.reference)["size_bytes"] / self.stats(variant)["size_bytes"]

    def zip_size_ratio(self, variant: str) -> float:
        return self.stats(self.reference)["size_zip_bytes"] / self.stats(variant)["size_zip_bytes"]

    def macs_reduction(self, variant: str) -> float:
        return 1 - self.stats(variant)["macs"] / self.stats(self.reference)["macs"]

    def speed_runs(self, variant: str, n: int = 1) -> list:
        """At least ``n`` independent speed runs of ``variant`` (each a
        :class:`~navya.metrics.latency.SpeedupResult`), computing the missing ones.

        One run: a fresh worker process (:func:`~navya.metrics.speed.run_speed_job`) pinned to
        one core times the variant against the reference, ``speed_rounds`` ABBA pairs at the
        timing thread count. For the reference itself a run times the yardstick against it,
        so its "speedup" is ``t(reference) / t(yardstick)``: the reference's own cost.
        The same worker times the variant against its stored build when this machine's speed
        baseline has one (:meth:`stored_build`), and for the reference its network alone
        against its end-to-end call; those land in :meth:`speed_pairs`.
        """

        runs = self._cached(Fig.SPEEDUP, variant, list)
        pairs = self._cached(Fig.SPEED_PAIRS, variant, list)
        if not runs:
            self._reuse_speed(variant, n, runs, pairs)
        if len(runs) < n:
            if self.sources.get(("speed", variant)) == "reused":
                runs.clear(), pairs.clear()  # more runs wanted: all of them fresh
            self._measure_speed(variant, n, runs, pairs)
        return runs

    def fresh_speed_runs(self, variant: str, n: int) -> list:
        """``n`` speed runs of ``variant`` measured now: the runs this engine holds and the
        reuse cache are set aside (a recording must time this build on this machine now)."""
        runs = self._cached(Fig.SPEEDUP, variant, list)
        pairs = self._cached(Fig.SPEED_PAIRS, variant, list)
        runs.clear(), pairs.clear()
        self._measure_speed(variant, n, runs, pairs)
        return runs

    def _measure_speed(self, variant: str, n: int, runs: list, pairs: list) -> None:
        """Fill ``runs``/``pairs`` to ``n`` with runs measured now (the models built first,
        outside the speed time)."""
        self.sources[("speed", variant)] = "now"
        self.model(self.reference), self.model(variant)
        with self._timed(Fig.SPEEDUP, variant):
            self._speed_runs(variant, n, runs, pairs)

    def _reuse_speed(self, variant: str, n: int, runs: list, pairs: list) -> None:
        """Fill ``runs``/``pairs`` from the cache when it holds at least ``n`` runs measured
        on this variant's inputs in an earlier run whose checks passed."""
        from navya._cache import digest

        parts = self.measurement_key("speed", variant)
        if parts is None or self.rebuilds(variant):
            return
        entry = self.store.get("figures", digest(parts))
        value = None if entry is None else entry.value
        if (isinstance(value, dict) and len(value.get("runs", ())) >= n
                and len(value.get("pairs", ())) == len(value["runs"])):
            runs.extend(value["runs"])
            pairs.extend(value["pairs"])
            self.sources[("speed", variant)] = "reused"
            self.reused_from[variant] = (f"{entry.meta.get('measured_at')}, commit "
                                         f"{str(entry.meta.get('git_commit'))[:10]}")

    def _speed_runs(self, variant: str, n: int, runs: list, pairs: list) -> None:
        from navya.metrics.speed import YARDSTICK, run_speed_job
        from navya.runtime import timing_cpu

        s = self.settings
        is_ref = variant == self.reference
        while len(runs) < n:
            if not s.isolated_speed:
                runs.append(self._speed_run_here(variant))
                pairs.append({})
                continue
            build, _why = self.stored_build(variant)
            job = run_speed_job(self.model(self.reference),
                                {} if is_ref else {variant: self.model(variant)}, self.images,
                                rounds=s.speed_rounds, warmup=s.warmup, threads=s.threads,
                                cpu=timing_cpu() if s.pin else None, with_yardstick=is_ref,
                                inject=s.inject, reference_name=self.reference,
                                builds={variant: build} if build is not None else None,
                                pipeline=is_ref)
            runs.append(job.results[YARDSTICK if is_ref else variant])
            extra = {kind: job.results[f"{variant}@{kind}"] for kind in ("build", "pipeline")
                     if f"{variant}@{kind}" in job.results}
            if f"{variant}@build" in job.errors:
                self._build_state[variant] = (None, (
                    f"the stored build {build} no longer loads "
                    f"({job.errors[f'{variant}@build']})"))
            pairs.append(extra)

    def speed_pairs(self, variant: str, n: int = 1) -> list[dict[str, Any]]:
        """Per speed run of :meth:`speed_runs`, the worker's other pairs: ``"build"``,
        ``t(stored build) / t(variant now)``, and for the reference ``"pipeline"``,
        ``t(network) / t(end to end)`` (each a :class:`~navya.metrics.latency.SpeedupResult`;
        absent where not timed)."""
        self.speed_runs(variant, n)
        return self._cache[(Fig.SPEED_PAIRS, variant, 0)]

    # -- stored builds: the variant as it was when this machine's speed baseline was recorded

    def build_path(self, variant: str) -> Path | None:
        """Where this machine's stored build of ``variant`` lives (next to its speed
        baseline, under ``builds/<machine slug>/``; not committed: a model per variant)."""
        from navya.runtime import machine_slug

        if self.speed_dir is None:
            return None
        return self.speed_dir / "builds" / machine_slug(self.machine) / f"{variant}.pt"

    def stored_build(self, variant: str) -> tuple[Path | None, str | None]:
        """``(path, None)`` when this machine's speed baseline has a build A/B entry for
        ``variant`` whose stored build is present with the recorded SHA-256 and the same
        config; else ``(None, why)``."""
        from navya.budgets import read_speed_baseline
        from navya.models.checkpoint import sha256_file

        if variant in self._build_state:
            return self._build_state[variant]
        path = self.build_path(variant)
        entries = (None if path is None or self.speed_baseline_path is None
                   else read_speed_baseline(self.speed_baseline_path))
        entry = (entries or {}).get(f"{variant}@build")
        if path is None:
            state = (None, "no speed baselines folder")
        elif entry is None:
            state = (None, f"{self.speed_baseline_path} has no build A/B entry for {variant!r}")
        elif entry.config != self.config_dict(variant):
            state = (None, f"the stored build of {variant!r} was recorded for config "
                           f"{entry.config}, this run's is {self.config_dict(variant)}")
        elif not path.is_file():
            state = (None, f"its stored build {path} is missing (stored builds stay on the "
                           "machine that recorded them)")
        elif sha256_file(path) != entry.sha256:
            state = (None, f"its stored build {path} does not match the SHA-256 recorded in "
                           f"{self.speed_baseline_path}")
        else:
            state = (path, None)
        self._build_state[variant] = state
        return state

    def _store_build(self, variant: str) -> str:
        """Save the variant's model as this machine's stored build (atomically); its SHA-256."""
        import hashlib
        import io

        from navya._io import atomic_write_bytes

        path = self.build_path(variant)
        buf = io.BytesIO()
        torch.save(self.model(variant), buf)
        data = buf.getvalue()
        atomic_write_bytes(path, data)
        self._build_state[variant] = (path, None)
        return hashlib.sha256(data).hexdigest()

    def _speed_run_here(self, variant: str):
        """One speed run in this process (``isolated_speed=False``): unpinned, no injection."""
        from navya.metrics.latency import compare_latency
        from navya.metrics.speed import yardstick

        t, imgs = self.settings.threads, self.images
        ref = self.timed_model(self.reference, t)
        if variant == self.reference:
            other = yardstick()
        else:
            m = self.timed_model(variant, t)

            def other():
                return m(imgs)

        return compare_latency(lambda: ref(imgs), other, threads=t,
                               rounds=self.settings.speed_rounds, warmup=self.settings.warmup)

    def speedup(self, variant: str):
        """The variant's speed run with the median speedup over the reference
        (:class:`~navya.metrics.latency.SpeedupResult`; one run unless more were made)."""
        runs = sorted(self.speed_runs(variant, 1), key=lambda r: r.speedup)
        return runs[(len(runs) - 1) // 2]

    def latency(self, variant: str):
        """End-to-end latency at the timing thread count: from the variant's same-run
        comparison when there is one (the reference: from the first comparison)."""
        from navya.metrics.latency import measure_latency

        sp = self._speed_peek(variant)
        if sp is not None and variant != self.reference:
            return sp.b
        if variant == self.reference:
            first = next((self._speed_peek(v) for (f, v, _) in self._cache
                          if f is Fig.SPEEDUP and v != self.reference
                          and self._speed_peek(v) is not None), None)
            if first is not None:
                return first.a
        t, imgs = self.settings.threads, self.images

        def run():
            m = self.timed_model(variant, t)
            return measure_latency(lambda: m(imgs), threads=t, rounds=self.settings.rounds,
                                   warmup=self.settings.warmup)

        return self._cached(Fig.LATENCY, variant, run)

    def net_latency(self, variant: str):
        """Latency of the network alone (``model.core`` on preprocessed images)."""
        from navya.metrics.latency import measure_latency

        def run():
            t = self.settings.threads
            m = self.timed_model(variant, t)
            with torch.inference_mode():
                x = m.preprocess(self.images)
            return measure_latency(lambda: m.core(x), threads=t, rounds=self.settings.rounds,
                                   warmup=self.settings.warmup)

        return self._cached(Fig.NET_LATENCY, variant, run)

    def peak_mem_mb(self, variant: str) -> float:
        """memray peak of one end-to-end call at the timing thread count, MB.

        A deployment runtime (:class:`~navya.compress.deploy.RuntimeCore`) allocates its
        working memory (arenas, its own copy of the weights) when its session opens and reuses
        it on every call, so a warm call's peak would show only navya's pre- and
        post-processing (2.46 MB for every runtime variant, measured). For those, the peak is
        of the first call of a fresh session: session opening included, an upper bound.
        """
        from navya.compress.deploy import RuntimeCore
        from navya.metrics.memory import peak_alloc_mb
        from navya.runtime import num_threads, timing_copy

        def run():
            m, imgs = self.model(variant), self.images
            fresh = isinstance(getattr(m, "core", None), RuntimeCore)
            if fresh:
                m = timing_copy(m)  # its session opens inside the tracked call
            with num_threads(self.settings.threads), torch.inference_mode():
                return float(peak_alloc_mb(lambda: m(imgs), warmup=not fresh))

        return self._cached(Fig.PEAK_MEM, variant, lambda: self._reused_or(
            "memory", variant, run, lambda v: v["peak_mem_mb"]))

    def rss_mb(self, variant: str) -> float | None:
        """Peak RSS of a fresh subprocess running the variant (None when switched off)."""
        from navya.metrics.memory import subprocess_peak_rss_mb

        if not self.settings.rss:
            return None
        return self._cached(Fig.RSS, variant, lambda: self._reused_or(
            "memory", variant, lambda: float(subprocess_peak_rss_mb(
                self.model(variant), (self.images,), threads=self.settings.threads)),
            lambda v: v["rss_mb"]))

    # -- figures kept between runs (the cache) --

    #: Figures kept in the cache by group, and the navya modules (beyond the model's own)
    #: whose code measures them. ``stats`` are deterministic and kept as soon as they are
    #: computed; ``speed`` and ``memory`` are measurements, kept from a run in which every
    #: check of the variant passed (:meth:`save_measurements`).
    REUSE_GROUPS: dict[str, tuple[str, ...]] = {
        # navya.bench itself: part of the stats, speed and memory logic lives here (which
        # inputs, which rounds, which model is timed)
        "stats": ("navya.metrics.model_stats", "navya.bench"),
        "speed": ("navya.metrics.speed", "navya.metrics._speed_worker", "navya.metrics.latency",
                  "navya.runtime", "navya.bench"),
        "memory": ("navya.metrics.memory", "navya.metrics._rss_worker", "navya.runtime",
                   "navya.bench"),
    }
    #: Environment variables that change which kernels run or how many threads they use
    #: (part of a measurement's key): their prefixes.
    ENV_PREFIXES = ("OMP_", "MKL_", "KMP_", "DNNL_", "ONEDNN_", "OPENBLAS_", "GOMP_", "TORCH_",
                    "ATEN_", "ORT_", "OV_", "XNNPACK_", "MALLOC_", "LD_PRELOAD", "PYTORCH_")

    def _artifact_id(self, variant: str) -> str | None:
        """What identifies the variant's model: its artifact cache key, or the digest of a
        float model handed to the engine (the reference); None: unknown origin."""
        if variant not in self._ids:
            from navya.compress.cache import model_digest

            info = self.build_info(variant)
            self._ids[variant] = (info.key if info.key is not None else
                                  model_digest(self.model(variant))
                                  if info.source == "prebuilt" else None)
        return self._ids[variant]

    def measurement_key(self, group: str, variant: str) -> dict[str, Any] | None:
        """Everything a figure of ``group`` (:data:`REUSE_GROUPS`) of ``variant`` depends on,
        or None when it cannot be reused (no cache; ``remeasure`` for measurements; a model of
        unknown origin): the variant's artifact and, for speed, the reference's and the stored
        build's; the cost-figure images; the source of the measuring code and of every navya
        module the model's layers come from, followed through their imports; the library
        versions; the machine (CPU, ISA, cores, threads, quantized engine, kernel, C library);
        the thread and kernel environment variables; the measuring settings."""
        import platform

        if self.store is None or self.artifacts is None:
            return None
        if group != "stats" and self.remeasure:
            return None
        art = self._artifact_id(variant)
        if art is None:
            return None
        try:
            data = self.artifacts.data_fingerprint(self.workload.eval_dataset)
        except ValueError:
            return None
        models = [self.model(variant)]
        s = self.settings
        parts: dict[str, Any] = {
            "format": 1, "group": group, "artifact": art,
            "images": {"data": data, "batch_size": s.batch_size},
        }
        if group == "speed":
            ref = self._artifact_id(self.reference)
            if ref is None:
                return None
            models.append(self.model(self.reference))
            build, _ = self.stored_build(variant) if s.isolated_speed else (None, None)
            from navya.models.checkpoint import sha256_file

            parts.update(reference=ref, protocol=self.speed_protocol(), threads=s.threads,
                         inject=s.inject, stored_build=None if build is None
                         else sha256_file(build))
        elif group == "memory":
            parts.update(threads=s.threads, rss=s.rss)
        roots = [*self.REUSE_GROUPS[group],
                 *sorted({type(m).__module__ for model in models for m in model.modules()
                          if type(m).__module__.startswith("navya")})]
        parts.update(
            sources=self.artifacts._sources(tuple(dict.fromkeys(roots))),
            versions=self.artifacts.versions(),
            machine={**self.artifacts.machine, **self.machine,
                     "platform": platform.platform(), "libc": list(platform.libc_ver())},
            env={k: v for k, v in sorted(os.environ.items()) if k.startswith(self.ENV_PREFIXES)},
        )
        return parts

    def _reused_or(self, group: str, variant: str, compute: Callable[[], Any],
                   pick: Callable[[Any], Any], store: Callable[[Any], Any] | None = None):
        """``pick(entry)`` of the cache entry of ``(group, variant)`` when there is one, else
        ``compute()``; with ``store``, the computed value is kept at once (deterministic
        figures)."""
        from navya._cache import digest

        parts = self.measurement_key(group, variant)
        if parts is not None and not self.rebuilds(variant):
            entry = self.store.get("figures", digest(parts))
            if entry is not None:
                try:
                    value = pick(entry.value)
                except (KeyError, TypeError):
                    value = None
                if value is not None or group == "memory":
                    self.sources[(group, variant)] = "cache" if group == "stats" else "reused"
                    return value
        value = compute()
        self.sources[(group, variant)] = "now"
        if store is not None and parts is not None:
            self._put_figures(parts, variant, store(value))
        return value

    def _put_figures(self, parts: dict[str, Any], variant: str, value: Any) -> None:
        from navya._cache import digest

        try:
            self.store.put("figures", digest(parts), value,
                           {"variant": variant, "measured_at": utc_now(),
                            "git_commit": self._git_commit(), "parts": parts})
        except OSError as exc:
            import warnings

            from navya._cache import CacheWarning

            warnings.warn(f"could not write the figure cache: {exc}", CacheWarning, stacklevel=3)

    def save_measurements(self, variant: str) -> list[str]:
        """Keep this run's fresh speed and memory figures of ``variant`` in the cache, for a
        later run on the same inputs (:meth:`measurement_key`), when every check of the
        variant passed: a failing figure is always measured again. Returns the groups kept."""
        if self.store is None or variant in self.errors or any(
                v.failed for v in self.verdicts.get(variant, {}).values()):
            return []
        kept = []
        runs, pairs = self.peek(Fig.SPEEDUP, variant), self.peek(Fig.SPEED_PAIRS, variant)
        if runs and self.sources.get(("speed", variant)) == "now":
            parts = self.measurement_key("speed", variant)
            if parts is not None:
                self._put_figures(parts, variant, {"runs": list(runs), "pairs": list(pairs)})
                kept.append("speed")
        peak, rss = self.peek(Fig.PEAK_MEM, variant), self.peek(Fig.RSS, variant)
        if (peak is not None and self.sources.get(("memory", variant)) == "now"
                and (rss is not None or not self.settings.rss)):
            parts = self.measurement_key("memory", variant)
            if parts is not None:
                self._put_figures(parts, variant, {"peak_mem_mb": peak, "rss_mb": rss})
                kept.append("memory")
        return kept

    # -- budget figures --

    #: budget key -> the engine method that measures it
    BUDGET_FIGURES: dict[str, str] = {
        "max_map_drop_points": "map_drop_points",
        "min_size_ratio": "size_ratio",
        "min_zip_size_ratio": "zip_size_ratio",
        "min_speedup": "speedup_value",
        "max_peak_mem_mb": "peak_mem_mb",
        "min_macs_reduction": "macs_reduction",
    }

    def speedup_value(self, variant: str) -> float:
        return float(self.speedup(variant).speedup)

    def budget_figure(self, variant: str, key: str) -> float:
        """The measured value that budget ``key`` limits."""
        if key not in self.BUDGET_FIGURES:
            raise KeyError(f"unknown budget key {key!r}; known: {', '.join(BUDGET_KEYS)}")
        return float(getattr(self, self.BUDGET_FIGURES[key])(variant))

    # -- rows --

    def measurement(self, variant: str) -> Measurement:
        """The complete :class:`Measurement` of a variant (computes what is missing)."""
        ev, st = self.evaluation(variant), self.stats(variant)
        lat, net = self.latency(variant), self.net_latency(variant)
        peak, rss = self.peak_mem_mb(variant), self.rss_mb(variant)
        model = self.model(variant)
        ap = ev.ap["all-point"]
        s = self.settings
        return Measurement(
            name=variant,
            map=float(ev.map("all-point")),
            map_voc07=float(ev.map("voc07")),
            eval_images=self.workload.eval_count,
            macs=int(st["macs"]),
            effective_macs=int(st["effective_macs"]),
            params=int(st["params"]),
            nonzero_params=int(st["nonzero_params"]),
            sparsity=float(st["sparsity"]),
            prunable_sparsity=float(st["prunable_sparsity"]),
            size_mb=float(st["size_mb"]),
            size_zip_mb=float(st["size_zip_mb"]),
            peak_mem_mb=peak,
            rss_mb=rss,
            latency_ms_median=lat.median_ms,
            latency_ms_mean=lat.mean_ms,
            latency_ms_std=lat.std_ms,
            latency_ms_p95=lat.p95_ms,
            latency_ms_min=lat.min_ms,
            fps=s.batch_size * 1000.0 / lat.median_ms if lat.median_ms > 0 else math.inf,
            net_latency_ms_median=net.median_ms,
            latency_rounds=lat.rounds,
            threads=s.threads,
            batch_size=s.batch_size,
            quantized_engine=str(getattr(model, "quantized_engine", None)
                                 or torch.backends.quantized.engine),
            torch_version=str(torch.__version__),
            cpu_model=cpu_model(),
            git_commit=self._git_commit(),
            timestamp=utc_now(),
            ap_per_class={c: float(ap[c]) for c in self.workload.class_names},
        )

    def _git_commit(self) -> str | None:
        if not hasattr(self, "_commit"):
            self._commit = git_commit()
        return self._commit

    def row(self, variant: str, *, complete: bool = False) -> dict[str, Any]:
        """One row of :func:`row_columns`: with ``complete``, every figure (computed now if
        needed); otherwise what this run has computed so far (None elsewhere)."""
        names = self.workload.class_names
        if complete:
            out = self.measurement(variant).to_row()
        else:
            out = dict.fromkeys(row_columns(names))
            out.update(name=variant, threads=self.settings.threads,
                       batch_size=self.settings.batch_size, torch_version=torch.__version__,
                       cpu_model=cpu_model(), latency_rounds=self.settings.rounds,
                       eval_images=self.workload.eval_count)
            ev = self.peek(Fig.EVALUATION, variant)
            if ev is not None:
                ap = ev.ap["all-point"]
                out.update(map=float(ev.map("all-point")), map_voc07=float(ev.map("voc07")),
                           **{AP_PREFIX + c: float(ap[c]) for c in names})
            st = self.peek(Fig.STATS, variant)
            if st is not None:
                out.update({k: st[k] for k in ("macs", "effective_macs", "params",
                                               "nonzero_params", "sparsity",
                                               "prunable_sparsity", "size_mb", "size_zip_mb")})
            lat = self._speed_peek(variant)
            lat = (lat.b if lat is not None and variant != self.reference
                   else self.peek(Fig.LATENCY, variant))
            if lat is None and variant == self.reference:
                lat = next((self._speed_peek(v).a for (f, v, _) in self._cache
                            if f is Fig.SPEEDUP and v != self.reference
                            and self._speed_peek(v) is not None), None)
            if lat is not None:
                out.update(latency_ms_median=lat.median_ms, latency_ms_mean=lat.mean_ms,
                           latency_ms_std=lat.std_ms, latency_ms_p95=lat.p95_ms,
                           latency_ms_min=lat.min_ms, latency_rounds=lat.rounds,
                           fps=self.settings.batch_size * 1000.0 / lat.median_ms)
            net = self.peek(Fig.NET_LATENCY, variant)
            if net is not None:
                out["net_latency_ms_median"] = net.median_ms
            out["peak_mem_mb"] = self.peek(Fig.PEAK_MEM, variant)
            out["rss_mb"] = self.peek(Fig.RSS, variant)
            m = self.peek(Fig.MODEL, variant)
            if m is not None:
                out["quantized_engine"] = str(getattr(m, "quantized_engine", None)
                                              or torch.backends.quantized.engine)
        out.update(self._same_run(variant))
        return out

    def _same_run(self, variant: str) -> dict[str, Any]:
        out: dict[str, Any] = dict.fromkeys(SAME_RUN_FIELDS)
        ref = self.reference
        ev, ref_ev = self.peek(Fig.EVALUATION, variant), self.peek(Fig.EVALUATION, ref)
        if ev is not None and ref_ev is not None:
            out["map_drop_points"] = (ref_ev.map("all-point") - ev.map("all-point")) * 100.0
            if self.workload.intervals:
                ci, drop_ci = self.map_interval(variant), self.map_drop_interval(variant)
                if ci is not None:
                    out.update(map_ci_low=ci[0], map_ci_high=ci[1])
                if drop_ci is not None and variant != ref:
                    out.update(map_drop_points_ci_low=drop_ci[0],
                               map_drop_points_ci_high=drop_ci[1])
        st, ref_st = self.peek(Fig.STATS, variant), self.peek(Fig.STATS, ref)
        if st is not None and ref_st is not None:
            out["size_ratio"] = ref_st["size_bytes"] / st["size_bytes"]
            out["zip_size_ratio"] = ref_st["size_zip_bytes"] / st["size_zip_bytes"]
            out["macs_reduction"] = 1 - st["macs"] / ref_st["macs"]
        sp = self._speed_peek(variant)
        if sp is not None and variant != ref:
            out.update(speedup=sp.speedup, speedup_ci_low=sp.ci_low, speedup_ci_high=sp.ci_high)
        out["transform_s"] = self.peek(Fig.TRANSFORM_S, variant)
        info = self.peek(Fig.BUILD, variant)
        out["artifact"] = None if info is None else info.source
        out["evaluated"] = self.peek(Fig.EVAL_SOURCE, variant)
        out["measured"] = self.sources.get(("speed", variant))
        out["status"] = self.status(variant)
        return out

    def rows(self, variants: Sequence[str] | None = None, *,
             complete: bool = False) -> list[dict[str, Any]]:
        """Rows of ``variants`` (default: every variant this run measured, in order)."""
        return [self.row(v, complete=complete) for v in (variants or self.order)]

    def class_ap(self, variant: str) -> dict[str, float | None] | None:
        """AP per class (None for a class without ground truth), if evaluated."""
        ev = self.peek(Fig.EVALUATION, variant)
        if ev is None:
            return None
        return {c: (None if math.isnan(a) else float(a)) for c, a in ev.ap["all-point"].items()}

    # -- verdicts --

    def _record(self, verdict: Verdict) -> Verdict:
        self.verdicts.setdefault(verdict.variant, {})[verdict.key] = verdict
        return verdict

    def check_budget(self, variant: str, key: str, *, confirm: int = 1) -> Verdict:
        """Compare the variant's figure with its budget ``key``; measures what it needs.

        A speedup below its floor is judged on the median of ``confirm`` fresh speed runs
        (the first included), as the per-machine speed check is: one run in a noisy spell of
        the host is not a slower variant (measured: prune-l1-unstructured-10, about 1.00x,
        gave 0.884 against its floor 0.9 in one run of a busy spell, while its regression
        check's median of five passed)."""
        if key not in BUDGET_KEYS:
            raise KeyError(f"unknown budget key {key!r}; known: {', '.join(BUDGET_KEYS)}")
        if variant == self.reference and key != "max_peak_mem_mb":
            return self._record(Verdict(
                variant, key, Outcome.NOT_APPLICABLE,
                f"{variant} is the reference that {key} is measured against"))
        cls = self.cpu_class(variant)
        limit, source = ((None, "no budget") if self.budgets is None
                         else self.budgets.lookup(variant, key, cls))
        try:
            measured = self.budget_figure(variant, key)
        except Exception as exc:
            self._record(Verdict(variant, key, Outcome.ERROR,
                                 f"{key} of {variant!r} could not be measured: {exc}"))
            raise
        if source == "no budget for class":
            return self._record(Verdict(
                variant, key, Outcome.NO_BUDGET,
                f"NO BUDGET FOR CLASS {cls}: variant {variant!r} has {key} only for CPU "
                f"class(es) {', '.join(self.budgets.classes_with(variant, key))} in "
                f"{self.budgets.path}; measured {measured:.4g} on this {cls} machine (add "
                f"[classes.{cls}.variants.{variant}] {key} = ... to guard it here)",
                measured=measured))
        if limit is None:
            where = self.budgets.path if self.budgets is not None else "the budgets"
            return self._record(Verdict(
                variant, key, Outcome.NO_BUDGET,
                f"NO BUDGET: variant {variant!r} has no {key} in {where}; measured "
                f"{measured:.4g} (add it to guard this figure)", measured=measured))
        check = BudgetCheck(variant, key, measured, limit)
        note = ""
        if key == "min_speedup" and not check.passed and confirm > 1:
            first = measured
            runs = self.speed_runs(variant, confirm)
            measured = self.budget_figure(variant, key)
            check = BudgetCheck(variant, key, measured, limit)
            note = (f" (median of {len(runs)} fresh runs, the first {first:.4g}: "
                    + ", ".join(f"{r.speedup:.4g}" for r in runs) + ")")
        if key == "max_map_drop_points" and self.workload.intervals:
            ci = self.map_drop_interval(variant)
            if ci is not None:
                note += (f" ({self.INTERVAL_CONFIDENCE:.0%} bootstrap interval over "
                         f"{self.workload.eval_count} images: [{ci[0]:+.2f}, {ci[1]:+.2f}] "
                         "points)")
        if source == "class":
            note += f" (the budget of CPU class {cls})"
        return self._record(Verdict(variant, key, Outcome.PASS if check.passed else Outcome.FAIL,
                                    check.message() + note, measured=measured, limit=limit))

    def deterministic_figures(self, variant: str) -> dict[str, Any]:
        """The figures a baseline holds: mAP (both), AP per class, size, MACs, sparsity,
        parameters."""
        ev, s = self.evaluation(variant), self.stats(variant)
        ap = {c: (None if math.isnan(v) else float(v)) for c, v in ev.ap["all-point"].items()}
        return {"map": float(ev.map("all-point")), "map_voc07": float(ev.map("voc07")),
                "ap": ap,
                **{k: s[k] for k in ("size_bytes", "size_zip_bytes", "macs", "effective_macs",
                                     "params", "nonzero_params", "sparsity",
                                     "prunable_sparsity")}}

    def provenance(self, variant: str) -> dict[str, Any]:
        """What the variant's deterministic figures depend on (the workload's provenance and
        the variant's config)."""
        out = {**self.workload.provenance, "config": self.config_dict(variant)}
        if self.kernel_dependent(variant):
            out["cpu_class"] = self.cpu_class(variant)
            # informational, like "cpu": a class reached by restricting a higher one
            # (navya.cpuclass) gives the class's figures (README, "CPU classes")
            out["kernels"] = ("native" if out["cpu_class"] == self.machine["cpu_class"]
                              else "restricted")
        out["cpu"] = {"model": self.machine["cpu_model"], "class": self.machine["cpu_class"]}
        core = getattr(self.peek(Fig.MODEL, variant), "core", None)
        runtime = getattr(core, "runtime", "")
        if runtime:  # informational, like torch_version: a runtime's version moves its figures
            from navya.compress.deploy import runtime_versions

            out["runtime_versions"] = runtime_versions()
        return out

    def check_baseline(self, variant: str, *, update: bool = False) -> Verdict:
        """Compare the deterministic figures with the committed baseline (or rewrite it)."""
        if self.baselines_dir is None:
            return self._record(Verdict(variant, "baseline", Outcome.NO_BASELINE,
                                        "NO BASELINE: no baselines folder was given"))
        cls = self.cpu_class(variant) if self.kernel_dependent(variant) else None
        path = baseline_path(self.baselines_dir, variant, cls)
        figures = self.deterministic_figures(variant)
        provenance = self.provenance(variant)
        if update:
            self.pending_baselines[variant] = (path, figures, provenance)
            return self._record(Verdict(
                variant, "baseline", Outcome.UPDATED,
                f"baseline of {variant!r} measured; {path} is rewritten with the others at "
                "the end of the run, if the run is complete and comparable"))
        baseline = read_baseline(path, variant)
        if baseline is None and cls is not None:
            others = class_baselines(self.baselines_dir, variant)
            if others:
                return self._record(Verdict(
                    variant, "baseline", Outcome.NOT_COMPARABLE,
                    f"BASELINE NOT COMPARABLE (recorded on {', '.join(others)}, this machine "
                    f"is {cls}): the figures of {variant!r} depend on the CPU's kernels and "
                    f"are compared only within a class; record this class's with `pytest "
                    f"benchmarks/ --navya-update-baselines` on a {cls} machine (writes "
                    f"{path}; other classes' files are left alone)"))
        if baseline is None:
            return self._record(Verdict(
                variant, "baseline", Outcome.NO_BASELINE,
                f"NO BASELINE for variant {variant!r} ({path}): record one with "
                "--navya-update-baselines"))
        mismatch = provenance_mismatch(baseline, provenance)
        if mismatch:
            return self._record(Verdict(
                variant, "baseline", Outcome.NOT_COMPARABLE,
                f"BASELINE NOT COMPARABLE for {variant!r}: {'; '.join(mismatch)}; refresh it "
                "explicitly with --navya-update-baselines"))
        trains = variant not in self._models and "trains" in self._tags(variant)
        tolerances = (self.budgets.tolerances_for(trains) if self.budgets is not None
                      else DEFAULT_TOLERANCES)
        deviations = compare_baseline(variant, baseline, figures, tolerances)
        if deviations:
            return self._record(Verdict(
                variant, "baseline", Outcome.FAIL,
                f"deterministic figures moved from the baseline {path}:\n"
                + "\n".join(d.message() for d in deviations)))
        return self._record(Verdict(variant, "baseline", Outcome.PASS,
                                    f"{variant!r} matches its baseline {path}"))

    #: provenance fields a refresh must share with the baselines it replaces
    REFRESH_FIELDS = ("checkpoint_sha256", "data_fingerprint", "eval_images", "split")

    def refresh_refusals(self, expected: Sequence[str], *, incomplete: str | None = None,
                         default_eval_images: int | None = None) -> dict[str, str]:
        """Why the pending refresh must not be written, by override name: ``incomplete``
        (a variant of ``expected`` not measured, or the caller's reason; a variant NOT
        APPLICABLE on this CPU class has nothing to record here and does not count), and each
        :data:`REFRESH_FIELDS` field in which the run differs from the baselines on disk
        (without any: ``eval_images`` when it is not ``default_eval_images``)."""
        from navya.catalogue import get_variant

        out: dict[str, str] = {}
        missing = [v for v in expected if v not in self.pending_baselines
                   and (v in self._models
                        or get_variant(v).not_applicable(self.cpu_class(v)) is None)]
        if missing or incomplete:
            out["incomplete"] = "; ".join(
                ([f"not measured in this run: {', '.join(missing)}"] if missing else [])
                + ([incomplete] if incomplete else []))
        if not self.pending_baselines or self.baselines_dir is None:
            return out
        on_disk = {}
        for f in sorted(self.baselines_dir.glob("*.json")):
            try:
                on_disk[f.stem] = read_baseline(f)["provenance"]
            except Exception:  # a broken file is replaced by the refresh
                continue
        _path, _figures, run = next(iter(self.pending_baselines.values()))
        for key in self.REFRESH_FIELDS:
            old = sorted({json.dumps(p.get(key), sort_keys=True) for p in on_disk.values()})
            new = json.dumps(run.get(key), sort_keys=True)
            if old and old != [new]:
                out[key] = (f"this run's {key} is {new}, the baselines in "
                            f"{self.baselines_dir} have {', '.join(old)}")
            elif (not old and key == "eval_images" and default_eval_images is not None
                  and run.get(key) != min(default_eval_images, self._split_size())):
                out[key] = (f"this run evaluated {run.get(key)} images, not the default "
                            f"{default_eval_images}")
        return out

    def _split_size(self) -> float:
        """How many images the evaluation split lists (a split smaller than the default
        evaluation count is evaluated whole); unknown: infinite."""
        data = self.workload.eval_dataset
        size = getattr(getattr(data, "dataset", data), "split_size", None)
        return math.inf if size is None else size

    def commit_baselines(self) -> list[Path]:
        """Write every pending baseline (each atomically, all at the end of the run)."""
        written = []
        for variant, (path, figures, provenance) in self.pending_baselines.items():
            write_baseline(path, variant, figures, provenance)
            written.append(path)
        self.pending_baselines.clear()
        return written

    # -- speed against this machine's baseline --

    @property
    def machine(self) -> dict[str, Any]:
        """This machine's key (:func:`navya.runtime.machine_key`) for the timing threads."""
        from navya.runtime import machine_key

        if not hasattr(self, "_machine"):
            self._machine = machine_key(self.settings.threads)
        return self._machine

    @property
    def speed_baseline_path(self) -> Path | None:
        from navya.runtime import machine_slug

        if self.speed_dir is None:
            return None
        return self.speed_dir / f"{machine_slug(self.machine)}.json"

    def speed_protocol(self) -> dict[str, Any]:
        """What a speed baseline was recorded with; a baseline of another protocol is not
        comparable."""
        s = self.settings
        return {"rounds": s.speed_rounds, "warmup": s.warmup, "batch_size": s.batch_size,
                "isolated": s.isolated_speed, "pinned": s.pin,
                "statistic": "median(t_ref)/median(t_variant) of ABBA pairs, one fresh "
                             "worker process per run"}

    def speed_figure_name(self, variant: str) -> str:
        return (f"t({variant}) / t(yardstick)" if variant == self.reference
                else f"speedup of {variant}")

    def speed_figures(self, variant: str) -> list[tuple[str, str]]:
        """The speed figures of ``variant`` a speed baseline records, as ``(entry name,
        label)``: its speedup (the reference: its cost against the yardstick), its A/B against
        its stored build and, for the reference, its network's share of the end-to-end call."""
        out = [(variant, self.speed_figure_name(variant)),
               (f"{variant}@build", f"t(stored build) / t({variant} now)")]
        if variant == self.reference:
            out.append((f"{variant}@pipeline", f"t({variant} network) / t({variant} end to end)"))
        return out

    def figure_values(self, variant: str, n: int) -> dict[str, list[float]]:
        """Each speed figure of ``variant`` over its runs, at least ``n`` of them (a figure a
        run did not time is absent). Every run the engine holds is judged, as the
        ``min_speedup`` budget judges their median (issue 28, bug 8: with runs reused from
        the cache, the baseline judged the first ``n`` and the budget all of them)."""
        runs = self.speed_runs(variant, n)
        pairs = self.speed_pairs(variant, n)
        out = {variant: [r.speedup for r in runs]}
        for kind in ("build", "pipeline"):
            if all(kind in p for p in pairs):
                out[f"{variant}@{kind}"] = [p[kind].speedup for p in pairs]
        return out

    def check_speed_baseline(self, variant: str, *, family_size: int = 1,
                             record: int = 0, confirm: int = SPEED_CONFIRM_RUNS) -> Verdict:
        """Compare the variant's speed figures (:meth:`speed_figures`) with this machine's
        recorded runs; with ``record``, store the variant's build, make that many fresh runs
        and record them instead.

        The speedup cancels whatever slows the reference as much as the variant, and it drifts
        with the host (int8 and fp32 kernels respond differently to a busy memory system); the
        A/B against the stored build times two models of the same kind side by side, so its
        spread is a few times smaller and it catches a variant that became slower. The
        reference's network-versus-end-to-end pair catches slower pre- or post-processing.

        Each figure's tolerance comes from its recorded spread
        (:func:`navya.budgets.speed_tolerance`, ``family_size`` figures compared in the run).
        When a first run is outside a tolerance, more fresh runs (``confirm`` in all) are made
        and every figure is judged on their median: one slow process, or a noisy spell of the
        host, is not a regression.
        """
        from navya.budgets import (
            SpeedDecision,
            SpeedEntry,
            read_speed_baseline,
            read_speed_protocol,
            speed_tolerance,
            write_speed_entry,
        )
        from navya.runtime import machine_slug

        key = "speed_baseline"
        path = self.speed_baseline_path
        slug = machine_slug(self.machine)
        is_ref = variant == self.reference
        config = self.config_dict(variant)
        hint = (f"record one on this machine with `pytest benchmarks/ --navya-record-speed 10` "
                f"(writes {path})")
        if record:
            if path is None:
                return self._record(Verdict(variant, key, Outcome.NO_BASELINE,
                                            "no baselines folder to record speed into"))
            sha = self._store_build(variant)
            # every recorded run is measured now (never reused: issue 28, bug 5) and times the
            # stored build
            self.fresh_speed_runs(variant, record)
            values = self.figure_values(variant, record)
            ref_ms = tuple(r.a.median_ms for r in self.speed_runs(variant, record)[:record])
            lines = []
            for name, label in self.speed_figures(variant):
                if name not in values:  # in-process runs time no stored build
                    continue
                entry = SpeedEntry(tuple(values[name]), name != variant or not is_ref, config,
                                   ref_ms if name == variant else (),
                                   sha if name.endswith("@build") else None)
                write_speed_entry(path, name, entry, self.machine, self.speed_protocol(),
                                  utc_now())
                lines.append(f"{label}: median {entry.center:.3f}, spread "
                             f"{entry.spread_rel:.2%}")
            return self._record(Verdict(
                variant, key, Outcome.UPDATED,
                f"recorded {record} runs for machine {slug} ({path}; stored build "
                f"{self.build_path(variant)}): " + "; ".join(lines)))
        entries = None if path is None else read_speed_baseline(path)
        if entries is None:
            return self._record(Verdict(
                variant, key, Outcome.NO_BASELINE,
                f"NO SPEED BASELINE for machine {slug} ({self.machine['cpu_model']}, "
                f"{self.machine['cores']} cores): the speed of {variant!r} is checked against "
                f"its budget floor of this CPU class only, if it has one; {hint}"))
        protocol = read_speed_protocol(path)
        if protocol != self.speed_protocol():
            return self._record(Verdict(
                variant, key, Outcome.NOT_COMPARABLE,
                f"SPEED BASELINE NOT COMPARABLE for {variant!r}: {path} was recorded with "
                f"protocol {protocol}, this run uses {self.speed_protocol()}; {hint}"))
        entry = entries.get(variant)
        if entry is None:
            return self._record(Verdict(
                variant, key, Outcome.NO_BASELINE,
                f"NO SPEED BASELINE for {variant!r} on machine {slug} ({path} has "
                f"{', '.join(e for e in entries if '@' not in e) or 'no entries'}); {hint}"))
        if entry.config != config:
            return self._record(Verdict(
                variant, key, Outcome.NOT_COMPARABLE,
                f"SPEED BASELINE NOT COMPARABLE for {variant!r}: recorded for config "
                f"{entry.config}, this run's is {config}; {hint}"))

        def decide(n: int) -> dict[str, SpeedDecision]:
            values = self.figure_values(variant, n)
            return {name: SpeedDecision(label, tuple(values[name]), entries[name],
                                        speed_tolerance(entries[name].spread_rel,
                                                        len(entries[name].values), family_size))
                    for name, label in self.speed_figures(variant)
                    if name in entries and name in values}

        judged = decide(1)
        if not all(d.passed for d in judged.values()) and confirm > 1:
            judged = decide(confirm)
        decisions = list(judged.values())
        notes = []
        build, why = self.stored_build(variant)
        if f"{variant}@build" not in judged:
            notes.append(f"NO STORED BUILD for {variant!r} on machine {slug}: {why or 'not timed'}; "
                         f"the A/B against it is skipped (record one with "
                         f"`pytest benchmarks/ --navya-record-speed 10`)")
        if self.sources.get(("speed", variant)) == "reused":
            notes.append(f"speed runs REUSED, measured {self.reused_from.get(variant)}: "
                         "nothing they depend on changed (artifact, reference, stored build, "
                         "code, libraries, machine, settings); --navya-remeasure times afresh")
        failed = [d for d in decisions if not d.passed]
        first = decisions[0]
        return self._record(Verdict(
            variant, key, Outcome.FAIL if failed else Outcome.PASS,
            "\n".join([d.message() for d in decisions] + notes),
            measured=(failed or [first])[0].measured, limit=(failed or [first])[0].threshold))

    def status(self, variant: str) -> str:
        """``ERROR: <what>`` (a figure could not be measured or a test crashed; any failures
        follow) / ``FAIL: <keys>`` / ``PASS`` / ``reference`` / ``NO BUDGET`` /
        ``not checked``, from the verdicts recorded so far."""
        verdicts = self.verdicts.get(variant, {})
        failed = [k for k, v in verdicts.items() if v.outcome is Outcome.FAIL]
        errored = [k for k, v in verdicts.items() if v.outcome is Outcome.ERROR]
        if variant in self.errors or errored:
            what = self.errors.get(variant) or ", ".join(errored)
            return "ERROR: " + what + (f"; FAIL: {','.join(failed)}" if failed else "")
        if failed:
            return "FAIL: " + ",".join(failed)
        if any(v.outcome is Outcome.PASS and v.limit is not None for v in verdicts.values()):
            return "PASS"
        if variant == self.reference:
            return "reference"
        return "NO BUDGET" if verdicts else "not checked"


def measure(model: nn.Module, dataset: Dataset, *, name: str, threads: int = 1,
            batch_size: int = 1, eval_images: int | None = None, latency_rounds: int = 30,
            warmup: int = 5, rss: bool = True, progress: bool = False) -> Measurement:
    """The complete :class:`Measurement` of one model on ``dataset`` (a one-model run).

    ``dataset`` yields ``(image [3, H, W] in [0, 1], target)`` and has ``class_names``; the
    accuracy is scored on its first ``eval_images`` items (all when None), the cost figures
    use its first ``batch_size`` images, timed at ``threads`` threads. The model is used in
    eval mode and not changed (its training flag is restored).

    Raises:
        ValueError: invalid settings, or fewer than ``batch_size`` images.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if eval_images is not None and (isinstance(eval_images, bool)
                                    or not isinstance(eval_images, int) or eval_images < 1):
        raise ValueError(f"eval_images must be a positive integer or None, got {eval_images!r}")
    settings = BenchSettings(threads=threads, rounds=latency_rounds, warmup=warmup,
                             batch_size=batch_size, rss=rss, progress=progress)
    if len(dataset) < batch_size:
        raise ValueError(f"the data set has {len(dataset)} images, fewer than batch_size "
                         f"{batch_size}")
    was_training = model.training
    try:
        bench = Bench(Workload(model, dataset, eval_images=eval_images), settings,
                      reference=name)
        return bench.measurement(name)
    finally:
        model.train(was_training)
