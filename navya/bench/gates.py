"""Verdicts on deterministic figures: budgets (per CPU class where the figure depends on the
kernels) and committed baselines, with the refresh policy."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from navya.bench.core import Fig
from navya.budgets import (
    DEFAULT_TOLERANCES,
    BudgetCheck,
    baseline_path,
    class_baselines,
    compare_baseline,
    provenance_mismatch,
    read_baseline,
    write_baseline,
)
from navya.figures import BUDGETS, relative_budgets
from navya.verdicts import Outcome, Verdict


class Gates:
    """Budget and baseline checks; an explicit refresh writes the baselines at the end."""

    def _record(self, verdict: Verdict) -> Verdict:
        self.verdicts.setdefault(verdict.variant, {})[verdict.key] = verdict
        return verdict

    def budget_figure(self, variant: str, key: str) -> float:
        """The measured value that budget ``key`` limits (:data:`navya.figures.BUDGETS`)."""
        if key not in BUDGETS:
            raise KeyError(f"unknown budget key {key!r}; known: {', '.join(BUDGETS)}")
        return float(BUDGETS[key].measure(self, variant))

    def check_budget(self, variant: str, key: str, *, confirm: int = 1) -> Verdict:
        """Compare the variant's figure with its budget ``key``; measures what it needs.

        A speedup below its floor is judged on the median of ``confirm`` fresh speed runs
        (the first included), as the per-machine speed check is: one run in a noisy spell of
        the host is not a slower variant (docs/results/code_decisions/README.md)."""
        if key not in BUDGETS:
            raise KeyError(f"unknown budget key {key!r}; known: {', '.join(BUDGETS)}")
        if variant == self.reference and BUDGETS[key].relative:
            return self._record(Verdict(
                variant, key, Outcome.NOT_APPLICABLE,
                f"{variant} is the reference that {key} is measured against"))
        if self.user_model and not BUDGETS[key].relative:
            measured = self.budget_figure(variant, key)
            return self._record(Verdict(
                variant, key, Outcome.NOT_APPLICABLE,
                f"NOT APPLICABLE to your model: {key} is an absolute budget, written for the "
                f"shipped checkpoint ({self.user_model}); measured {measured:.4g}. Your model "
                "is held to the budgets relative to its own fp32 in this run "
                f"({', '.join(relative_budgets())})", measured=measured))
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
        if BUDGETS[key].timed and not check.passed and confirm > 1:
            first = measured
            runs = self.speed_runs(variant, confirm)
            measured = self.budget_figure(variant, key)
            check = BudgetCheck(variant, key, measured, limit)
            note = (f" (judged on the median of {len(runs)} fresh speed runs, the first "
                    f"{first:.4g}; their speedups: "
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
