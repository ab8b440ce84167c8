"""Measurements to CSV, a Markdown summary table, and an accuracy/latency trade-off plot.

CSV layout: one row per measurement, the columns of :data:`CSV_COLUMNS` (the scalar fields
of :class:`~navya.metrics.measure.Measurement`, in a stable order) followed by one
``ap_<class>`` column per class in class order. Floats are written with ``repr`` (shortest
exact round trip), None as an empty cell. Writes are atomic: a temporary file in the same
folder, then ``os.replace``, so a reader never sees a half-written file and a failed write
leaves the previous file intact.

Nothing here prints or sets global state (the plot uses an Agg canvas of its own).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from navya._io import atomic_write_bytes
from navya.figures import SAME_RUN_FIELDS, SAME_RUN_TEXT_FIELDS
from navya.metrics.measure import AP_PREFIX, FIELD_TYPES, ROW_FIELDS, Measurement, parse_value

__all__ = [
    "CSV_COLUMNS",
    "append_csv",
    "csv_columns",
    "fastest_within_budget",
    "runtime_gains",
    "markdown_table",
    "plot_tradeoff",
    "read_csv",
    "status_color",
    "summary_markdown",
    "summary_text",
    "write_csv",
    "write_summary",
]

#: The fixed columns of a measurements CSV, in order; per-class ``ap_<class>`` columns follow.
CSV_COLUMNS: tuple[str, ...] = ROW_FIELDS

Row = Measurement | Mapping[str, Any]


def csv_columns(class_names: Sequence[str]) -> list[str]:
    """The full header for measurements of ``class_names``: fixed columns, then AP columns."""
    return [*CSV_COLUMNS, *(AP_PREFIX + c for c in class_names)]


def _as_row(item: Row) -> dict[str, Any]:
    if isinstance(item, Measurement):
        return item.to_row()
    if isinstance(item, Mapping):
        return dict(item)
    raise TypeError(f"expected a Measurement or a mapping (row dict), got {type(item).__name__}")


# -- CSV -------------------------------------------------------------------------------------


def _cell(column: str, value: Any) -> str:
    """One CSV cell: None -> "", float -> repr (exact), int/bool/str as text."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | str):  # bool is an int
        return str(value)
    raise TypeError(
        f"column {column!r}: cannot write a {type(value).__name__} ({value!r}) to CSV; "
        "values must be str, int, float or None"
    )


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``folder`` (POSIX ``flock``), so concurrent appenders
    (pytest-xdist workers) do not lose each other's rows. No lock file is created."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_header(path: Path, text: str) -> list[str]:
    try:
        header = next(csv.reader(io.StringIO(text)), None)
    except csv.Error as exc:
        raise ValueError(f"{path}: malformed CSV header: {exc}") from None
    if not header:
        raise ValueError(f"{path}: not a measurements CSV (no header line)")
    _check_header(path, header)
    return header


def _check_header(path: Path, header: list[str]) -> None:
    if any(not c for c in header):
        raise ValueError(f"{path}: malformed CSV header: empty column name in {header}")
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise ValueError(f"{path}: malformed CSV header: duplicate column(s) {dupes}")


def append_csv(path: str | os.PathLike, measurements: Iterable[Row]) -> None:
    """Append measurements (or row dicts) to the CSV at ``path``, creating it if needed.

    A new file gets the rows' columns (for measurements: :data:`CSV_COLUMNS` then
    ``ap_<class>`` in class order). An existing file must have the same set of columns (its
    order is kept). The whole file is rewritten atomically (temporary file in the same
    folder + ``os.replace``), under an advisory lock on the folder.

    Raises:
        ValueError: the rows do not all have the same columns, or the existing file's header
            differs from them (the message names the file and the differing columns), or the
            existing file is malformed.
        TypeError: a value that cannot be written (not str, int, float or None).
    """
    path = Path(path)
    rows = [_as_row(m) for m in measurements]
    if not rows:
        return
    columns = list(rows[0])
    for i, row in enumerate(rows[1:], start=1):
        if set(row) != set(columns):
            raise ValueError(
                f"{path}: row {i} to append has other columns than row 0: "
                f"extra {sorted(set(row) - set(columns))}, "
                f"missing {sorted(set(columns) - set(row))}"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(path.parent):
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        if existing.strip():
            header = _read_header(path, existing)
            if set(header) != set(columns):
                raise ValueError(
                    f"{path}: existing header is incompatible with the rows to append: "
                    f"columns only in the file {[c for c in header if c not in columns]}, "
                    f"only in the rows {[c for c in columns if c not in header]}"
                )
            if not existing.endswith(("\n", "\r")):
                existing += "\r\n"
        else:
            header, existing = columns, ""
        body = _csv_text(rows, header, with_header=not existing)
        atomic_write_bytes(path, (existing + body).encode("utf-8"))


def _csv_text(rows: list[dict[str, Any]], header: Sequence[str], *, with_header: bool) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)  # excel dialect: \r\n line ends, minimal quoting
    if with_header:
        writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(c, row.get(c)) for c in header])
    return buf.getvalue()


