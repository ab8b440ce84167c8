"""A run's report files in one set: summary.csv, summary.md and tradeoff.png (an incomplete
run's ``summary.INCOMPLETE.*``), written together."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from navya.reporting.plot import plot_tradeoff
from navya.reporting.rows import Row, _as_row, number, write_csv
from navya.reporting.tables import summary_markdown

#: The files of one report set, by role (an incomplete run's set adds ``.INCOMPLETE``).
REPORT_FILES = {"csv": "summary.csv", "md": "summary.md", "plot": "tradeoff.png"}

def report_names(incomplete: bool) -> dict[str, str]:
    """The file names of a complete or an incomplete run's report set."""
    if not incomplete:
        return dict(REPORT_FILES)
    return {k: v.replace(".", ".INCOMPLETE.", 1) for k, v in REPORT_FILES.items()}

def write_summary(out_dir: str | os.PathLike, rows: Sequence[Row], columns: Sequence[str], *,
                  notes: Sequence[str] = (),
                  budgets: Mapping[str, Any] | None = None,
                  incomplete: str | None = None) -> list[Path]:
    """Write a run's ``summary.csv`` (``columns``), ``summary.md`` and, when a row has mAP,
    latency and size, ``tradeoff.png`` into ``out_dir``, each atomically. Returns the paths.

    The files are one set from one run: a member this run does not write (no plottable row)
    is removed rather than left from an earlier run. An ``incomplete`` run (interrupted, or
    with variants not measured; the string says why) writes ``summary.INCOMPLETE.*`` marked as
    such and leaves the last complete set alone; a complete run removes any incomplete set.
    """
    from navya._io import atomic_write_text

    out_dir = Path(out_dir)
    names = report_names(bool(incomplete))
    if incomplete:
        notes = [f"INCOMPLETE RUN: {incomplete}. The last complete report, if any, is "
                 f"{REPORT_FILES['md']} in this folder.", *notes]
    paths = [write_csv(out_dir / names["csv"], rows, columns)]
    md = summary_markdown(rows, notes)
    if incomplete:
        md = md.replace("# navya summary", "# navya summary (INCOMPLETE)", 1)
    atomic_write_text(out_dir / names["md"], md)
    paths.append(out_dir / names["md"])
    data = [_as_row(r) for r in rows]
    plottable = [r for r in data if all(number(r.get(k)) is not None
                                        for k in ("map", "latency_ms_median", "size_mb"))]
    if plottable:
        paths.append(plot_tradeoff(data, out_dir / names["plot"], budgets=budgets))
    stale = [out_dir / names["plot"]] if not plottable else []
    if not incomplete:
        stale += [out_dir / n for n in report_names(True).values()]
    for path in stale:
        path.unlink(missing_ok=True)
    return paths
