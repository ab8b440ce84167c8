"""Building: a variant's model (through the catalogue and the artifact cache), checked finite; its
timed copies; this machine's stored builds."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import torch
from torch import nn

from navya.bench.core import Fig
from navya.bench.settings import BenchError


class Builds:
    """Variant -> model: built once per run, from the artifact cache when it holds it."""

    def model(self, variant: str) -> nn.Module:
        """The variant's model in eval mode (built once; the transform time is recorded)."""

        def build():
            from navya.compress.cache import BuildInfo

            if variant in self._models:
                self._cache[(Fig.TRANSFORM_S, variant, 0)] = 0.0
                self._cache[(Fig.BUILD, variant, 0)] = BuildInfo("prebuilt", 0.0)
                return self._models[variant].eval()

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
            worker = self.worker_builds.get(variant)
            if info.source == "cache" and worker is not None and worker.key == info.key:
                # built in this run by a parallel build worker, read back from the cache
                info = dataclasses.replace(info, source="built", why=worker.why)
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
        from navya.models.checkpoint import sha256_file
        from navya.speed_baselines import read_speed_baseline

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