def write_csv(path: str | os.PathLike, rows: Iterable[Row],
              columns: Sequence[str] | None = None) -> Path:
    """Write rows to a new CSV at ``path`` (replacing it atomically): ``columns`` (default:
    the first row's keys) in order; a key a row lacks is an empty cell."""
    path = Path(path)
    data = [_as_row(r) for r in rows]
    header = list(columns) if columns is not None else (list(data[0]) if data else [])
    atomic_write_bytes(path, _csv_text(data, header, with_header=True).encode("utf-8"))
    return path


def _typed(column: str, value: str) -> Any:
    """A CSV cell back to its Python value: "" -> None; measurement fields to their type,
    ``ap_*`` to float, anything else left as a string."""
    if value == "":
        return None
    if column in FIELD_TYPES:
        return parse_value(column, value, FIELD_TYPES[column])
    if column.startswith(AP_PREFIX) or (column in SAME_RUN_FIELDS
                                        and column not in SAME_RUN_TEXT_FIELDS):
        return parse_value(column, value, (float,))
    return value


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a measurements CSV as dicts, in file order, values typed.

    Empty cells are None; the :class:`Measurement` fields get their types (int, float, str)
    and ``ap_*`` columns are floats; other columns (e.g. the suite's ``variant``,
    ``status``) stay strings. ``Measurement.from_row(row)`` rebuilds a measurement.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed file (no header, duplicate or empty column names, a row
            with another number of fields than the header, a value of the wrong type),
            naming the file and the line.
    """
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if not header:
                raise ValueError(f"{path}: not a measurements CSV (empty file, no header line)")
            _check_header(path, header)
            out = []
            for fields in reader:
                line = reader.line_num
                if not fields:  # a blank line
                    continue
                if len(fields) != len(header):
                    raise ValueError(
                        f"{path}, line {line}: {len(fields)} fields, the header has "
                        f"{len(header)}"
                    )
                try:
                    out.append({c: _typed(c, v) for c, v in zip(header, fields, strict=True)})
                except ValueError as exc:
                    raise ValueError(f"{path}, line {line}: {exc}") from None
        except csv.Error as exc:
            raise ValueError(f"{path}, line {reader.line_num}: malformed CSV: {exc}") from None
    return out


# -- Markdown --------------------------------------------------------------------------------


def _label(row: Mapping[str, Any]) -> str:
    return str(row.get("variant") or row.get("name") or "?")


def _num(value: Any) -> float | None:
    """A finite float, or None for missing / empty / NaN values."""
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


_DASH = "–"


def _fmt(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    x = _num(value)
    return _DASH if x is None else f"{x * scale:.{digits}f}"


def _mean_std(row: Mapping[str, Any]) -> str:
    mean, std = _num(row.get("latency_ms_mean")), _num(row.get("latency_ms_std"))
    if mean is None:
        return _DASH
    return f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(measurements: Iterable[Row]) -> str:
    """A Markdown table, one column per model/variant, as the original study laid it out.

    Rows: mAP (%), AP per class (%), sparsity (%), MACs (G), params (M), peak memory (MB),
    RSS (MB), size (MB), size zipped (MB), mean inference time (ms) ± std, median (ms), FPS.
    Accepts :class:`Measurement` objects or row dicts (``to_row()`` / :func:`read_csv`
    rows; the column title is ``variant`` or else ``name``). Missing values show as "–".
    """
    rows = [_as_row(m) for m in measurements]
    classes: list[str] = []
    for row in rows:
        for key in row:
            if key.startswith(AP_PREFIX) and key[len(AP_PREFIX):] not in classes:
                classes.append(key[len(AP_PREFIX):])
    pct, giga, mega = 100.0, 1e-9, 1e-6
    table: list[tuple[str, Any]] = [("mAP (%)", lambda r: _fmt(r.get("map"), pct))]
    for c in classes:
        table.append((f"AP {c} (%)", lambda r, c=c: _fmt(r.get(AP_PREFIX + c), pct)))
    table += [
        ("sparsity (%)", lambda r: _fmt(r.get("sparsity"), pct)),
        ("MACs (G)", lambda r: _fmt(r.get("macs"), giga, 3)),
    ]
    if any(_num(r.get("effective_macs")) != _num(r.get("macs")) for r in rows):
        table.append(("effective MACs (G)", lambda r: _fmt(r.get("effective_macs"), giga, 3)))
    table += [
        ("params (M)", lambda r: _fmt(r.get("params"), mega, 2)),
        ("peak memory (MB)", lambda r: _fmt(r.get("peak_mem_mb"))),
        ("RSS (MB)", lambda r: _fmt(r.get("rss_mb"))),
        ("size (MB)", lambda r: _fmt(r.get("size_mb"), digits=2)),
        ("size zipped (MB)", lambda r: _fmt(r.get("size_zip_mb"), digits=2)),
        ("mean inference time (ms)", _mean_std),
        ("median (ms)", lambda r: _fmt(r.get("latency_ms_median"))),
        ("FPS", lambda r: _fmt(r.get("fps"))),
    ]
    lines = [
        "| | " + " | ".join(_md_escape(_label(r)) for r in rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for title, get in table:
        lines.append(f"| {title} | " + " | ".join(get(r) for r in rows) + " |")
    return "\n".join(lines) + "\n"


# -- run summary -----------------------------------------------------------------------------

#: The summary's columns: (title, row key, format); MACs are shown in G.
_SUMMARY_COLUMNS = [("variant", "name", "s"), ("mAP%", "map", ".2%"),
                    ("drop pts", "map_drop_points", "+.2f"), ("size MB", "size_mb", ".2f"),
                    ("size x", "size_ratio", ".2f"), ("zip x", "zip_size_ratio", ".2f"),
                    ("speedup", "speedup", ".2f"), ("GMACs", "macs", ".3f"),
                    ("sparsity", "sparsity", ".1%"), ("peak MB", "peak_mem_mb", ".1f"),
                    ("ms", "latency_ms_median", ".1f"), ("FPS", "fps", ".1f"),
                    ("build", "artifact", "s"), ("timed", "measured", "s"),
                    ("status", "status", "s")]


def _summary_cells(row: Mapping[str, Any]) -> list[str]:
    cells = []
    for _, key, spec in _SUMMARY_COLUMNS:
        value = row.get(key)
        if key == "name":
            value = _label(row)
        if key == "macs" and _num(value) is not None:
            value = float(value) / 1e9
        if key == "artifact" and value in ("built", "cache", "uncached"):
            seconds = _num(row.get("transform_s"))
            value = ("cache" if value == "cache" else "built") + (
                f" {seconds:.0f}s" if seconds is not None else "")
        if spec != "s":
            value = _num(value)
        cell = _DASH if value is None else format(value, spec)
        low, high = (_num(row.get(f"{key}_ci_low")), _num(row.get(f"{key}_ci_high"))
                     ) if key in ("map", "map_drop_points") else (None, None)
        if value is not None and low is not None and high is not None:
            # a bootstrap interval over the images (a model gated on a small real set)
            cell += (f" [{low:.1%}, {high:.1%}]" if key == "map" else
                     f" [{low:+.1f}, {high:+.1f}]")
        cells.append(cell)
    return cells


def _models(rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The models of rows in order of appearance (``[None]`` for rows without a model)."""
    return list(dict.fromkeys(r.get("model") for r in rows)) or [None]


