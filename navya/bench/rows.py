"""Rows: a variant's :class:`~navya.metrics.measure.Measurement` and its same-run figures, one
schema (:func:`navya.figures.row_columns`), and its status."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from navya.bench.core import Fig
from navya.figures import AP_PREFIX, SAME_RUN_FIELDS
from navya.metrics.measure import Measurement, cpu_model, row_columns, utc_now
from navya.verdicts import Status


class Rows:
    """A variant's row: complete, or what this run has measured so far."""

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
        out["reference"] = ref
        out["runtime"] = self.runtime(variant)
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

    def status(self, variant: str) -> str:
        """``ERROR: <what>`` (a figure could not be measured or a test crashed; any failures
        follow) / ``FAIL: <keys>`` / ``PASS`` / ``reference`` / ``NO BUDGET`` /
        ``not checked``, from the verdicts recorded so far."""
        return Status.text(self.verdicts.get(variant, {}).values(),
                           error=self.errors.get(variant), reference=variant == self.reference)
