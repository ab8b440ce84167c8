"""Speed against this machine's recorded baseline: tolerances from the recorded spread,
confirmation runs, recording, the A/B against the stored build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from navya.bench.settings import SPEED_CONFIRM_RUNS
from navya.metrics.measure import utc_now
from navya.verdicts import Outcome, Verdict


class SpeedGate:
    """The per-machine speed gate."""

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
        (:func:`navya.speed_baselines.speed_tolerance`, ``family_size`` figures compared in the run).
        When a first run is outside a tolerance, more fresh runs (``confirm`` in all) are made
        and every figure is judged on their median: one slow process, or a noisy spell of the
        host, is not a regression.
        """
        from navya.runtime import machine_slug
        from navya.speed_baselines import (
            SpeedDecision,
            SpeedEntry,
            read_speed_baseline,
            read_speed_protocol,
            speed_tolerance,
            write_speed_entry,
        )

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
