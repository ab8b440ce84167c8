"""The history check across commits: pytest-benchmark's saved runs, judged on same-run ratios.

``pytest benchmarks/ --benchmark-autosave`` saves each run's latency benchmarks
(``.benchmarks/<machine>/NNNN_*.json``). Comparing absolute medians between runs cries wolf on a
shared machine: the host's other load moves every figure of a run together (README, "CPU
classes": four unchanged runs on an AVX2 EPYC moved fp32's 2-thread median by +52 %). Within
one run that drift is shared, so this check compares, per thread count and model, each
variant's latency *over fp32's of the same run*, and holds the newest run's ratio to the
median of the previous runs' with a tolerance from their spread
(:func:`navya.speed_baselines.speed_tolerance`: ``z * spread * sqrt(1 + 1/n)``, Bonferroni over the
run's figures, at least :data:`MIN_TOLERANCE`). Absolute medians are reported beside it as
information (the report's trend), never failed on.

Imports no torch (a CI step can run it alone).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from navya.errors import NavyaError
from navya.speed_baselines import speed_tolerance
from navya.verdicts import CaseId

#: the fewest previous runs a ratio is judged against (fewer: reported, not judged). Measured
#: (docs/results/history_check): with 3, a spread from three 2-thread runs gave the one false
#: alarm of 12 unchanged runs; from 5 on, none
MIN_HISTORY = 5
#: the most previous runs used (the most recent ones)
MAX_HISTORY = 10
#: the smallest tolerance: a ratio moves less than this only by chance of the host
MIN_TOLERANCE = 0.05
REFERENCE = "fp32"


class HistoryError(NavyaError, ValueError):
    """A saved run that cannot be read: the message names the file."""


@dataclass(frozen=True)
class Figure:
    """One benchmark of one run: its key (group, model, variant), median seconds and its
    ratio to the reference's median of the same run and group (None for the reference, or
    without one)."""

    key: tuple[str, str, str]
    median_s: float
    ratio: float | None


@dataclass(frozen=True)
class Judgement:
    key: tuple[str, str, str]
    ratio: float | None
    center: float | None  # median of the history's ratios
    tolerance: float | None
    n_history: int
    median_s: float
    median_change: float | None  # absolute median vs the previous run's, relative (info)

    @property
    def alarm(self) -> bool:
        return (self.ratio is not None and self.center is not None
                and self.tolerance is not None
                and self.ratio > self.center * (1 + self.tolerance))

    def line(self) -> str:
        group, model, variant = self.key
        name = str(CaseId(model, variant)) if model else variant
        absolute = ("" if self.median_change is None
                    else f"; absolute median {self.median_s * 1e3:.2f} ms "
                         f"({self.median_change:+.1%} vs the previous run, information only)")
        if self.ratio is None:
            return f"{group} {name}: the reference (its ratios' denominator){absolute}"
        if self.center is None:
            return (f"{group} {name}: t/t({REFERENCE}) {self.ratio:.3f}, not judged: "
                    f"{self.n_history} previous run(s), {MIN_HISTORY} needed{absolute}")
        verdict = "SLOWER" if self.alarm else "ok"
        return (f"{group} {name}: t/t({REFERENCE}) {self.ratio:.3f} against "
                f"{self.center:.3f} of {self.n_history} previous runs, tolerance "
                f"+{self.tolerance:.1%}: {verdict}{absolute}")


def read_run(path: str | os.PathLike) -> dict[tuple[str, str, str], Figure]:
    """The figures of one saved pytest-benchmark run, keyed (group, model, variant)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        benches = data["benchmarks"]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise HistoryError(f"{path}: not a pytest-benchmark run ({exc})") from exc
    medians: dict[tuple[str, str, str], float] = {}
    for b in benches:
        params = b.get("params") or {}
        variant = params.get("variant")
        if variant is None or not b.get("stats"):
            continue
        case = CaseId.parse(variant) if CaseId.SEPARATOR in str(variant) else None
        model, name = (case.model, case.variant) if case else ("", str(variant))
        model = str((b.get("extra_info") or {}).get("model") or model)
        medians[(str(b.get("group")), model, name)] = float(b["stats"]["median"])
    out = {}
    for key, median in medians.items():
        ref = medians.get((key[0], key[1], REFERENCE))
        ratio = None if key[2] == REFERENCE or ref is None else median / ref
        out[key] = Figure(key, median, ratio)
    return out


def saved_runs(folder: str | os.PathLike) -> list[Path]:
    """The saved runs under ``folder`` (a ``.benchmarks`` folder or one machine's folder),
    oldest first (pytest-benchmark numbers them)."""
    folder = Path(folder)
    return sorted(folder.rglob("[0-9][0-9][0-9][0-9]_*.json"), key=lambda p: p.name)


def judge(runs: Sequence[dict[tuple[str, str, str], Figure]]) -> list[Judgement]:
    """The newest run (last) against the previous ones (at most :data:`MAX_HISTORY`)."""
    if not runs:
        return []
    *history, newest = runs
    history = history[-MAX_HISTORY:]
    family = max(1, sum(1 for f in newest.values() if f.ratio is not None))
    out = []
    for key, fig in newest.items():
        past = [run[key].ratio for run in history if key in run and run[key].ratio is not None]
        prev = next((run[key].median_s for run in reversed(history) if key in run), None)
        change = None if prev is None else fig.median_s / prev - 1
        center = tol = None
        if fig.ratio is not None and len(past) >= MIN_HISTORY:
            center = statistics.median(past)
            mad = statistics.median(abs(p - center) for p in past)
            spread = 1.4826 * mad / center if center > 0 else math.inf
            tol = speed_tolerance(spread, len(past), family, floor=MIN_TOLERANCE)
        out.append(Judgement(key, fig.ratio, center, tol, len(past), fig.median_s, change))
    return sorted(out, key=lambda j: j.key)


def check_history(folder: str | os.PathLike) -> tuple[list[Judgement], list[Path]]:
    """Judge the newest saved run under ``folder`` against the ones before it."""
    paths = saved_runs(folder)
    return judge([read_run(p) for p in paths]), paths