def fastest_within_budget(rows: Iterable[Row], model: Any = None) -> dict[str, Any] | None:
    """The row with the largest same-run end-to-end speedup over the reference among the rows
    whose status is ``PASS`` (every budget of the variant met); None if no row passed. Rows of
    several models: those of ``model`` (default: the first row's model; each model's speedups
    are over its own fp32)."""
    data = [_as_row(r) for r in rows]
    if model is None and data:
        model = data[0].get("model")
    passed = [r for r in data if r.get("model") == model
              and r.get("status") == "PASS" and _num(r.get("speedup")) is not None]
    return max(passed, key=lambda r: _num(r["speedup"]), default=None)


def model_comparison(rows: Sequence[Row]) -> list[str]:
    """Rows of several models: each other model's fp32 against the first model's fp32, as
    measured in this run (latency at the run's threads, MACs, size, mAP)."""
    data = [_as_row(r) for r in rows]
    refs = {}
    for r in data:
        name = _label(r)
        if name == "fp32" or name.endswith(":fp32"):
            refs.setdefault(r.get("model"), r)
    if len(refs) < 2:
        return []
    (first, base), *others = refs.items()
    out = []
    for model, r in others:
        parts = []
        for key, what, scale, unit, digits in (
                ("latency_ms_median", "latency", 1.0, " ms", 1), ("macs", "MACs", 1e-9, " G", 3),
                ("size_mb", "size", 1.0, " MB", 2), ("map", "mAP", 100.0, " %", 2)):
            a, b = _num(r.get(key)), _num(base.get(key))
            if a is None or b is None:
                continue
            parts.append(f"{what} {a * scale:.{digits}f}{unit} vs {b * scale:.{digits}f}{unit}"
                         + (f" ({a / b:.2f}x)" if key != "map" and b else
                            f" ({(a - b) * 100:+.2f} pts)" if key == "map" else ""))
        reused = [m for m, x in ((model, r), (first, base)) if x.get("measured") == "reused"]
        out.append(f"fp32 {model} against fp32 {first}, same run: " + ", ".join(parts)
                   + (f" (timings of {' and '.join(reused)} reused from an earlier passing run "
                      "on the same inputs)" if reused else ""))
    return out


