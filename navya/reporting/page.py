"""The run's report as one self-contained HTML page (``reports/latest/index.html``).

Written by every ``pytest benchmarks/`` run beside ``summary.csv``/``summary.md``, and again
from those files by ``navya report DIR``. The page needs no network access: its styles are
inline, the trade-off plot is an embedded PNG, the speed trends are inline SVG, and there is no
script. It holds, in order:

1. the verdict of every variant and every budget, failures first, each with the measured value,
   the limit and the message (which names the baseline it was compared with);
2. the trade-off plot (:func:`navya.reporting.plot.tradeoff_figure`);
3. the per-class AP change of every variant against its model's fp32 (a heat map);
4. each variant's speedup across this machine's earlier complete runs (a trend per variant), from
   ``<report dir>/../history/<machine>.csv``, which every complete run appends to;
5. the machine and the provenance (checkpoints, data, commit), the run's notes, and links to the
   CSV, the Markdown summary and the pytest-benchmark JSON.

The same verdicts, failures first, also go to ``verdicts.md`` (for a CI job summary).

``run.json`` keeps what the CSV does not: the verdicts, the budgets, the machine, the provenance
and the notes. Writes are atomic.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from navya._io import atomic_write_text
from navya.errors import NavyaError
from navya.figures import AP_PREFIX, BUDGETS, format_value
from navya.reporting.plot import tradeoff_figure
from navya.reporting.rows import number, read_csv, reference_rows, row_label
from navya.reporting.summary import report_names
from navya.verdicts import Outcome

__all__ = ["HTML_FILE", "RUN_FILE", "VERDICTS_FILE", "ReportError", "append_history",
           "read_history", "read_run", "render_html", "report_from_dir", "verdicts_markdown",
           "write_html_report", "write_run"]

RUN_FILE = "run.json"
HTML_FILE = "index.html"
VERDICTS_FILE = "verdicts.md"
HISTORY_COLUMNS = ("timestamp", "git_commit", "model", "variant", "speedup",
                   "latency_ms_median", "map", "status", "cpu_class")
#: the columns before the CPU class was recorded (issue 27): such files are read, and extended
_OLD_HISTORY_COLUMNS = HISTORY_COLUMNS[:-1]
RUN_SCHEMA = 1
#: Verdict outcomes in the order a reader wants them: what broke first.
_ORDER = {o: i for i, o in enumerate((
    Outcome.FAIL, Outcome.ERROR, Outcome.NO_BUDGET, Outcome.NO_BASELINE, Outcome.NOT_COMPARABLE,
    Outcome.NOT_APPLICABLE, Outcome.UPDATED, Outcome.PASS))}


class ReportError(NavyaError, ValueError):
    """A report input that cannot be read (the message names the file)."""


# -- run.json and history -----------------------------------------------------------------------


def write_run(out_dir: str | os.PathLike, record: Mapping[str, Any],
              name: str = RUN_FILE) -> Path:
    path = Path(out_dir) / name
    atomic_write_text(path, json.dumps({"schema": RUN_SCHEMA, **record}, indent=1,
                                       sort_keys=True, default=str) + "\n")
    return path


def read_run(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no run record (written by `pytest benchmarks/`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: not valid JSON ({exc}); rerun `pytest benchmarks/`") from exc
    if not isinstance(data, dict) or data.get("schema") != RUN_SCHEMA:
        raise ReportError(f"{path}: not a navya run record of schema {RUN_SCHEMA}")
    for key, kind in (("verdicts", dict), ("notes", list), ("budgets", dict), ("models", dict)):
        if not isinstance(data.get(key, kind()), kind):
            raise ReportError(f"{path}: {key} must be a JSON {kind.__name__}")
    return data


def append_history(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], *,
                   timestamp: str, git_commit: str | None, cpu_class: str = "") -> Path:
    """Append one complete run's speed figures, with the machine's CPU class, to a machine's
    history CSV (atomically: the file is rewritten with the new lines). A file written before
    the class was recorded gets the column, empty on its old lines."""
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    header = ",".join(_OLD_HISTORY_COLUMNS)
    if old.startswith(header + "\n"):
        old = "\n".join(line + "," if line else line for line in old.split("\n"))
        old = ",".join(HISTORY_COLUMNS) + old[len(header) + 1:]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if not old:
        writer.writerow(HISTORY_COLUMNS)
    for row in rows:
        writer.writerow([timestamp, git_commit or "", row.get("model") or "", row_label(row),
                         *("" if number(row.get(k)) is None else repr(float(row[k]))
                           for k in ("speedup", "latency_ms_median", "map")),
                         row.get("status") or "", cpu_class])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, old + buf.getvalue())
    return path


def read_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A history CSV's lines (an unreadable file is a :class:`ReportError` naming it)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) not in (HISTORY_COLUMNS, _OLD_HISTORY_COLUMNS):
                raise ReportError(f"{path}: not a navya speed history (header "
                                  f"{reader.fieldnames}, expected {list(HISTORY_COLUMNS)})")
            return [dict(r) for r in reader]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: malformed CSV ({exc}); delete it to start a new "
                          "history") from exc


# -- the page ---------------------------------------------------------------------------------


def _class_text(machine: Mapping[str, Any]) -> str:
    """The machine's CPU class (``navya.cpuclass``), and its kernels' where restricted."""
    host, kernel = machine.get("cpu_class") or "unknown", machine.get("kernel_class")
    if kernel and kernel != host:
        return f"{host} (torch kernels restricted to {kernel})"
    return host

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;
color:#1b1f24;max-width:1500px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
#d0d7de;padding-bottom:4px}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600;font-size:12px;
color:#fff}
.fail{background:#cf222e}.pass{background:#1a7f37}.skip{background:#6e7781}.error{background:#8250df}
.banner{padding:10px 14px;border-radius:6px;margin:10px 0;font-weight:600}
.banner.bad{background:#ffebe9;border:1px solid #cf222e}.banner.good{background:#dafbe1;
border:1px solid #1a7f37}.banner.warn{background:#fff8c5;border:1px solid #9a6700}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #d0d7de;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f6f8fa;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td:not(.fail):not(.pass):not(.skip):not(.error){background:#fff5f5}td.msg{max-width:640px;font-size:12px;color:#424a53}
.matrix td{text-align:center;min-width:34px}
.heat td{text-align:right;font-variant-numeric:tabular-nums;min-width:44px}
img.plot{max-width:100%;border:1px solid #d0d7de}
.small{font-size:12px;color:#57606a}ul.notes li{margin:2px 0}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _fmt(value: Any, digits: int = 4) -> str:
    x = number(value)
    return "–" if x is None else f"{x:.{digits}g}"


def _value(verdict: Mapping[str, Any], field: str) -> str:
    """A verdict's measured value or limit: with its figure's format and unit
    (:data:`navya.figures.BUDGETS`), else four significant digits."""
    return format_value(verdict["key"], verdict.get(field)) or _fmt(verdict.get(field))


def _outcome_class(outcome: Outcome) -> str:
    return {Outcome.FAIL: "fail", Outcome.ERROR: "error", Outcome.PASS: "pass",
            Outcome.UPDATED: "pass"}.get(outcome, "skip")


def _verdict_list(record: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    models = {row_label(r): r.get("model") for r in rows}
    out = []
    for case, checks in record.get("verdicts", {}).items():
        for key, v in checks.items():
            try:
                outcome = Outcome.parse(str(v.get("outcome", "")))
            except ValueError as exc:
                raise ReportError(f"run.json: the verdict {key} of {case}: {exc}") from None
            out.append({"case": case, "model": models.get(case, v.get("model")), "key": key,
                        "outcome": outcome, "message": v.get("message", ""),
                        "measured": v.get("measured"), "limit": v.get("limit")})
    order = {row_label(r): i for i, r in enumerate(rows)}
    out.sort(key=lambda v: (_ORDER[v["outcome"]], order.get(v["case"], 1e9), v["key"]))
    return out


def verdicts_markdown(rows: Sequence[Mapping[str, Any]], record: Mapping[str, Any]) -> str:
    """The verdict table in Markdown, failures first (a CI job summary)."""
    verdicts = _verdict_list(record, rows)
    failed = [v for v in verdicts if v["outcome"].failed]
    cases = list(dict.fromkeys(v["case"] for v in verdicts))
    head = (f"## navya: {len(failed)} failing check(s) in "
            f"{len({v['case'] for v in failed})} of {len(cases)} variant(s)"
            if failed else f"## navya: every check passed or was skipped ({len(cases)} variants)")
    out = [head, ""]
    if record.get("incomplete"):
        out += [f"**INCOMPLETE RUN: {record['incomplete']}**", ""]
    out += ["| outcome | variant | check | measured | limit | message |",
            "|---|---|---|---:|---:|---|"]
    for v in verdicts:
        if v["outcome"] is Outcome.PASS and len(verdicts) > 60:
            continue  # a long run lists what did not pass; the page has everything
        msg = str(v["message"]).replace("|", "\\|").replace("\n", " ")
        out.append(f"| {v['outcome'].value.upper()} | {v['case']} | {v['key']} | "
                   f"{_value(v, 'measured')} | {_value(v, 'limit')} | {msg[:300]} |")
    return "\n".join(out) + "\n"


def _png(rows: Sequence[Mapping[str, Any]], budgets: Mapping[str, Any]) -> bytes:
    fig = tradeoff_figure(rows, budgets=budgets)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _heat_color(delta: float, scale: float) -> str:
    """A diverging background: red for an AP loss, blue for a gain, white at 0."""
    t = max(-1.0, min(1.0, delta / scale)) if scale > 0 else 0.0
    if t < 0:
        r, g, b = 255, int(255 + t * 120), int(255 + t * 120)
    else:
        r, g, b = int(255 - t * 120), int(255 - t * 60), 255
    return f"#{r:02x}{g:02x}{b:02x}"


def _per_class(rows: Sequence[Mapping[str, Any]]) -> str:
    classes = list(dict.fromkeys(k[len(AP_PREFIX):] for r in rows for k in r
                                 if k.startswith(AP_PREFIX)))
    refs = reference_rows(rows)
    if not classes or not refs:
        return "<p class='small'>no per-class AP in this run</p>"
    cells = []
    for r in rows:
        ref = refs.get(r.get("model"))
        if ref is None or ref is r:
            continue
        deltas = []
        for c in classes:
            a, b = number(r.get(AP_PREFIX + c)), number(ref.get(AP_PREFIX + c))
            deltas.append(None if a is None or b is None else (a - b) * 100.0)
        cells.append((r, deltas))
    if not cells:
        return "<p class='small'>only references in this run: no change to show</p>"
    finite = [abs(d) for _, ds in cells for d in ds if d is not None and abs(d) < 50]
    scale = max([2.0, *finite])
    head = "".join(f"<th>{_e(c)}</th>" for c in classes)
    body = []
    for r, deltas in cells:
        tds = "".join(
            "<td>–</td>" if d is None else
            f"<td style='background:{_heat_color(d, scale)}' title='AP change {d:+.2f} points'>"
            f"{d:+.1f}</td>" for d in deltas)
        body.append(f"<tr><th>{_e(row_label(r))}</th>{tds}</tr>")
    return (f"<p class='small'>AP@0.5 of each class minus its model's fp32, in points (red: "
            f"lost, blue: gained; colour saturates at ±{scale:.1f})</p>"
            f"<table class='heat' id='per-class'><tr><th>variant</th>{head}</tr>"
            + "".join(body) + "</table>")


def _sparkline(values: Sequence[float], width: int = 180, height: int = 34, *,
               last_is_this_run: bool = True) -> str:
    lo, hi = min(values), max(values)
    span = (hi - lo) or max(abs(hi) * 0.05, 1e-9)
    lo, hi = lo - 0.1 * span, hi + 0.1 * span
    pts = [(4 + i * (width - 8) / max(len(values) - 1, 1),
            height - 4 - (v - lo) / (hi - lo) * (height - 8)) for i, v in enumerate(values)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    x, y = pts[-1]
    return (f"<svg width='{width}' height='{height}' role='img' aria-label='speedup trend'>"
            f"<polyline fill='none' stroke='#0969da' stroke-width='1.5' points='{line}'/>"
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.5' "
            f"fill='{'#cf222e' if last_is_this_run else '#57606a'}' "
            f"data-this-run='{'yes' if last_is_this_run else 'no'}'/></svg>")


def _trends(rows: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]],
            machine: str, this_run: str | None = None) -> str:
    """Each variant's speedup over the machine's complete runs. ``this_run``: the run's
    ``created`` time, which its history lines carry; the last point is drawn as this run only
    where it is (an incomplete run adds no line; a later `navya report` finds newer lines)."""
    # keyed by model too: the first model's cases carry no "<model>:" prefix, so a run that
    # gates another model first would otherwise extend the default model's lines
    by_case: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for h in history:
        x = number(h.get("speedup"))
        if x is not None:
            by_case.setdefault((h.get("model") or "", h["variant"]), []).append(
                (h["timestamp"], x))
    if not any(len(v) >= 2 for v in by_case.values()):
        return (f"<p class='small' id='trends'>no speed history on this machine yet "
                f"({_e(machine)}): each complete run adds one point per variant</p>")
    body, ours = [], 0
    for r in rows:
        runs = by_case.get((r.get("model") or "", row_label(r)), [])
        if len(runs) < 2:
            continue
        values = [x for _, x in runs]
        change = values[-1] / values[-2] - 1.0
        mine = this_run is not None and runs[-1][0] == this_run
        ours += mine
        body.append(f"<tr><th>{_e(row_label(r))}</th>"
                    f"<td>{_sparkline(values, last_is_this_run=mine)}</td>"
                    f"<td class='num'>{len(values)}</td><td class='num'>{values[-1]:.3f}x</td>"
                    f"<td class='num'>{change:+.1%}</td><td class='num'>{min(values):.3f}–"
                    f"{max(values):.3f}</td></tr>")
    dot = ("the red dot is this run" if ours == len(body) else
           "the last point is the newest complete run, grey where it is not this one (this run "
           "is incomplete, or newer runs followed it)" if not ours else
           "the red dot is this run, a grey one the newest complete run of a variant this run "
           "did not add to the history")
    return (f"<p class='small' id='trend-caption'>speedup over its model's fp32 in each complete "
            f"run on this machine ({_e(machine)}), oldest first; {dot}</p>"
            "<table id='trends'><tr><th>variant</th><th>trend</th><th>runs</th><th>now</th>"
            "<th>vs previous</th><th>range</th></tr>" + "".join(body) + "</table>")


def _matrix(verdicts: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> str:
    keys = list(dict.fromkeys(v["key"] for v in sorted(verdicts, key=lambda v: v["key"])))
    grid: dict[str, dict[str, Mapping[str, Any]]] = {}
    for v in verdicts:
        grid.setdefault(v["case"], {})[v["key"]] = v
    position = {row_label(r): i for i, r in enumerate(rows)}
    order = sorted(grid, key=lambda c: (not any(x["outcome"].failed
                                                for x in grid[c].values()),
                                        position.get(c, len(position))))
    symbol = {Outcome.PASS: "✓", Outcome.UPDATED: "✓", Outcome.FAIL: "✗", Outcome.ERROR: "!"}
    head = "".join(f"<th title='{_e(BUDGETS[k].label if k in BUDGETS else k)}'>{_e(k)}</th>"
                   for k in keys)
    body = []
    for case in order:
        tds = []
        for k in keys:
            v = grid[case].get(k)
            if v is None:
                tds.append("<td></td>")
                continue
            cls = _outcome_class(v["outcome"])
            tds.append(f"<td class='{cls}' style='color:#fff' title='{_e(v['message'])}'>"
                       f"{symbol.get(v['outcome'], '–')}</td>")
        bad = any(x["outcome"].failed for x in grid[case].values())
        body.append(f"<tr class='{'fail' if bad else ''}' data-variant='{_e(case)}'>"
                    f"<th>{_e(case)}</th>{''.join(tds)}</tr>")
    return (f"<table class='matrix' id='matrix'><tr><th>variant</th>{head}</tr>"
            + "".join(body) + "</table><p class='small'>✓ pass, ✗ fail, ! error, – skipped "
            "(no budget or baseline, not comparable, not applicable); hover a cell for its "
            "message</p>")


def _link(out_dir: Path, target: str | os.PathLike | None, text: str) -> str:
    if not target:
        return ""
    path = Path(target)
    if not path.is_absolute():
        path = out_dir / path
    if not path.exists():
        return ""
    rel = os.path.relpath(path, out_dir)
    return f"<li><a href='{_e(Path(rel).as_posix())}'>{_e(text)}</a> <span class='small'>" \
           f"{_e(rel)}</span></li>"


def render_html(rows: Sequence[Mapping[str, Any]], record: Mapping[str, Any], *,
                history: Sequence[Mapping[str, Any]] = (), plot_png: bytes | None = None,
                out_dir: str | os.PathLike = ".") -> str:
    """The page as a string (see the module docstring)."""
    out_dir = Path(out_dir)
    verdicts = _verdict_list(record, rows)
    failed = [v for v in verdicts if v["outcome"].failed]
    cases = list(dict.fromkeys([row_label(r) for r in rows] + [v["case"] for v in verdicts]))
    failing_cases = list(dict.fromkeys(v["case"] for v in failed))
    machine = record.get("machine", {})
    title = ("FAIL" if failed else "PASS") + f": {len(failing_cases)} of {len(cases)} " \
        "variants failing"
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>navya report: {_e(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>navya report <span class='badge {'fail' if failed else 'pass'}' "
             f"id='overall'>{'FAIL' if failed else 'PASS'}</span></h1>",
             f"<div class='small'>{_e(record.get('created'))} · commit "
             f"{_e(record.get('git_commit') or 'unknown')} · {_e(machine.get('cpu_model'))}, "
             f"{_e(machine.get('cores'))} cores · CPU class <b id='cpu-class'>"
             f"{_e(_class_text(machine))}</b></div>"]
    if record.get("incomplete"):
        parts.append(f"<div class='banner warn' id='incomplete'>INCOMPLETE RUN: "
                     f"{_e(record['incomplete'])}</div>")
    if failed:
        parts.append(f"<div class='banner bad'>{len(failed)} failing check(s) in "
                     f"{len(failing_cases)} variant(s): {_e(', '.join(failing_cases))}</div>")
    else:
        parts.append(f"<div class='banner good'>every budget and baseline check of "
                     f"{len(cases)} variants passed or was skipped (see below)</div>")
    parts.append("<h2>Verdicts per variant and budget</h2>" + _matrix(verdicts, rows))
    if plot_png:
        data = base64.b64encode(plot_png).decode()
        parts.append("<h2>Speed against accuracy</h2><img class='plot' id='tradeoff' "
                     f"alt='trade-off plot' src='data:image/png;base64,{data}'>")
    parts.append("<h2>Per-class AP change against fp32</h2>" + _per_class(rows))
    parts.append("<h2>Speed on this machine over time</h2>"
                 + _trends(rows, history, str(record.get("machine_slug", "")),
                           None if record.get("incomplete") else record.get("created")))
    rows_html = []
    for v in verdicts:
        cls = _outcome_class(v["outcome"])
        rows_html.append(
            f"<tr class='{'fail' if cls in ('fail', 'error') else ''}' "
            f"data-variant='{_e(v['case'])}' data-outcome='{_e(v['outcome'].value)}'>"
            f"<td><span class='badge {cls}'>{_e(v['outcome'].value.upper())}</span></td>"
            f"<td>{_e(v['model'])}</td><td>{_e(v['case'])}</td><td>{_e(v['key'])}</td>"
            f"<td class='num'>{_value(v, 'measured')}</td><td class='num'>{_value(v, 'limit')}"
            f"</td><td class='msg'>{_e(v['message'])}</td></tr>")
    parts.append("<h2>Every check, failures first</h2><table id='verdicts'><tr><th>outcome</th>"
                 "<th>model</th><th>variant</th><th>check</th><th>measured</th><th>limit</th>"
                 "<th>message (the baseline it was compared with)</th></tr>"
                 + "".join(rows_html) + "</table>")
    prov = [("CPU", machine.get("cpu_model")), ("ISA", ", ".join(machine.get("isa", []))),
            ("cores", machine.get("cores")), ("torch", machine.get("torch_version")),
            ("quantized engine", machine.get("quantized_engine")),
            ("git commit", record.get("git_commit")), ("created", record.get("created"))]
    for model, p in record.get("models", {}).items():
        for k, v in p.items():
            prov.append((f"{model}: {k}", v))
    parts.append("<h2>Machine and provenance</h2><table id='provenance'>" + "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in prov) + "</table>")
    notes = record.get("notes", [])
    if notes:
        parts.append("<h2>Notes</h2><ul class='notes'>" + "".join(
            f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    # this run's own set: an incomplete run links its .INCOMPLETE. files, never the last
    # complete run's (issue 28, bug 2)
    files = {**report_names(bool(record.get("incomplete"))),
             **page_names(bool(record.get("incomplete")))}
    links = [_link(out_dir, files["csv"], f"{files['csv']} (every figure)"),
             _link(out_dir, files["md"], files["md"]), _link(out_dir, files["run"], files["run"]),
             _link(out_dir, files["verdicts"], files["verdicts"]),
             _link(out_dir, files["plot"], files["plot"]),
             _link(out_dir, record.get("benchmark_json"), "pytest-benchmark JSON")]
    parts.append("<h2>Files</h2><ul id='links'>" + "".join(x for x in links if x) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def page_names(incomplete: bool) -> dict[str, str]:
    """The page's files (an incomplete run's add ``.INCOMPLETE``, as its summary's do)."""
    names = {"html": HTML_FILE, "verdicts": VERDICTS_FILE, "run": RUN_FILE}
    return ({k: v.replace(".", ".INCOMPLETE.", 1) for k, v in names.items()} if incomplete
            else names)


