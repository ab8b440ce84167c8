"""Speed baselines, per machine: the fresh-process runs recorded on one machine key, and the
tolerance a later run is judged with (from the recorded spread, never a fixed percentage).

A speed ratio depends on the machine (CPU model and ISA, cores, torch, threads, engine), so its
baseline is kept per machine key (:func:`navya.runtime.machine_key`) in
``<baselines>/speed/<machine slug>.json``, with every fresh-process run it was recorded from::

    {"machine": {...}, "protocol": {...},
     "entries": {"int8-ptq": {"values": [3.12, 3.15, ...], "higher_is_better": true,
                              "config": {...}, "recorded": "2026-12-01T..."}, ...}}
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from navya._io import atomic_write_text
from navya.budgets import BaselineError, _json_default, _read_json

SPEED_SUBDIR = "speed"
#: Family-wise false-alarm rate the speed tolerances are set for (all speed checks of a run).
SPEED_FAMILY_ALPHA = 0.01
#: The smallest tolerance, whatever the recorded spread (timer and scheduling granularity).
SPEED_MIN_TOLERANCE = 0.01


def speed_baseline_path(baselines_dir: str | os.PathLike, slug: str) -> Path:
    """Where the speed baseline of machine ``slug`` lives under a baselines folder."""
    return Path(baselines_dir) / SPEED_SUBDIR / f"{slug}.json"


@dataclass(frozen=True)
class SpeedEntry:
    """The recorded fresh-process values of one speed figure on one machine.

    ``higher_is_better``: a speedup (a lower value is a regression), or the reference's cost
    relative to the yardstick (a higher value is a regression).
    """

    values: tuple[float, ...]
    higher_is_better: bool = True
    config: Any = None
    #: the reference's median ms in each run (absolute: context for people, never compared)
    reference_ms: tuple[float, ...] = ()
    #: for an ``<variant>@build`` entry: the SHA-256 of the stored build it was timed against
    sha256: str | None = None

    @property
    def center(self) -> float:
        return float(statistics.median(self.values))

    @property
    def spread_rel(self) -> float:
        """Sample standard deviation of the values over their median (0 for one value)."""
        if len(self.values) < 2:
            return 0.0
        return float(statistics.stdev(self.values) / self.center)


def read_speed_baseline(path: str | os.PathLike) -> dict[str, SpeedEntry] | None:
    """The speed entries recorded at ``path``, or None when there is no file. A broken file is
    a :class:`BaselineError` naming the file and the problem."""
    path = Path(path)
    data = _read_json(path, "speed baseline", "record it again with --navya-record-speed")
    if data is None:
        return None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise BaselineError(f"{path}: speed baseline lacks an 'entries' table")
    out = {}
    for name, entry in entries.items():
        values = entry.get("values") if isinstance(entry, dict) else None
        if (not isinstance(values, list) or not values
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           and math.isfinite(v) and v > 0 for v in values)):
            raise BaselineError(f"{path}: entries.{name}.values must be a non-empty list of "
                                f"positive numbers, got {values!r}")
        ref_ms = entry.get("reference_ms") or ()
        sha = entry.get("sha256")
        if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
            raise BaselineError(f"{path}: entries.{name}.sha256 must be a 64-character hex "
                                f"digest, got {sha!r}")
        out[name] = SpeedEntry(tuple(float(v) for v in values),
                               bool(entry.get("higher_is_better", True)), entry.get("config"),
                               tuple(float(v) for v in ref_ms if isinstance(v, int | float)),
                               sha)
    return out


def read_speed_protocol(path: str | os.PathLike) -> dict[str, Any] | None:
    """The protocol a speed baseline was recorded with (None without a file)."""
    data = _read_json(Path(path), "speed baseline", "record it again with --navya-record-speed")
    protocol = data.get("protocol") if isinstance(data, dict) else None
    return protocol if isinstance(protocol, dict) else None


def write_speed_entry(path: str | os.PathLike, name: str, entry: SpeedEntry,
                      machine: Mapping[str, Any], protocol: Mapping[str, Any],
                      recorded: str) -> None:
    """Add or replace one entry of the speed baseline at ``path`` (atomically; the other
    entries are kept when the machine and protocol are the same, dropped otherwise)."""
    path = Path(path)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = {}
    if data.get("machine") != dict(machine) or data.get("protocol") != dict(protocol):
        data = {}
    entries = data.get("entries", {})
    entries[name] = {"values": list(entry.values), "higher_is_better": entry.higher_is_better,
                     "center": entry.center, "spread_rel": entry.spread_rel,
                     "reference_ms": list(entry.reference_ms), "config": entry.config,
                     "recorded": recorded}
    if entry.sha256 is not None:
        entries[name]["sha256"] = entry.sha256
    payload = {"machine": dict(machine), "protocol": dict(protocol),
               "entries": dict(sorted(entries.items()))}
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False,
                                       default=_json_default) + "\n")


def speed_tolerance(spread_rel: float, n_baseline: int, family_size: int,
                    alpha: float = SPEED_FAMILY_ALPHA,
                    floor: float = SPEED_MIN_TOLERANCE) -> float:
    """Relative tolerance of one speed check: ``z * spread * sqrt(1 + 1/n)`` with ``z`` the
    normal quantile of ``1 - alpha / family_size`` (Bonferroni over the run's speed checks),
    ``spread`` the recorded run-to-run relative spread of one fresh-process run, ``n`` the
    number of recorded runs; at least ``floor``."""
    if family_size < 1 or n_baseline < 1:
        raise ValueError("family_size and n_baseline must be >= 1")
    z = statistics.NormalDist().inv_cdf(1.0 - alpha / family_size)
    return max(floor, z * spread_rel * math.sqrt(1.0 + 1.0 / n_baseline))


@dataclass(frozen=True)
class SpeedDecision:
    """One speed figure of this run against its per-machine baseline."""

    name: str
    runs: tuple[float, ...]  # this run's fresh-process values; the median is compared
    baseline: SpeedEntry
    tolerance: float

    @property
    def measured(self) -> float:
        return float(statistics.median(self.runs))

    @property
    def threshold(self) -> float:
        c = self.baseline.center
        return c * (1 - self.tolerance) if self.baseline.higher_is_better \
            else c * (1 + self.tolerance)

    @property
    def passed(self) -> bool:
        if self.baseline.higher_is_better:
            return self.measured >= self.threshold
        return self.measured <= self.threshold

    @property
    def change(self) -> float:
        """Relative change against the baseline's median (negative: slower)."""
        c = self.baseline.center
        return (self.measured / c - 1) if self.baseline.higher_is_better else (c / self.measured - 1)

    def message(self) -> str:
        verdict = "within" if self.passed else "REGRESSED beyond"
        op = ">=" if self.baseline.higher_is_better else "<="
        runs = ", ".join(f"{v:.3f}" for v in self.runs)
        return (f"{self.name}: {self.measured:.3f} (runs: {runs}) is {self.change:+.1%} against "
                f"this machine's baseline {self.baseline.center:.3f} "
                f"({len(self.baseline.values)} runs, spread {self.baseline.spread_rel:.2%}); "
                f"{verdict} the tolerance {self.tolerance:.2%} ({op} {self.threshold:.3f})")
