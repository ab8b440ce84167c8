"""Figures kept between runs: the key of a measurement (everything it depends on, the source of the
code that measures it included) and the reuse of cached figures."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from navya.bench.core import Fig
from navya.metrics.measure import utc_now


class Memo:
    """Cross-run reuse of stats, speed and memory figures."""

    #: Figures kept in the cache by group, and the navya modules (beyond the model's own)
    #: whose code measures them. ``stats`` are deterministic and kept as soon as they are
    #: computed; ``speed`` and ``memory`` are measurements, kept from a run in which every
    #: check of the variant passed (:meth:`save_measurements`).
    REUSE_GROUPS: dict[str, tuple[str, ...]] = {
        # the engine's parts that choose the inputs, the rounds and the model that is measured
        # (and, through the package's __init__, the rest of navya.bench)
        "stats": ("navya.metrics.model_stats", "navya.bench.cost", "navya.bench.memo"),
        "speed": ("navya.metrics.speed", "navya.metrics._speed_worker", "navya.metrics.latency",
                  "navya.runtime", "navya.bench.speed", "navya.bench.memo"),
        "memory": ("navya.metrics.memory", "navya.metrics._rss_worker", "navya.runtime",
                   "navya.bench.cost", "navya.bench.memo"),
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
