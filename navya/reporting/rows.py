"""A run's rows as files: the CSV layout (Measurement fields, same-run figures, ``ap_<class>``),
atomic writes and appends, typed reads; and the helpers that show a row's values."""

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
from navya.verdicts import CaseId

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

def row_label(row: Mapping[str, Any]) -> str:
    return str(row.get("variant") or row.get("name") or "?")

def number(value: Any) -> float | None:
    """A finite float, or None for missing / empty / NaN values."""
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x

DASH = "–"

def fmt_value(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    x = number(value)
    return DASH if x is None else f"{x * scale:.{digits}f}"


def is_reference(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` is its model's reference: its ``reference`` column names its own variant
    (a ``model:variant`` case's variant). A summary written before rows had that column: the
    row named ``fp32``, the default reference."""
    name = row_label(row)
    return CaseId.variant_of(name) == (row.get("reference") or "fp32")


def reference_rows(rows: Iterable[Mapping[str, Any]]) -> dict[Any, Mapping[str, Any]]:
    """Each model's reference row (the first, by ``model``)."""
    refs: dict[Any, Mapping[str, Any]] = {}
    for r in rows:
        if is_reference(r):
            refs.setdefault(r.get("model"), r)
    return refs