def runtime_gains(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Per runtime of :data:`navya.catalogue.RUNTIME_PAIRS` with a measured INT8 row: its fp32
    and INT8 speedups over torch eager fp32 (end to end, same run) and the INT8 gain over the
    runtime's own fp32 (``int8_vs_own_fp32`` = INT8 speedup / fp32 speedup)."""
    from navya.catalogue import RUNTIME_PAIRS

    by_name = {_label(r): r for r in map(_as_row, rows)}
    out = []
    for runtime, (fp32, int8) in RUNTIME_PAIRS.items():
        if int8 not in by_name or _num(by_name[int8].get("speedup")) is None:
            continue
        own = by_name.get(fp32)
        s_fp32 = 1.0 if fp32 == "fp32" else (_num(own.get("speedup")) if own else None)
        s_int8 = _num(by_name[int8]["speedup"])
        out.append({"runtime": runtime, "fp32": fp32, "int8": int8, "fp32_vs_torch": s_fp32,
                    "int8_vs_torch": s_int8,
                    "int8_vs_own_fp32": s_int8 / s_fp32 if s_fp32 else None})
    return out


def verdict_lines(rows: Sequence[Row]) -> list[str]:
    """What a person reads first: the fastest variant within budget, and each runtime's INT8
    gain over its own fp32 beside its gain over torch eager fp32."""
    data = [_as_row(r) for r in rows]
    models = _models(data)
    lines = []
    for model in models:
        best = fastest_within_budget(data, model)
        who = "" if len(models) == 1 else f" of {model}"
        if best is None:
            lines.append(f"fastest variant within budget{who}: none (no variant met all its "
                         "budgets)")
        else:
            lines.append(f"fastest variant within budget{who}: {_label(best)}, "
                         f"{_num(best['speedup']):.2f}x faster than torch eager fp32 end to end ("
                         f"{_fmt(best.get('latency_ms_median'))} ms), mAP drop "
                         f"{_fmt(best.get('map_drop_points'), digits=2)} points, "
                         f"size x{_fmt(best.get('size_ratio'), digits=2)}")
    lines += model_comparison(data)
    for g in runtime_gains(rows):
        own = (f"{g['int8_vs_own_fp32']:.2f}x its own fp32 {g['fp32']} "
               f"({g['fp32_vs_torch']:.2f}x torch)" if g["int8_vs_own_fp32"] else
               f"its own fp32 {g['fp32']} not measured")
        lines.append(f"INT8 gain, {g['runtime']}: {g['int8']} {g['int8_vs_torch']:.2f}x torch "
                     f"eager fp32, {own}")
    return lines


def summary_text(rows: Iterable[Row]) -> str:
    """A fixed-width table of a run's rows (terminal): one line per variant, its status last;
    then :func:`verdict_lines`."""
    rows = [_as_row(r) for r in rows]
    table = [[t for t, _, _ in _SUMMARY_COLUMNS]] + [_summary_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_SUMMARY_COLUMNS))]
    last = len(_SUMMARY_COLUMNS) - 1
    lines = ["  ".join(c.rjust(w) if 0 < i < last else c.ljust(w)
                       for i, (c, w) in enumerate(zip(line, widths, strict=True))).rstrip()
             for line in table]
    lines.insert(1, "-" * len(lines[0]))
    if rows:
        lines += ["", *verdict_lines(rows)]
    return "\n".join(lines)


