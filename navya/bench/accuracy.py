"""Accuracy: the VOC evaluation of a variant (cached by what it depends on), mAP, its drop, and
their bootstrap intervals."""

from __future__ import annotations

import math
import time
from typing import Any

from navya.bench.core import Fig
from navya.metrics.measure import utc_now


class Accuracy:
    """VOC AP per class and mAP on the workload's evaluation images, with all cores."""

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

            def stored():
                entry = None if self.rebuilds(variant) else self.store.get("evaluations", key)
                if entry is not None:
                    # evaluated in this run by a parallel build worker: "now", not "cache"
                    self._cache[(Fig.EVAL_SOURCE, variant, 0)] = (
                        "now" if variant in self.worker_evals else "cache")
                return entry

            entry = stored()
            if entry is not None:
                return entry.value
            with self.store.lock("evaluations", key):  # one process evaluates it once
                entry = stored()  # another process may have evaluated it meanwhile
                if entry is not None:
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

                    warnings.warn(f"could not write the evaluation cache: {exc}",
                                  CacheWarning, stacklevel=2)
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
        from navya.compress.cache import model_digest, model_modules

        if self.store is None or self.artifacts is None:
            return None
        model, info = self.model(variant), self.build_info(variant)
        if info.key is not None:
            artifact = info.key
        elif info.source == "prebuilt":
            artifact = model_digest(model)
        else:
            return None
        return self._evaluation_parts(artifact, model_modules(model))

    def cached_evaluation_key(self, artifact: str) -> dict[str, Any] | None:
        """:meth:`evaluation_key` of the model in artifact cache entry ``artifact``, without
        loading it (the navya modules of its layers are in the entry's header); None when the
        entry is absent or older than that header field."""
        if self.store is None or self.artifacts is None:
            return None
        from navya.compress.cache import KIND

        meta = self.store.meta(KIND, artifact)
        modules = None if meta is None else meta.get("modules")
        return None if modules is None else self._evaluation_parts(artifact, modules)

    def _evaluation_parts(self, artifact: str, modules: list[str]) -> dict[str, Any] | None:
        from navya.runtime import usable_cpus

        data = self.workload.eval_dataset
        try:
            data_fp = self.artifacts.data_fingerprint(data)
        except ValueError:
            return None
        inner = getattr(data, "dataset", None)
        roots = ["navya.metrics.evaluate", type(data).__module__,
                 *([type(inner).__module__] if inner is not None else []), *sorted(modules)]
        return {"format": 1, "artifact": artifact, "data": data_fp,
                **({"predictions": True} if self.workload.intervals else {}),
                "eval_images": self.workload.eval_count,
                "class_names": list(self.workload.class_names),
                "batch_size": self.settings.eval_batch_size,
                "threads": usable_cpus(),
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

    def class_ap(self, variant: str) -> dict[str, float | None] | None:
        """AP per class (None for a class without ground truth), if evaluated."""
        ev = self.peek(Fig.EVALUATION, variant)
        if ev is None:
            return None
        return {c: (None if math.isnan(a) else float(a)) for c, a in ev.ap["all-point"].items()}
