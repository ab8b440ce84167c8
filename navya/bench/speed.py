"""Speed ratios: fresh pinned worker runs timing a variant against the reference (ABBA pairs),
reused from the cache when nothing they depend on changed."""

from __future__ import annotations

from typing import Any

from navya.bench.core import Fig


class Speed:
    """Speed runs of a variant against the reference, and their median."""

    def _speed_peek(self, variant: str):
        """The median speed run of ``variant`` if one was made (computes nothing)."""
        return self.speedup(variant) if self.peek(Fig.SPEEDUP, variant) else None

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

    def speedup_value(self, variant: str) -> float:
        return float(self.speedup(variant).speedup)