def summary_markdown(rows: Iterable[Row], notes: Sequence[str] = ()) -> str:
    """The run's summary in Markdown: notes, a verdict table (one row per variant, with the
    same-run figures and the speedup interval), then :func:`markdown_table`'s figures (AP per
    class included)."""
    data = [_as_row(r) for r in rows]
    out = ["# navya summary", ""]
    out += [f"> {_md_escape(n)}" for n in notes] + ([""] if notes else [])
    if data:
        fastest = verdict_lines(data)[:len(_models(data))]  # one line per model first
        out += [f"**{_md_escape(line)}**  " for line in fastest] + [""]
        comparison = model_comparison(data)
        out += [f"> {_md_escape(line)}" for line in comparison] + ([""] if comparison else [])
        gains = runtime_gains(data)
        if gains:
            out += ["| runtime | fp32 variant | fp32 vs torch eager fp32 | INT8 variant | "
                    "INT8 vs torch eager fp32 | INT8 vs its own fp32 |", "|---|---|---:|---|---:|---:|"]
            out += [f"| {g['runtime']} | {g['fp32']} | {_fmt(g['fp32_vs_torch'], digits=2)}x | "
                    f"{g['int8']} | {_fmt(g['int8_vs_torch'], digits=2)}x | "
                    f"{_fmt(g['int8_vs_own_fp32'], digits=2)}x |" for g in gains]
            out.append("")
    head = [t for t, _, _ in _SUMMARY_COLUMNS]
    order = [0, len(head) - 1, *range(1, len(head) - 1)]  # variant, status, then the figures
    out.append("| " + " | ".join(head[i] for i in order) + " |")
    out.append("|" + "---|" * len(head))
    for row in data:
        cells = _summary_cells(row)
        if _num(row.get("speedup_ci_low")) is not None:
            i = head.index("speedup")
            cells[i] += f" [{row['speedup_ci_low']:.2f}, {row['speedup_ci_high']:.2f}]"
        out.append("| " + " | ".join(_md_escape(cells[i]) for i in order) + " |")
    if data:
        out += ["", "## Figures", "", markdown_table(data)]
    return "\n".join(out).rstrip("\n") + "\n"


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
    plottable = [r for r in data if all(_num(r.get(k)) is not None
                                        for k in ("map", "latency_ms_median", "size_mb"))]
    if plottable:
        paths.append(plot_tradeoff(data, out_dir / names["plot"], budgets=budgets))
    stale = [out_dir / names["plot"]] if not plottable else []
    if not incomplete:
        stale += [out_dir / n for n in report_names(True).values()]
    for path in stale:
        path.unlink(missing_ok=True)
    return paths


# -- plot ------------------------------------------------------------------------------------

def status_color(status: Any) -> str:
    """The colour of a row's status: red for failures and errors (``FAIL: <keys>``,
    ``ERROR: ...``, ``failed``), green for passes, grey for rows not checked against a budget
    (``reference``, ``NO BUDGET``, ``not checked``), blue without a status."""
    if status is None or status == "":
        return "tab:blue"
    text = str(status).strip().lower()
    if text.startswith(("fail", "error")):
        return "tab:red"
    if text.startswith("pass"):
        return "tab:green"
    return "tab:gray"


def _status_label(status: Any) -> str:
    """The legend entry of a status: ``FAIL`` for every ``FAIL: <keys>``."""
    return str(status).split(":", 1)[0].strip()

def _budget_value(budget: Any, key: str) -> float | None:
    value = budget.get(key) if isinstance(budget, Mapping) else getattr(budget, key, None)
    return _num(value)


#: Marker shape per runtime (the fill colour is the status, the edge colour the model).
RUNTIME_MARKERS = {"torch eager": "o", "onnxruntime": "s", "openvino": "D", "executorch": "^",
                   "other": "P"}
_MODEL_EDGES = ("black", "tab:blue", "tab:orange", "tab:purple")
#: Rows whose mAP drop is this many points beyond the largest budgeted drop (or 10 points)
#: are pinned at the bottom edge (a down triangle) so that they do not squash the others.
_FAR_DROP = 10.0


def runtime_of(name: str) -> str:
    """The runtime a variant (or ``model:variant`` case) runs on, from its catalogue config."""
    from navya.catalogue import UnknownVariantError, get_variant

    try:
        config = get_variant(str(name).split(":")[-1]).config
    except UnknownVariantError:
        return "other"
    kind = type(config).__name__
    return {"OnnxRuntimeConfig": "onnxruntime", "OpenVINOConfig": "openvino",
            "ExecuTorchConfig": "executorch"}.get(kind, "torch eager")


