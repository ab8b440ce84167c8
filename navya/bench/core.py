"""The engine's state: the per-run memo of figures, the profile, the variants' identity and CPU
class."""

from __future__ import annotations

import contextlib
import enum
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from navya.bench.settings import REFERENCE, BenchSettings, Workload
from navya.budgets import Budgets
from navya.metrics.measure import git_commit
from navya.verdicts import Verdict


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


class BenchCore:
    """The state every part of :class:`~navya.bench.Bench` shares: the workload, the settings,
    the memo of computed figures (keyed by :class:`Fig`, variant and thread count), the profile
    of where the run's time went, and what a variant is (its config, tags, CPU class)."""

    def __init__(self, workload: Workload, settings: BenchSettings | None = None, *,
                 budgets: Budgets | None = None, baselines_dir: str | os.PathLike | None = None,
                 models: Mapping[str, nn.Module] | None = None, reference: str = REFERENCE,
                 speed_dir: str | os.PathLike | None = None, cache: Any = None,
                 rebuild: bool | Sequence[str] = False, remeasure: bool = False,
                 user_model: str | None = None):
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
        #: why the reference is not the model the budgets were written for (None: it is); a
        #: user's model is held only to the budgets relative to its own reference
        self.user_model = user_model
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
        #: variants a parallel build worker built (its BuildInfo) or evaluated in this run,
        #: and the seconds it spent on each (:mod:`navya.bench.parallel`)
        self.worker_builds: dict[str, Any] = {}
        self.worker_evals: set[str] = set()
        self.worker_seconds: dict[str, float] = {}

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

    def runtime(self, variant: str) -> str:
        """What runs the variant's network: ``torch`` (eager; a prebuilt model too), or a
        deployment runtime's name (:attr:`navya.catalogue.Variant.runtime`)."""
        if variant in self._models:
            return "torch"
        from navya.catalogue import get_variant

        return get_variant(variant).runtime

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

    @property
    def machine(self) -> dict[str, Any]:
        """This machine's key (:func:`navya.runtime.machine_key`) for the timing threads."""
        from navya.runtime import machine_key

        if not hasattr(self, "_machine"):
            self._machine = machine_key(self.settings.threads)
        return self._machine

    def _git_commit(self) -> str | None:
        if not hasattr(self, "_commit"):
            self._commit = git_commit()
        return self._commit
