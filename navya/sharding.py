"""One commit's gate over several machines: the cases of a run split into shards, and the
shards' results merged into one run.

- :func:`parse_shard`: ``--navya-shard K/N``.
- :func:`assign`: a deterministic partition of the run's cases into ``N`` parts, balanced by
  each case's measured cost (the seconds a previous run spent on it, :func:`costs_from_run`),
  longest first onto the lightest part; without a history, by a stable hash. A model's
  reference case (``fp32``) is measured by every shard, since every other case of that model is
  compared with it in the same run, and is owned (reported) by shard 1.
- :func:`merge_runs`: the shards' report folders into one: refuses shards of different commits,
  checkpoints, data, budgets or shard counts, and shards that overlap; a missing shard makes the
  merged run INCOMPLETE; the merged verdict fails if any case failed. Speed stays per machine:
  each case is timed on its shard's machine against that machine's speed baseline, and the
  merged run records which machine measured each case.

Torch-free: merging reads the shards' ``run.json`` and ``summary.csv`` only.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from navya.errors import NavyaError
from navya.reporting.page import (
    RUN_FILE,
    append_history,
    page_names,
    read_run,
    write_html_report,
    write_run,
)
from navya.reporting.rows import read_csv
from navya.reporting.summary import report_names, write_summary
from navya.verdicts import Outcome, Status

__all__ = ["MergeError", "MergeResult", "assign", "costs_from_run", "merge_runs", "parse_shard"]


class MergeError(NavyaError, ValueError):
    """Shards that cannot be merged, or a bad shard spec (the message names the folder and the
    field)."""


def parse_shard(spec: str) -> tuple[int, int]:
    """``"2/3"`` -> ``(2, 3)``: shard K of N, 1 <= K <= N."""
    try:
        k, n = (int(x) for x in str(spec).split("/"))
    except ValueError:
        raise MergeError(f"--navya-shard {spec!r}: expected K/N, e.g. 1/2") from None
    if not 1 <= k <= n:
        raise MergeError(f"--navya-shard {spec!r}: K must be between 1 and N")
    return k, n


def _hash(case: str) -> int:
    return int.from_bytes(hashlib.sha256(case.encode()).digest()[:8], "big")


def assign(cases: Sequence[str], n: int, costs: Mapping[str, float] | None = None, *,
           always: Collection[str] = ()) -> list[list[str]]:
    """``n`` parts of ``cases``, each part in the cases' order. Cases of ``always`` go to every
    part. With ``costs`` (seconds per case, from a previous run), the others are placed
    longest first onto the part with the least cost so far (ties: the lower part), a case of
    unknown cost counted at the median known cost; without any, each part takes the cases whose
    stable hash falls to it."""
    if n < 1:
        raise MergeError(f"a run splits into at least 1 shard, not {n}")
    shared = [c for c in cases if c in always]
    rest = [c for c in cases if c not in always]
    known = {c: float(costs[c]) for c in rest if costs and c in costs}
    parts: list[set[str]] = [set() for _ in range(n)]
    if known:
        default = statistics.median(known.values())
        load = [0.0] * n
        for case in sorted(rest, key=lambda c: (-known.get(c, default), c)):
            i = min(range(n), key=lambda j: (load[j], j))
            parts[i].add(case)
            load[i] += known.get(case, default)
    else:
        for case in rest:
            parts[_hash(case) % n].add(case)
    return [[c for c in cases if c in part or c in shared] for part in parts]


def costs_from_run(path: str | Path) -> dict[str, float]:
    """Seconds per case of a previous run (its ``run.json``'s ``case_seconds``); empty when the
    file is absent or holds none."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    seconds = record.get("case_seconds") or {}
    return {str(k): float(v) for k, v in seconds.items() if isinstance(v, int | float)}


# -- merging -------------------------------------------------------------------------------------

#: what every shard of one run must share (run.json field -> what it means)
_SAME = {"git_commit": "commit", "models": "checkpoints and data (provenance)",
         "budgets": "budgets"}


@dataclass
class MergeResult:
    """A merged run: where it was written, whether it failed, and why it is incomplete."""

    out_dir: Path
    failed: bool
    incomplete: str | None
    paths: list[Path] = field(default_factory=list)
    failing_cases: list[str] = field(default_factory=list)


def _read_shard(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A shard folder's last run: its ``run.INCOMPLETE.json`` where its last run was
    interrupted (a complete run removes that file; the complete ``run.json`` beside it is an
    earlier run's, stale), else its ``run.json``."""
    run, summary = folder / page_names(True)["run"], folder / report_names(True)["csv"]
    interrupted = run.is_file()
    if not interrupted:
        run, summary = folder / RUN_FILE, folder / report_names(False)["csv"]
    if not run.is_file():
        raise MergeError(f"{folder}: no {RUN_FILE} (not a shard's report folder: "
                         "`pytest benchmarks/ --navya-shard K/N --navya-report-dir DIR` "
                         "writes one)")
    record = read_run(run)
    shard = record.get("shard")
    if not isinstance(shard, Mapping) or not {"k", "n", "cases", "all_cases"} <= set(shard):
        raise MergeError(f"{run}: not a shard's run (no shard field: run it with "
                         "--navya-shard K/N)")
    k, n = shard["k"], shard["n"]
    if (not all(isinstance(x, int) and not isinstance(x, bool) for x in (k, n))
            or not 1 <= k <= n
            or not all(isinstance(c, str) for c in [*shard["cases"], *shard["all_cases"]])):
        raise MergeError(f"{run}: a malformed shard field ({dict(shard)!r}: k and n whole "
                         "numbers, 1 <= k <= n, cases and all_cases lists of case ids)")
    if interrupted:
        record["incomplete"] = record.get("incomplete") or "interrupted"
    try:
        rows = read_csv(summary) if summary.is_file() or not interrupted else []
    except (OSError, ValueError) as exc:
        raise MergeError(f"{summary}: {exc}") from None
    return record, rows


def _failed(row: Mapping[str, Any]) -> bool:
    status = Status.of(row.get("status"))
    return status in (Status.FAIL, Status.ERROR)


def merge_runs(folders: Iterable[str | Path], out_dir: str | Path, *,
               history: bool = True) -> MergeResult:
    """Merge shard report folders into ``out_dir`` (summary.csv/md, tradeoff.png, verdicts.md,
    index.html, run.json; a merged run with a missing shard writes the ``.INCOMPLETE.`` set).
    With ``history``, a complete merged run appends each case's row to its own machine's
    history file beside ``out_dir`` (``../history/<machine>.csv``)."""
    folders = [Path(f) for f in folders]
    if not folders:
        raise MergeError("no shard folders to merge")
    shards = [(f, *_read_shard(f)) for f in folders]
    # shard 1 first, whatever the order given: the merged run's created/machine are its
    shards.sort(key=lambda s: s[1]["shard"]["k"])
    first_dir, first, _ = shards[0]
    n = first["shard"]["n"]
    by_k: dict[int, Path] = {}
    for folder, record, _rows in shards:
        for key, what in _SAME.items():
            if json.dumps(record.get(key), sort_keys=True) != json.dumps(first.get(key),
                                                                         sort_keys=True):
                raise MergeError(f"{folder} and {first_dir} are not shards of one run: their "
                                 f"{what} differ ({key}: {record.get(key)!r} against "
                                 f"{first.get(key)!r})")
        shard = record["shard"]
        if shard["n"] != n or shard["all_cases"] != first["shard"]["all_cases"]:
            raise MergeError(f"{folder}: shard {shard['k']}/{shard['n']} of another split than "
                             f"{first_dir} ({first['shard']['k']}/{n}): their case lists differ")
        if shard["k"] in by_k:
            raise MergeError(f"{folder} and {by_k[shard['k']]} are both shard "
                             f"{shard['k']}/{n}: overlapping shards")
        by_k[shard["k"]] = folder
    owner: dict[str, int] = {}
    for _folder, record, _rows in shards:
        for case in record["shard"]["cases"]:
            if case in owner:
                raise MergeError(f"case {case} is owned by shards {owner[case]} and "
                                 f"{record['shard']['k']}: overlapping shards")
            owner[case] = record["shard"]["k"]
    order = list(first["shard"]["all_cases"])
    missing = sorted(set(range(1, n + 1)) - set(by_k))
    lost = [c for c in order if c not in owner]
    named = f"{len(lost)} case(s) not measured ({', '.join(lost[:8])}" + (
        ", ..." if len(lost) > 8 else "") + ")"
    why = []
    if missing:
        why.append(f"shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing: {named}")
    elif lost:  # every shard there, yet no owner: shards of different splits
        why.append(f"{named} by any shard: the shards split the cases differently (balanced "
                   "by different --navya-shard-costs files? give every shard the same one)")
    why += [f"shard {r['shard']['k']}/{n} incomplete: {r['incomplete']}"
            for _f, r, _rows in shards if r.get("incomplete")]
    incomplete = "; ".join(why) or None
    rows_by_case: dict[str, dict[str, Any]] = {}
    verdicts: dict[str, Any] = {}
    machines: dict[str, str] = {}
    notes: list[str] = []
    for _folder, record, rows in sorted(shards, key=lambda s: s[1]["shard"]["k"]):
        k = record["shard"]["k"]
        own = set(record["shard"]["cases"])
        for row in rows:
            if row.get("name") in own:
                rows_by_case[row["name"]] = row
        verdicts.update({c: v for c, v in record.get("verdicts", {}).items() if c in own})
        machines.update({c: record.get("machine_slug", "?") for c in own})
        notes += [f"shard {k}/{n} ({record.get('machine_slug')}): {line}"
                  for line in record.get("notes", [])]
    rows = [rows_by_case[c] for c in order if c in rows_by_case]
    for row in rows:
        row["machine"] = machines.get(row["name"])
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = Path(out_dir)
    paths = write_summary(out, rows, columns, notes=notes, budgets=first.get("budgets") or {},
                          incomplete=incomplete)
    slugs = sorted(set(machines.values()))
    hist = None
    if history and not incomplete:
        for slug in slugs:
            hist = out.parent / "history" / f"{slug}.csv"
            append_history(hist, [r for r in rows if machines.get(r["name"]) == slug],
                           timestamp=first.get("created"), git_commit=first.get("git_commit"),
                           cpu_class=next((r["machine"].get("kernel_class", "")
                                           for _f, r, _rows in shards
                                           if r.get("machine_slug") == slug), ""))
    record = {"created": first.get("created"), "git_commit": first.get("git_commit"),
              "incomplete": incomplete, "machine": first.get("machine", {}),
              "machine_slug": slugs[0] if len(slugs) == 1 else "+".join(slugs),
              "models": first.get("models"), "verdicts": verdicts,
              "budgets": first.get("budgets"), "notes": notes,
              "history_path": str(hist) if hist and len(slugs) == 1 else None,
              "merged_from": [{"k": r["shard"]["k"], "folder": str(f),
                               "machine_slug": r.get("machine_slug"),
                               "incomplete": r.get("incomplete")} for f, r, _rows in shards],
              "case_machines": machines,
              "case_seconds": {c: s for _f, r, _rows in shards
                               for c, s in (r.get("case_seconds") or {}).items()
                               if c in r["shard"]["cases"]}}
    paths.append(write_run(out, record, page_names(bool(incomplete))["run"]))
    paths += write_html_report(out, rows, record)
    if not incomplete:  # a complete merge replaces an earlier incomplete one's page
        for name in page_names(True).values():
            (out / name).unlink(missing_ok=True)
    failing = sorted({c for c, checks in verdicts.items()
                      if any(Outcome.parse(v["outcome"]).failed for v in checks.values())}
                     | {r["name"] for r in rows if _failed(r)})
    return MergeResult(out, bool(failing) or bool(incomplete), incomplete, paths, failing)