def _tradeoff_points(data: Sequence[dict[str, Any]]):
    """Per row: ``(row, speedup, drop)`` over its own model's reference (the row's same-run
    ``speedup``/``map_drop_points``, else from the ``fp32`` row of its model), or None when
    it cannot be placed."""
    refs = {}
    for r in data:
        name = _label(r)
        if name == "fp32" or name.endswith(":fp32"):
            refs.setdefault(r.get("model"), r)
    out = []
    for r in data:
        ref = refs.get(r.get("model"))
        speedup, drop = _num(r.get("speedup")), _num(r.get("map_drop_points"))
        if ref is r:
            speedup, drop = 1.0, 0.0
        if speedup is None and ref is not None:
            a, b = _num(ref.get("latency_ms_median")), _num(r.get("latency_ms_median"))
            speedup = a / b if a and b else None
            # not an isolated interleaved speedup: marked on the plot (issue 28, bug 6)
            r["_speedup_from_latency"] = speedup is not None
        if drop is None and ref is not None:
            a, b = _num(ref.get("map")), _num(r.get("map"))
            drop = (a - b) * 100.0 if a is not None and b is not None else None
        out.append((r, speedup, drop) if speedup and drop is not None else None)
    return out


def _place_labels(ax: Any, fig: Any, xy: Sequence[tuple[float, float]], texts: Sequence[str],
                  fontsize: float) -> list[Any]:
    """Number labels beside their markers without overlapping each other or the markers:
    greedy, in display pixels; each label takes the first free spot on rings of growing
    radius around its point (a leader line when it sits away from it)."""
    fig.canvas.draw()  # fixes the axes' transforms
    px = [tuple(ax.transData.transform(p)) for p in xy]
    char_w, h = fontsize * fig.dpi / 72 * 0.62, fontsize * fig.dpi / 72 * 1.15
    marker_r = 6.0
    placed: list[tuple[float, float, float, float]] = []

    def free(box):
        x0, y0, x1, y1 = box
        if any(not (x1 < a or x0 > c or y1 < b or y0 > d) for a, b, c, d in placed):
            return False
        return all((min(max(cx, x0), x1) - cx) ** 2 + (min(max(cy, y0), y1) - cy) ** 2
                   > marker_r ** 2 for cx, cy in px)

    artists = []
    for (cx, cy), text in zip(px, texts, strict=True):
        w = char_w * len(text) + 2
        best = None
        for radius in (10, 16, 23, 31, 40, 50, 62, 76, 92):
            for k in range(16):
                ang = math.pi / 4 + k * math.pi / 8
                tx, ty = cx + radius * math.cos(ang), cy + radius * math.sin(ang)
                box = (tx - w / 2, ty - h / 2, tx + w / 2, ty + h / 2)
                if free(box):
                    best = (tx, ty, box, radius)
                    break
            if best:
                break
        if best is None:  # no free spot within reach: on top, as before
            best = (cx, cy + 10, (cx - w / 2, cy + 10 - h / 2, cx + w / 2, cy + 10 + h / 2), 10)
        tx, ty, box, radius = best
        placed.append(box)
        artists.append(ax.annotate(
            text, (cx, cy), xycoords="figure pixels", xytext=(tx, ty),
            textcoords="figure pixels", ha="center", va="center", fontsize=fontsize,
            fontweight="bold", gid="navya-label", zorder=6,
            arrowprops=None if radius <= 10 else {"arrowstyle": "-", "color": "0.5",
                                                  "linewidth": 0.5, "shrinkA": 0,
                                                  "shrinkB": 3}))
    return artists


