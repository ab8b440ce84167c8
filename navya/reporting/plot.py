"""The accuracy/speed trade-off plot of a run: each variant's mAP drop against its speedup, its
budgets as ticks, each model's Pareto front, the INT8 gains per runtime."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from navya._io import atomic_write_bytes
from navya.reporting.rows import Row, _as_row, fmt_value, number, reference_rows, row_label
from navya.reporting.tables import _models, fastest_within_budget, runtime_gains
from navya.verdicts import CaseId, Status


def status_color(status: Any) -> str:
    """The colour of a row's status (:class:`~navya.verdicts.Status`): red for failures and
    errors (``FAIL: <keys>``, ``ERROR: ...``), green for passes, grey for rows not checked
    against a budget (``reference``, ``NO BUDGET``, ``not checked``) or of an unknown status,
    blue without a status."""
    try:
        parsed = Status.of(None if status is None else str(status))
    except ValueError:
        return "tab:gray"
    if parsed is None:
        return "tab:blue"
    return {Status.FAIL: "tab:red", Status.ERROR: "tab:red",
            Status.PASS: "tab:green"}.get(parsed, "tab:gray")


def _status_label(status: Any) -> str:
    """The legend entry of a status: ``FAIL`` for every ``FAIL: <keys>``."""
    return str(status).split(":", 1)[0].strip()

def _budget_value(budget: Any, key: str) -> float | None:
    value = budget.get(key) if isinstance(budget, Mapping) else getattr(budget, key, None)
    return number(value)

#: Marker shape per runtime (the fill colour is the status, the edge colour the model).
RUNTIME_MARKERS = {"torch eager": "o", "onnxruntime": "s", "openvino": "D", "executorch": "^",
                   "other": "P"}

_MODEL_EDGES = ("black", "tab:blue", "tab:orange", "tab:purple")

#: Rows whose mAP drop is this many points beyond the largest budgeted drop (or 10 points)
#: are pinned at the bottom edge (a down triangle) so that they do not squash the others.
_FAR_DROP = 10.0

#: a row's ``runtime`` column (:data:`navya.figures.SAME_RUN_FIELDS`) -> its legend entry
_RUNTIME_NAMES = {"torch": "torch eager", "onnxruntime": "onnxruntime", "openvino": "openvino",
                  "executorch-xnnpack": "executorch"}


def runtime_of(row: Mapping[str, Any]) -> str:
    """The runtime a row's variant runs on: its ``runtime`` column. A summary written before
    rows had one is read through the catalogue (which imports torch) by the variant's name."""
    value = row.get("runtime")
    if value:
        return _RUNTIME_NAMES.get(str(value), "other")
    from navya.catalogue import UnknownVariantError, get_variant

    name = row_label(row)
    try:
        variant = CaseId.variant_of(name)
        return _RUNTIME_NAMES.get(get_variant(variant).runtime, "other")
    except (UnknownVariantError, ValueError):
        return "other"


def _tradeoff_points(data: Sequence[dict[str, Any]]):
    """Per row: ``(row, speedup, drop)`` over its own model's reference (the row's same-run
    ``speedup``/``map_drop_points``, else from the ``fp32`` row of its model), or None when
    it cannot be placed."""
    refs = reference_rows(data)
    out = []
    for r in data:
        ref = refs.get(r.get("model"))
        speedup, drop = number(r.get("speedup")), number(r.get("map_drop_points"))
        if ref is r:
            speedup, drop = 1.0, 0.0
        if speedup is None and ref is not None:
            a, b = number(ref.get("latency_ms_median")), number(r.get("latency_ms_median"))
            speedup = a / b if a and b else None
            # not an isolated interleaved speedup: marked on the plot (issue 28, bug 6)
            r["_speedup_from_latency"] = speedup is not None
        if drop is None and ref is not None:
            a, b = number(ref.get("map")), number(r.get("map"))
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
        rt = runtime_of(row)
        if rt not in runtimes:
            runtimes.append(rt)
        far = d > drop_cap
        y = y_lo - 0.03 * (y_lo - y_hi) if far else d
        estimated = bool(row.get("_speedup_from_latency"))
        ax.scatter([s], [y], s=70, marker="v" if far else RUNTIME_MARKERS[rt],
                   color="white" if estimated else color, alpha=0.8,
                   edgecolors=color if estimated else edge[row.get("model")],
                   linewidths=1.4, zorder=4)
        lo, hi = number(row.get("map_drop_points_ci_low")), number(row.get("map_drop_points_ci_high"))
        if lo is not None and hi is not None and not far:  # its bootstrap interval (small sets)
            ax.plot([s, s], [lo, hi], color=color, linewidth=3.0, alpha=0.22, zorder=3,
                    solid_capstyle="butt")
            intervals = True
        # this variant's own budget: a tick at its drop limit above/below it and one at its
        # speedup floor beside it, joined to it by thin lines (no global lines)
        budget = budgets.get(row_label(row))
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
        name = CaseId.variant_of(row_label(row))
        table.append(f"{i:>2} {mi if len(models) > 1 else '':>1} {name[:34]:<34} {d:+6.2f} "
                     f"{s:5.2f}x {fmt_value(row.get('size_mb'), digits=2):>6} "
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
            row_label(r) + (f" [{r['status']}]" if r.get("status") else "") for r in skipped),
            fontsize=7)
    caption = [f"fastest within budget{'' if len(models) == 1 else f' ({m})'}: "
               f"{row_label(b)} {number(b['speedup']):.2f}x" for m, b in fastest.items()
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
