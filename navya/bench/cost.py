"""Cost figures: parameters, sparsity, size, MACs, latency and memory of a variant."""

from __future__ import annotations

from typing import Any

import torch

from navya.bench.core import Fig
from navya.bench.settings import BenchError


class Costs:
    """Size, MACs, latency and memory of a variant on the first ``batch_size``
    evaluation images."""

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
        post-processing, the same for every runtime (measured: docs/results/code_decisions/).
        For those, the peak is
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

    def adopt_rss(self, variant: str, mb: float) -> None:
        """Use a peak RSS a parallel build worker measured in this run (a fresh process, as
        :meth:`rss_mb` runs) instead of measuring it again."""
        if self.settings.rss and not self.has(Fig.RSS, variant):
            self._cache[(Fig.RSS, variant, 0)] = float(mb)

    def rss_mb(self, variant: str) -> float | None:
        """Peak RSS of a fresh subprocess running the variant (None when switched off)."""
        from navya.metrics.memory import subprocess_peak_rss_mb

        if not self.settings.rss:
            return None
        return self._cached(Fig.RSS, variant, lambda: self._reused_or(
            "memory", variant, lambda: float(subprocess_peak_rss_mb(
                self.model(variant), (self.images,), threads=self.settings.threads)),
            lambda v: v["rss_mb"]))
