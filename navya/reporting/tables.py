"""A run's rows as text: the Markdown table, the terminal summary, the fastest variant within
its budgets, the model and runtime comparisons, the verdict lines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from navya.figures import RUNTIME_PAIRS
from navya.metrics.measure import AP_PREFIX
from navya.reporting.rows import (
    DASH,
    Row,
    _as_row,
    fmt_value,
    is_reference,
    number,
    reference_rows,
    row_label,
)


def _mean_std(row: Mapping[str, Any]) -> str:
    mean, std = number(row.get("latency_ms_mean")), number(row.get("latency_ms_std"))
    if mean is None:
        return DASH
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
    table: list[tuple[str, Any]] = [("mAP (%)", lambda r: fmt_value(r.get("map"), pct))]
    for c in classes:
        table.append((f"AP {c} (%)", lambda r, c=c: fmt_value(r.get(AP_PREFIX + c), pct)))
    table += [
        ("sparsity (%)", lambda r: fmt_value(r.get("sparsity"), pct)),
        ("MACs (G)", lambda r: fmt_value(r.get("macs"), giga, 3)),
    ]
    if any(number(r.get("effective_macs")) != number(r.get("macs")) for r in rows):
        table.append(("effective MACs (G)", lambda r: fmt_value(r.get("effective_macs"), giga, 3)))
    table += [
        ("params (M)", lambda r: fmt_value(r.get("params"), mega, 2)),
        ("peak memory (MB)", lambda r: fmt_value(r.get("peak_mem_mb"))),
        ("RSS (MB)", lambda r: fmt_value(r.get("rss_mb"))),
        ("size (MB)", lambda r: fmt_value(r.get("size_mb"), digits=2)),
        ("size zipped (MB)", lambda r: fmt_value(r.get("size_zip_mb"), digits=2)),
        ("mean inference time (ms)", _mean_std),
        ("median (ms)", lambda r: fmt_value(r.get("latency_ms_median"))),
        ("FPS", lambda r: fmt_value(r.get("fps"))),
    ]
    lines = [
        "| | " + " | ".join(_md_escape(row_label(r)) for r in rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for title, get in table:
        lines.append(f"| {title} | " + " | ".join(get(r) for r in rows) + " |")
    return "\n".join(lines) + "\n"

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
            value = row_label(row)
        if key == "macs" and number(value) is not None:
            value = float(value) / 1e9
        if key == "artifact" and value in ("built", "cache", "uncached"):
            seconds = number(row.get("transform_s"))
            value = ("cache" if value == "cache" else "built") + (
                f" {seconds:.0f}s" if seconds is not None else "")
        if spec != "s":
            value = number(value)
        cell = DASH if value is None else format(value, spec)
        low, high = (number(row.get(f"{key}_ci_low")), number(row.get(f"{key}_ci_high"))
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
              and r.get("status") == "PASS" and number(r.get("speedup")) is not None]
    return max(passed, key=lambda r: number(r["speedup"]), default=None)

def model_comparison(rows: Sequence[Row]) -> list[str]:
    """Rows of several models: each other model's fp32 against the first model's fp32, as
    measured in this run (latency at the run's threads, MACs, size, mAP)."""
    data = [_as_row(r) for r in rows]
    refs = reference_rows(data)
    if len(refs) < 2:
        return []
    (first, base), *others = refs.items()
    out = []
    for model, r in others:
        parts = []
        for key, what, scale, unit, digits in (
                ("latency_ms_median", "latency", 1.0, " ms", 1), ("macs", "MACs", 1e-9, " G", 3),
                ("size_mb", "size", 1.0, " MB", 2), ("map", "mAP", 100.0, " %", 2)):
            a, b = number(r.get(key)), number(base.get(key))
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
    """Per runtime of :data:`navya.figures.RUNTIME_PAIRS` with a measured INT8 row: its fp32
    and INT8 speedups over torch eager fp32 (end to end, same run) and the INT8 gain over the
    runtime's own fp32 (``int8_vs_own_fp32`` = INT8 speedup / fp32 speedup)."""
    by_name = {row_label(r): r for r in map(_as_row, rows)}
    out = []
    for runtime, (fp32, int8) in RUNTIME_PAIRS.items():
        if int8 not in by_name or number(by_name[int8].get("speedup")) is None:
            continue
        own = by_name.get(fp32)
        s_fp32 = (1.0 if own is not None and is_reference(own)
                  else number(own.get("speedup")) if own else None)
        s_int8 = number(by_name[int8]["speedup"])
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
            lines.append(f"fastest variant within budget{who}: {row_label(best)}, "
                         f"{number(best['speedup']):.2f}x faster than torch eager fp32 end to end ("
                         f"{fmt_value(best.get('latency_ms_median'))} ms), mAP drop "
                         f"{fmt_value(best.get('map_drop_points'), digits=2)} points, "
                         f"size x{fmt_value(best.get('size_ratio'), digits=2)}")
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
            out += [f"| {g['runtime']} | {g['fp32']} | {fmt_value(g['fp32_vs_torch'], digits=2)}x | "
                    f"{g['int8']} | {fmt_value(g['int8_vs_torch'], digits=2)}x | "
                    f"{fmt_value(g['int8_vs_own_fp32'], digits=2)}x |" for g in gains]
            out.append("")
    head = [t for t, _, _ in _SUMMARY_COLUMNS]
    order = [0, len(head) - 1, *range(1, len(head) - 1)]  # variant, status, then the figures
    out.append("| " + " | ".join(head[i] for i in order) + " |")
    out.append("|" + "---|" * len(head))
    for row in data:
        cells = _summary_cells(row)
        if number(row.get("speedup_ci_low")) is not None:
            i = head.index("speedup")
            cells[i] += f" [{row['speedup_ci_low']:.2f}, {row['speedup_ci_high']:.2f}]"
        out.append("| " + " | ".join(_md_escape(cells[i]) for i in order) + " |")
    if data:
        out += ["", "## Figures", "", markdown_table(data)]
    return "\n".join(out).rstrip("\n") + "\n"
