"""The speed gate's power: how often it catches an injected slowdown, and how often it cries
wolf on an unchanged run (``navya gate-power``).

The study runs the gate's own speed check (:meth:`navya.bench.Bench.check_speed_baseline`:
one fresh pinned worker run, confirmed by more when it falls outside the tolerance) many
times, each time on a fresh :class:`~navya.bench.Bench` so every trial makes its own runs:

- a baseline of ``baseline_runs`` unchanged fresh-process runs of the target variant and of
  the reference, recorded as ``--navya-record-speed`` records one (with their stored builds);
- cell (a), ``network``: the target variant's network made ``s`` slower, ``s`` in
  ``slowdowns``; the variant's speed check is judged (its speedup over fp32 and its A/B
  against its stored build, which is not slowed);
- cell (b), ``postprocess``: every model's end-to-end call made ``s`` slower inside its
  post-processing (shared by every variant, so every speedup and every stored-build A/B
  cancels it); the reference's check must catch it (its cost against the yardstick and its
  network's share of its end-to-end call).

The slowdown in (b) is ``s`` of the whole end-to-end call, spent in post-processing (a busy
wait): post-processing alone is about 1 % of the fp32 call, so ``s`` of it alone would be
below any timing gate's resolution.

Per-check false-alarm rates of every default variant are estimated from the recorded runs of a
speed baseline file (leave one out), and the family-wise rate over a default run is bounded
by their sum (union bound).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from navya._io import atomic_write_bytes, atomic_write_text

__all__ = ["PowerCell", "false_alarm_table", "plot_power", "run_power_study", "write_power"]


@dataclass(frozen=True)
class PowerCell:
    """One (where, slowdown) cell: how many trials, how many failed the target check."""

    where: str  # "network" (one variant) or "postprocess" (shared)
    slowdown: float
    check: str  # the check judged: "speedup of <variant>" or "t(fp32) / t(yardstick)"
    trials: int
    failed: int
    first_values: tuple[float, ...]  # each trial's first run

    @property
    def rate(self) -> float:
        return self.failed / self.trials if self.trials else math.nan


def _bench_factory(checkpoint, data, *, eval_images: int, speed_rounds: int, baselines_dir):
    from navya.bench import Bench, BenchSettings, load_workload

    workload = load_workload(checkpoint, data, eval_images=eval_images)

    def make(inject: dict | None = None) -> Bench:
        settings = BenchSettings(rss=False, speed_rounds=speed_rounds, inject=inject)
        return Bench(workload, settings, baselines_dir=baselines_dir)

    return make


def run_power_study(checkpoint, data, baselines_dir: str | Path, *, variant: str = "int8-ptq",
                    slowdowns: Sequence[float] = (0.0, 0.02, 0.05, 0.10, 0.20),
                    trials: Callable[[str, float], int] | None = None, baseline_runs: int = 10,
                    family_size: int, speed_rounds: int = 60,
                    progress: Callable[[str], None] | None = None) -> list[PowerCell]:
    """Record a baseline into ``baselines_dir``, then run every cell (see the module doc).

    ``trials(where, slowdown)`` gives the number of trials per cell (default: 20 for the
    network cells at 0, 5 and 10 %, else 10). ``family_size`` is the number of speed checks
    in the run the tolerances are set for (:func:`suite_family_size` counts a suite run's).
    """
    say = progress or (lambda _line: None)
    trials = trials or (lambda where, s: 20 if where == "network" and s in (0.0, 0.05, 0.10)
                        else 10)
    make = _bench_factory(checkpoint, data, eval_images=8, speed_rounds=speed_rounds,
                          baselines_dir=baselines_dir)
    base = make()
    reference = base.reference
    from navya.speed_baselines import read_speed_baseline

    recorded = read_speed_baseline(base.speed_baseline_path) or {}
    for name in (reference, variant):
        if (len(getattr(recorded.get(name), "values", ())) >= baseline_runs
                and base.stored_build(name)[0] is not None):
            say(f"reusing the recorded baseline of {name} in {base.speed_baseline_path}")
            continue
        verdict = base.check_speed_baseline(name, record=baseline_runs)
        say(verdict.message)
    models = {name: base.model(name) for name in (reference, variant)}

    cells = []
    for where in ("network", "postprocess"):
        for s in slowdowns:
            if where == "postprocess" and s == 0.0:
                continue  # the same as the network cell at 0
            inject = {"network": {variant: s}} if where == "network" else {"postprocess": s}
            # the check that must catch this slowdown: the variant's speedup for its network,
            # the reference's cost against the yardstick for the shared post-processing
            target = variant if where == "network" else reference
            # the figure meant to catch it: the A/B against the stored build for a network
            # slowdown, the network's share of the end-to-end call for post-processing
            fine = f"{target}@build" if where == "network" else f"{target}@pipeline"
            judged: list[bool] = []
            firsts: list[float] = []
            for i in range(trials(where, s)):
                bench = make(inject if s else None)
                bench.adopt_models(models)  # the same built models, fresh speed runs
                v = bench.check_speed_baseline(target, family_size=family_size)
                judged.append(v.failed)
                firsts.append(bench.figure_values(target, 1).get(fine, [math.nan])[0])
                say(f"{where} +{s:.0%} trial {i + 1}: {target} "
                    f"{'FAIL' if judged[-1] else 'pass'} ({fine} {firsts[-1]:.4f})")
            label = dict(bench.speed_figures(target))
            cells.append(PowerCell(where, s, f"{target}: {label[target]} and {label[fine]}",
                                   len(judged), sum(judged), tuple(firsts)))
    return cells


def false_alarm_table(path: str | Path, family_size: int) -> list[dict[str, Any]]:
    """Per-check false-alarm estimates from a speed baseline file's recorded runs.

    For each entry: leave-one-out (each run judged against the other runs' median and
    tolerance: the first stage of the gate, before confirmation), and the normal model's
    rate for one run, ``P(z > tol / (spread * sqrt(1 + 1/n)))``.
    """
    from navya.speed_baselines import (
        SpeedDecision,
        SpeedEntry,
        read_speed_baseline,
        speed_tolerance,
    )

    entries = read_speed_baseline(path) or {}
    rows = []
    for name, entry in entries.items():
        vals = entry.values
        alarms = 0
        for i in range(len(vals)):
            rest = SpeedEntry(vals[:i] + vals[i + 1:], entry.higher_is_better)
            tol = speed_tolerance(rest.spread_rel, len(rest.values), family_size)
            alarms += not SpeedDecision(name, (vals[i],), rest, tol).passed
        tol = speed_tolerance(entry.spread_rel, len(vals), family_size)
        sd = entry.spread_rel * math.sqrt(1 + 1 / len(vals))
        model = (1 - statistics.NormalDist().cdf(tol / sd)) if sd > 0 else 0.0
        rows.append({"check": name, "runs": len(vals), "median": entry.center,
                     "spread_rel": entry.spread_rel, "tolerance": tol,
                     "loo_false_alarms": alarms, "model_false_alarm_one_run": model})
    return rows


def write_power_csv(path: str | Path, cells: Sequence[PowerCell]) -> None:
    """The cells as ``power.csv`` (read back by :func:`read_power_csv`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["where", "slowdown", "check", "trials", "failed", "rate", "first_values"])
    for c in cells:
        w.writerow([c.where, c.slowdown, c.check, c.trials, c.failed, f"{c.rate:.3f}",
                    " ".join(f"{v:.4f}" for v in c.first_values)])
    atomic_write_text(Path(path), buf.getvalue())


def write_power(out_dir: str | Path, cells: Sequence[PowerCell],
                fa_rows: Sequence[dict[str, Any]], header: Sequence[str]) -> list[Path]:
    """``power.csv``, ``false_alarms.csv``, ``power.md`` and ``power.png`` in ``out_dir``."""
    from navya.bench import SPEED_CONFIRM_RUNS

    out_dir = Path(out_dir)
    write_power_csv(out_dir / "power.csv", cells)
    buf = io.StringIO()
    if fa_rows:
        w = csv.DictWriter(buf, fieldnames=list(fa_rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(fa_rows)
    atomic_write_text(out_dir / "false_alarms.csv", buf.getvalue())

    md = ["# Speed gate power", "", *header, "",
          "## Detection rate per injected slowdown", "",
          "| injected into | slowdown | check | trials | failed | rate |",
          "|---|---:|---|---:|---:|---:|"]
    for c in cells:
        md.append(f"| {c.where} | {c.slowdown:.0%} | {c.check} | {c.trials} | {c.failed} | "
                  f"{c.rate:.0%} |")
    if fa_rows:
        md += ["", "## False alarms on unchanged runs, per check (recorded runs)", "",
               "| check | runs | median | spread | tolerance | leave-one-out alarms | "
               "model rate (one run) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in fa_rows:
            md.append(f"| {r['check']} | {r['runs']} | {r['median']:.3f} | "
                      f"{r['spread_rel']:.2%} | {r['tolerance']:.2%} | "
                      f"{r['loo_false_alarms']} | {r['model_false_alarm_one_run']:.2e} |")
        total = sum(r["model_false_alarm_one_run"] for r in fa_rows)
        md += ["", f"Family-wise false-alarm rate of one run's first stage (union bound over "
                   f"{len(fa_rows)} checks, normal model): {total:.2%}; a first-stage alarm "
                   f"is confirmed by {SPEED_CONFIRM_RUNS - 1} more fresh runs before the check "
                   "fails."]
    atomic_write_text(out_dir / "power.md", "\n".join(md) + "\n")
    plot_power(cells, out_dir / "power.png")
    return [out_dir / n for n in ("power.csv", "false_alarms.csv", "power.md", "power.png")]


def plot_power(cells: Sequence[PowerCell], path: str | Path) -> Path:
    """Detection rate against injected slowdown, one line per (where, check)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    series: dict[tuple[str, str], list[PowerCell]] = {}
    for c in cells:
        series.setdefault((c.where, c.check), []).append(c)
    for (where, check), cs in series.items():
        cs = sorted(cs, key=lambda c: c.slowdown)
        ax.plot([c.slowdown * 100 for c in cs], [c.rate * 100 for c in cs], marker="o",
                label=f"{where} slowdown: {check}")
    ax.axhline(95, color="gray", linestyle=":", linewidth=0.8)
    ax.axhline(80, color="gray", linestyle=":", linewidth=0.8)
    ax.set_xlabel("injected slowdown (%)")
    ax.set_ylabel("runs failing the check (%)")
    ax.set_ylim(-3, 103)
    ax.set_title("speed gate: detection rate (targets: 10 % >= 95, 5 % >= 80)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def read_power_csv(path: str | Path) -> list[PowerCell]:
    """The cells of a ``power.csv`` written by :func:`write_power` (to redo the report)."""
    with open(path, encoding="utf-8", newline="") as f:
        return [PowerCell(r["where"], float(r["slowdown"]), r["check"], int(r["trials"]),
                          int(r["failed"]),
                          tuple(float(v) for v in r["first_values"].split()))
                for r in csv.DictReader(f)]


def suite_family_size(root: str | Path = ".", *extra: str) -> tuple[int, int]:
    """The speed checks a ``pytest benchmarks/`` run with ``extra`` options compares, as the
    suite counts them (``2 * cases + 1``: each case's speedup and its A/B against its stored
    build, and the reference's pipeline pair), from the suite's own collection in ``root``;
    and the number of cases. Issue 28, bug 7: the study assumed 29 where the default run had
    67."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/test_speed.py",
                          "--collect-only", "-q", "-p", "no:cacheprovider", *extra],
                         cwd=root, capture_output=True, text=True, timeout=600)
    cases = [line for line in out.stdout.splitlines() if "::test_speed_regression[" in line]
    if out.returncode != 0 or not cases:
        raise RuntimeError(f"could not collect the suite's speed checks in {root} "
                           f"(exit {out.returncode}): {(out.stdout + out.stderr)[-500:]}")
    return 2 * len(cases) + 1, len(cases)