def tradeoff_figure(rows: Iterable[Row], *, budgets: Mapping[str, Any] | None = None):
    """The trade-off figure (see :func:`plot_tradeoff`); returns the matplotlib Figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    data = [_as_row(r) for r in rows]
    placed = _tradeoff_points(data)
    points = [p for p in placed if p is not None]
    skipped = [r for r, p in zip(data, placed, strict=True) if p is None]
    models = _models([r for r, _, _ in points] or data)
    edge = {m: _MODEL_EDGES[i % len(_MODEL_EDGES)] for i, m in enumerate(models)}
    gains = [g for g in runtime_gains(data) if g["int8_vs_torch"] is not None]
    fastest = {m: fastest_within_budget(data, m) for m in models}
    n_rows = len(points)
    height = max(7.0, 2.2 + 0.165 * n_rows) + (2.3 if gains else 0.0)
    fig = Figure(figsize=(14, height), dpi=100)
    FigureCanvasAgg(fig)
    top = 1 - 0.75 / height
    ax = fig.add_axes((0.06, 0.75 / height, 0.50, top - 1.55 / height))
    budgets = dict(budgets or {})

    budget_drops = [_budget_value(b, "max_map_drop_points") for b in budgets.values()]
    drop_cap = max([_FAR_DROP, *(2 * d for d in budget_drops if d is not None)])
    drops = [d for _, _, d in points if d <= drop_cap]
    y_bad = max([1.0, *drops, *(d for d in budget_drops if d is not None and d <= drop_cap)])
    y_good = min([-0.25, *drops])
    pad = 0.08 * (y_bad - y_good)
    y_lo, y_hi = y_bad + pad, y_good - pad  # inverted: less drop is up
    xs = [s for _, s, _ in points]
    x_lo = min([0.8, *xs]) / 1.12
    x_hi = max([1.25, *xs]) * 1.12
    ax.set_xscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ticks = [t for t in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20)
             if x_lo <= t <= x_hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvline(1.0, color="0.6", linewidth=0.8, zorder=1)
    ax.axhline(0.0, color="0.6", linewidth=0.8, zorder=1)

    # the Pareto front of each model: no other variant of it is both faster and more accurate
    for m in models:
        mine = sorted(((s, d) for r, s, d in points if r.get("model") == m and d <= drop_cap),
                      key=lambda p: (-p[0], p[1]))
        front, best_drop = [], math.inf
        for s, d in mine:
            if d < best_drop:
                front.append((s, d))
                best_drop = d
        if len(front) > 1:
            front.sort()
            ax.step([s for s, _ in front], [d for _, d in front], where="post",
                    color=edge[m], linestyle="--", linewidth=1.0, alpha=0.6, zorder=2)

    statuses: dict[str, str] = {}
    runtimes: list[str] = []
    xy, labels, table = [], [], []
    intervals = False
    for i, (row, s, d) in enumerate(points, start=1):
        status = row.get("status")
        color = status_color(status)
        if status:
            statuses.setdefault(_status_label(status), color)
        rt = runtime_of(_label(row))
        if rt not in runtimes:
            runtimes.append(rt)
        far = d > drop_cap
        y = y_lo - 0.03 * (y_lo - y_hi) if far else d
        estimated = bool(row.get("_speedup_from_latency"))
        ax.scatter([s], [y], s=70, marker="v" if far else RUNTIME_MARKERS[rt],
                   color="white" if estimated else color, alpha=0.8,
                   edgecolors=color if estimated else edge[row.get("model")],
                   linewidths=1.4, zorder=4)
        lo, hi = _num(row.get("map_drop_points_ci_low")), _num(row.get("map_drop_points_ci_high"))
        if lo is not None and hi is not None and not far:  # its bootstrap interval (small sets)
            ax.plot([s, s], [lo, hi], color=color, linewidth=3.0, alpha=0.22, zorder=3,
                    solid_capstyle="butt")
            intervals = True
        # this variant's own budget: a tick at its drop limit above/below it and one at its
        # speedup floor beside it, joined to it by thin lines (no global lines)
        budget = budgets.get(_label(row))
        if budget is not None and not far:
            limit = _budget_value(budget, "max_map_drop_points")
            if limit is not None and y_hi <= limit <= y_lo:
                ax.plot([s, s], [d, limit], color=color, linewidth=0.6, alpha=0.45, zorder=2)
                ax.scatter([s], [limit], marker="_", s=60, color=color, linewidths=1.2,
                           alpha=0.8, zorder=3)
            floor = _budget_value(budget, "min_speedup")
            if floor is not None and x_lo <= floor <= x_hi:
                ax.plot([s, floor], [d, d], color=color, linewidth=0.6, alpha=0.45, zorder=2)
                ax.scatter([floor], [d], marker="|", s=60, color=color, linewidths=1.2,
                           alpha=0.8, zorder=3)
        if any(best is row for best in fastest.values()):
            ax.scatter([s], [y], s=260, marker="o", facecolors="none",
                       edgecolors="tab:green", linewidths=2.0, zorder=5)
        xy.append((s, y))
        labels.append(str(i))
        mi = models.index(row.get("model")) + 1
        name = _label(row).split(":")[-1]
        table.append(f"{i:>2} {mi if len(models) > 1 else '':>1} {name[:34]:<34} {d:+6.2f} "
                     f"{s:5.2f}x {_fmt(row.get('size_mb'), digits=2):>6} "
                     f"{_status_label(status) if status else '':<9}" + (" ▼" if far else "")
                     + (" ~" if estimated else ""))

    if points:
        _place_labels(ax, fig, xy, labels, fontsize=7.5)
    else:
        ax.text(0.5, 0.5, "no variant with both a speedup and a mAP drop", transform=ax.transAxes,
                ha="center", va="center")
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=s)
               for s, c in statuses.items()]
    handles += [Line2D([], [], marker=RUNTIME_MARKERS[r], linestyle="", color="white",
                       markeredgecolor="black", label=r) for r in runtimes]
    if len(models) > 1:
        handles += [Line2D([], [], marker="o", linestyle="", color="white", markeredgewidth=1.6,
                           markeredgecolor=edge[m], label=f"{i}: {m}")
                    for i, m in enumerate(models, start=1)]
    if any(r.get("_speedup_from_latency") for r, _, _ in points):
        handles.append(Line2D([], [], marker="o", linestyle="", color="white",
                              markeredgecolor="0.3", label="hollow, ~: in-process latency "
                                                           "ratio, not an isolated speedup"))
    if intervals:
        handles.append(Line2D([], [], color="0.3", linewidth=3.0, alpha=0.3,
                              label="95 % interval (images)"))
    handles.append(Line2D([], [], color="0.3", linestyle="--", label="Pareto front"))
    handles.append(Line2D([], [], color="0.3", marker="|", linestyle="-", linewidth=0.6,
                          label="its budget limits"))
    ax.legend(handles=handles, fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.01),
              ncol=min(len(handles), 6), frameon=False, borderaxespad=0.0)
    ax.set_xlabel("speedup over its model's torch eager fp32, end to end (same run, log scale); "
                  "numbers: the table")
    ax.set_ylabel("mAP@0.5 drop (points; up is better)")
    ax.grid(True, alpha=0.3, which="major")

    head = f" # {'m' if len(models) > 1 else ' '} {'variant':<34} {'drop':>6} {'speed':>6} {'MB':>6} status"
    fig.text(0.585, top, head, fontsize=7.5, family="monospace", va="top", fontweight="bold")
    fig.text(0.585, top - 0.22 / height, "\n".join(table), fontsize=7.5, family="monospace",
             va="top", linespacing=1.25)
    if gains:
        _plot_gains(fig.add_axes((0.66, 0.55 / height, 0.30, 1.5 / height)), gains)
    if skipped:
        fig.text(0.01, 0.01, "not plotted (no speedup or mAP): " + ", ".join(
            _label(r) + (f" [{r['status']}]" if r.get("status") else "") for r in skipped),
            fontsize=7)
    caption = [f"fastest within budget{'' if len(models) == 1 else f' ({m})'}: "
               f"{_label(b)} {_num(b['speedup']):.2f}x" for m, b in fastest.items()
               if b is not None]
    if caption:
        fig.text(0.06, 1 - 0.25 / height, ";  ".join(caption), fontsize=9, color="tab:green",
                 fontweight="bold", va="top")
    return fig


def plot_tradeoff(
    rows: Iterable[Row],
    path: str | os.PathLike,
    *,
    budgets: Mapping[str, Any] | None = None,
) -> Path:
    """Write a PNG of speed against accuracy, readable at 30 variants and more.

    One marker per variant: x its end-to-end speedup over its own model's fp32 (log scale),
    y its mAP drop in points (up is better); the marker's shape is its runtime, its fill the
    status (red fails, green passes, grey unchecked), its edge the model. Markers carry
    numbers placed so that they do not overlap (leader lines where moved), and a table beside
    the axes gives each number's variant, drop, speedup, size and status. Each model's Pareto
    front is drawn; each variant's own budget (``budgets``: variant -> mapping with
    ``max_map_drop_points`` / ``min_speedup``) shows as ticks at its limits joined to its
    marker, not as global lines. Variants far beyond every budget (a destroyed model) are
    pinned at the bottom edge. The file is written atomically. Returns the path.
    """
    path = Path(path)
    fig = tradeoff_figure(rows, budgets=budgets)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _plot_gains(ax: Any, gains: Sequence[Mapping[str, Any]]) -> None:
    """Per runtime, two bars: INT8 over torch eager fp32 and INT8 over the runtime's own fp32."""
    ys = range(len(gains))
    h = 0.38
    torch_gain = [g["int8_vs_torch"] for g in gains]
    own_gain = [g["int8_vs_own_fp32"] or 0.0 for g in gains]
    ax.barh([y - h / 2 for y in ys], torch_gain, height=h, color="tab:blue",
            label="INT8 vs torch eager fp32")
    ax.barh([y + h / 2 for y in ys], own_gain, height=h, color="tab:orange",
            label="INT8 vs its own fp32")
    for y, a, b in zip(ys, torch_gain, own_gain, strict=True):
        ax.annotate(f"{a:.2f}x", (a, y - h / 2), xytext=(2, 0), textcoords="offset points",
                    va="center", fontsize=7)
        if b:
            ax.annotate(f"{b:.2f}x", (b, y + h / 2), xytext=(2, 0), textcoords="offset points",
                        va="center", fontsize=7)
    ax.set_yticks(list(ys), [g["runtime"] for g in gains], fontsize=7.5)
    ax.invert_yaxis()
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_xlim(0, max(torch_gain + own_gain) * 1.25)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title("INT8 speedup, end to end", fontsize=8.5, pad=22)
    ax.legend(fontsize=6.5, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2,
              frameon=False)