def write_html_report(out_dir: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
                      record: Mapping[str, Any], *, history_path: str | os.PathLike | None = None
                      ) -> list[Path]:
    """Write ``index.html`` and ``verdicts.md`` into ``out_dir`` (atomically; an incomplete
    run's ``index.INCOMPLETE.html``, ...); the plot is drawn from ``rows`` and
    ``record["budgets"]``. Returns the paths."""
    out_dir = Path(out_dir)
    names = page_names(bool(record.get("incomplete")))
    history = read_history(history_path) if history_path else []
    png = _png(rows, record.get("budgets", {})) if rows else None
    # verdicts.md first: the page links it
    atomic_write_text(out_dir / names["verdicts"], verdicts_markdown(rows, record))
    page = render_html(rows, record, history=history, plot_png=png, out_dir=out_dir)
    atomic_write_text(out_dir / names["html"], page)
    return [out_dir / names["html"], out_dir / names["verdicts"]]


def report_from_dir(out_dir: str | os.PathLike) -> list[Path]:
    """``navya report DIR``: the page again from ``summary.csv`` and ``run.json``."""
    out_dir = Path(out_dir)
    csv_path = out_dir / "summary.csv"
    if not csv_path.exists():
        raise ReportError(f"{csv_path}: no summary (run `pytest benchmarks/` first)")
    try:
        rows = read_csv(csv_path)
    except ValueError as exc:
        raise ReportError(str(exc)) from exc
    record = read_run(out_dir / RUN_FILE)
    history = record.get("history_path")
    return write_html_report(out_dir, rows, record,
                             history_path=history if history and Path(history).exists() else None)
