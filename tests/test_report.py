"""Tests for navya.report: CSV (atomic append, round trip), Markdown table, trade-off plot."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from navya.metrics.measure import ROW_FIELDS, Measurement
from navya.reporting.plot import plot_tradeoff
from navya.reporting.rows import CSV_COLUMNS, append_csv, csv_columns, read_csv
from navya.reporting.tables import markdown_table

CLASSES = ("disc", "square", "star ring")  # a space in a class name survives the round trip


def _measurement(name: str = "fp32", classes=CLASSES, **overrides) -> Measurement:
    values = dict(
        name=name, map=0.1 + 0.2, map_voc07=1 / 3, eval_images=500, macs=16_379_728,
        effective_macs=16_379_727, params=534_732, nonzero_params=524_864,
        sparsity=0.018454104111966352, prunable_sparsity=1e-300, size_mb=2.378751,
        size_zip_mb=1.946943, peak_mem_mb=2.13205, rss_mb=772.952064,
        latency_ms_median=21.245637, latency_ms_mean=23.5150256,
        latency_ms_std=3.4218732784176566, latency_ms_p95=28.063937199999998,
        latency_ms_min=21.126961, fps=47.0684875205201, net_latency_ms_median=18.761978,
        latency_rounds=30, threads=1, batch_size=1, quantized_engine="x86",
        torch_version="2.14.1+cu130", cpu_model='AMD EPYC, "7B13"', git_commit=None,
        timestamp="2026-11-25T07:53:50+00:00",
        ap_per_class={c: v for c, v in zip(classes, (0.5, math.nan, 2 / 3, 0.25), strict=False)},
    )
    values.update(overrides)
    return Measurement(**values)


def _same(a: Measurement, b: Measurement) -> bool:
    ra, rb = a.to_row(), b.to_row()

    def eq(x, y):
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            return True
        return type(x) is type(y) and x == y

    return list(ra) == list(rb) and all(eq(ra[k], rb[k]) for k in ra)


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# -- CSV ----------------------------------------------------------------------------------------


def test_csv_round_trip_keeps_every_field_exactly(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    a = _measurement("fp32")
    b = _measurement("int8-ptq", rss_mb=None, git_commit="4b975699046b3b79d10ebfe9a33c56b9d689ff44",
                     map=0.30000000000000004, size_mb=1 / 7, macs=3)
    append_csv(path, [a, b])
    rows = read_csv(path)
    assert len(rows) == 2
    assert list(rows[0]) == csv_columns(CLASSES)
    assert list(rows[0])[: len(CSV_COLUMNS)] == list(ROW_FIELDS)
    for row, m in zip(rows, (a, b), strict=True):
        assert _same(Measurement.from_row(row, CLASSES), m)
    assert rows[1]["rss_mb"] is None and rows[1]["size_mb"] == 1 / 7
    assert isinstance(rows[1]["macs"], int)


def test_append_twice_gives_two_rows(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    append_csv(path, [_measurement("fp32")])
    append_csv(path, [_measurement("int8-ptq")])
    assert [r["name"] for r in read_csv(path)] == ["fp32", "int8-ptq"]
    assert _leftovers(tmp_path, {"m.csv"}) == []


def test_append_accepts_row_dicts_in_another_column_order(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    append_csv(path, [_measurement("fp32")])
    row = _measurement("fp16").to_row()
    append_csv(path, [dict(reversed(list(row.items())))])
    rows = read_csv(path)
    assert list(rows[1]) == csv_columns(CLASSES)  # the file's order wins
    assert _same(Measurement.from_row(rows[1]), _measurement("fp16"))


def test_incompatible_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    append_csv(path, [_measurement("fp32")])
    before = path.read_bytes()
    other = _measurement("voc", classes=("disc", "square", "cat"))
    with pytest.raises(ValueError) as err:
        append_csv(path, [other])
    message = str(err.value)
    assert str(path) in message and "ap_star ring" in message and "ap_cat" in message
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="other columns"):
        append_csv(tmp_path / "new.csv", [_measurement("a"), other])
    assert not (tmp_path / "new.csv").exists()


def test_failed_append_leaves_the_file_intact(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "m.csv"
    append_csv(path, [_measurement("fp32")])
    before = path.read_bytes()

    with pytest.raises(TypeError, match="'map'"):
        append_csv(path, [{**_measurement("bad").to_row(), "map": object()}])
    assert path.read_bytes() == before

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        append_csv(path, [_measurement("int8-ptq")])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, {"m.csv"}) == []
    assert len(read_csv(path)) == 1


def test_read_csv_reports_malformed_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.csv.*no header"):
        read_csv(empty)

    path = tmp_path / "m.csv"
    append_csv(path, [_measurement("fp32")])
    good = path.read_text()
    path.write_text(good + "x,y\r\n")
    with pytest.raises(ValueError, match=r"m\.csv, line 3: 2 fields"):
        read_csv(path)

    path.write_text(good.replace(",16379728,", ",many,", 1))
    with pytest.raises(ValueError, match=r"line 2: column 'macs'"):
        read_csv(path)

    dup = tmp_path / "dup.csv"
    dup.write_text("a,b,a\r\n1,2,3\r\n")
    with pytest.raises(ValueError, match="duplicate"):
        read_csv(dup)


def test_read_csv_keeps_foreign_columns_as_text(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    append_csv(path, [{"variant": "fp32", "status": "pass", "map": 0.25, "note": None}])
    assert read_csv(path) == [{"variant": "fp32", "status": "pass", "map": 0.25, "note": None}]


# -- Markdown -----------------------------------------------------------------------------------


def test_markdown_table_has_one_column_per_variant() -> None:
    a = _measurement("fp32", map=0.251)
    b = _measurement("int8-ptq", map=0.252, size_mb=3.85, rss_mb=None)
    table = markdown_table([a, b])
    lines = table.splitlines()
    assert lines[0] == "| | fp32 | int8-ptq |"
    assert "| mAP (%) | 25.1 | 25.2 |" in lines
    assert "| AP disc (%) | 50.0 | 50.0 |" in lines
    assert "| AP square (%) | – | – |" in lines  # NaN: no ground truth
    assert "| size (MB) | 2.38 | 3.85 |" in lines
    assert "| RSS (MB) | 773.0 | – |" in lines
    assert "| mean inference time (ms) | 23.5 ± 3.4 | 23.5 ± 3.4 |" in lines
    titles = [line.split("|")[1].strip() for line in lines[2:]]
    assert titles == ["mAP (%)", "AP disc (%)", "AP square (%)", "AP star ring (%)",
                      "sparsity (%)", "MACs (G)", "effective MACs (G)", "params (M)",
                      "peak memory (MB)", "RSS (MB)", "size (MB)", "size zipped (MB)",
                      "mean inference time (ms)", "median (ms)", "FPS"]
    # row dicts (the suite's, or read back from CSV) work the same
    assert markdown_table([a.to_row(), {"variant": "x|y", "map": None}]).splitlines()[0] == \
        "| | fp32 | x\\|y |"


# -- plot ---------------------------------------------------------------------------------------


def _suite_rows() -> list[dict]:
    return [
        {"variant": "fp32", "map": 0.60, "size_mb": 13.5, "latency_ms_median": 40.0,
         "status": "pass"},
        {"variant": "int8-ptq", "map": 0.59, "size_mb": 3.85, "latency_ms_median": 16.0,
         "status": "pass"},
        {"variant": "prune-l1-30", "map": 0.55, "size_mb": 9.6, "latency_ms_median": 38.0,
         "status": "fail"},
        {"variant": "int8-qat", "map": None, "size_mb": None, "latency_ms_median": None,
         "status": "error"},
    ]


@pytest.mark.parametrize("budgets", [
    None,
    {"int8-ptq": {"max_map_drop_points": 1.0, "min_speedup": 2.0},
     "prune-l1-30": {"max_map_drop_points": 1.0},
     "bf16": {"max_map_drop_points": 0.5, "min_speedup": 1.2}},  # not in the rows
    {"int8-ptq": SimpleNamespace(max_map_drop_points=1.0, min_speedup=2.0)},
], ids=["no-budgets", "dict-budgets", "object-budgets"])
def test_plot_writes_a_png(tmp_path: Path, budgets) -> None:
    out = tmp_path / "plots" / "tradeoff.png"
    assert plot_tradeoff(_suite_rows(), out, budgets=budgets) == out
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert _leftovers(out.parent, {"tradeoff.png"}) == []


def test_plot_accepts_measurements_and_their_rows(tmp_path: Path) -> None:
    ms = [_measurement("fp32"), replace(_measurement("int8-ptq"), latency_ms_median=9.0)]
    out = tmp_path / "t.png"
    plot_tradeoff([m.to_row() for m in ms], out, budgets={"int8-ptq": {
        "max_map_drop_points": 1.0, "min_speedup": 2.0}})
    assert out.read_bytes().startswith(b"\x89PNG")
    plot_tradeoff(ms, out)  # Measurement objects, overwriting the file
    assert out.read_bytes().startswith(b"\x89PNG")
    plot_tradeoff([], out)  # nothing to place still gives a (labelled) figure
    assert out.read_bytes().startswith(b"\x89PNG")


def test_report_sets_complete_and_incomplete(tmp_path: Path) -> None:
    from navya.reporting.summary import write_summary

    rows = [_measurement("fp32").to_row(), _measurement("int8").to_row()]
    cols = list(rows[0])
    first = write_summary(tmp_path, rows, cols)
    assert {p.name for p in first} == {"summary.csv", "summary.md", "tradeoff.png"}
    complete_md = (tmp_path / "summary.md").read_text()
    # an interrupted run: its own marked set, the last complete one untouched
    partial = write_summary(tmp_path, rows[:1], cols, incomplete="the run was interrupted")
    assert {p.name for p in partial} == {"summary.INCOMPLETE.csv", "summary.INCOMPLETE.md",
                                         "tradeoff.INCOMPLETE.png"}
    md = (tmp_path / "summary.INCOMPLETE.md").read_text()
    assert md.startswith("# navya summary (INCOMPLETE)") and "the run was interrupted" in md
    assert (tmp_path / "summary.md").read_text() == complete_md
    # a complete run without a plottable row: no stale plot, no stale incomplete set
    unplottable = [{**rows[0], "latency_ms_median": None}]
    write_summary(tmp_path, unplottable, cols)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv", "summary.md"]


# -- the verdict: fastest within budget, INT8 gain per runtime ---------------------------------


def _runtime_rows() -> list[dict]:
    def row(name, speedup, status="PASS", **kw):
        return {"variant": name, "map": 0.86, "size_mb": 3.5,
                "latency_ms_median": 35 / speedup if speedup else None, "speedup": speedup,
                "status": status, "map_drop_points": 0.1, "size_ratio": 3.6, **kw}

    return [row("fp32", None, "reference", latency_ms_median=35.0, size_mb=13.2),
            row("int8-ptq", 2.9), row("onnx-fp32", 2.1), row("onnx-int8", 4.1),
            row("openvino-int8", 3.8),  # its fp32 not in the run
            row("executorch-xnnpack-int8", 6.0, "FAIL: max_map_drop_points"),
            row("bf16", 1.2, "NO BUDGET")]


def test_fastest_within_budget_is_the_fastest_passing_row() -> None:
    from navya.reporting.tables import fastest_within_budget

    rows = _runtime_rows()
    assert fastest_within_budget(rows)["variant"] == "onnx-int8"  # the 6.0x one failed
    assert fastest_within_budget([r for r in rows if r["status"] != "PASS"]) is None


def test_runtime_gains_over_torch_and_over_own_fp32() -> None:
    from navya.reporting.tables import runtime_gains, summary_markdown, summary_text

    rows = _runtime_rows()
    gains = {g["runtime"]: g for g in runtime_gains(rows)}
    assert set(gains) == {"torch eager", "onnxruntime", "openvino", "executorch-xnnpack"}
    assert gains["torch eager"]["int8_vs_own_fp32"] == pytest.approx(2.9)
    assert gains["onnxruntime"]["int8_vs_torch"] == pytest.approx(4.1)
    assert gains["onnxruntime"]["int8_vs_own_fp32"] == pytest.approx(4.1 / 2.1)
    assert gains["openvino"]["int8_vs_own_fp32"] is None
    text = summary_text(rows)
    assert "fastest variant within budget: onnx-int8, 4.10x faster than torch eager fp32" in text
    assert "INT8 gain, onnxruntime: onnx-int8 4.10x torch eager fp32, 1.95x its own fp32" in text
    md = summary_markdown(rows)
    assert "**fastest variant within budget: onnx-int8" in md
    assert "| onnxruntime | onnx-fp32 | 2.10x | onnx-int8 | 4.10x | 1.95x |" in md


def test_plot_names_the_fastest_and_shows_the_gains(tmp_path: Path) -> None:
    from PIL import Image

    out = plot_tradeoff(_runtime_rows(), tmp_path / "t.png")
    with Image.open(out) as img:
        with_gains = img.size
    out = plot_tradeoff(_suite_rows(), tmp_path / "u.png")
    with Image.open(out) as img:
        without = img.size
    assert with_gains[0] == without[0] and with_gains[1] > without[1]  # the gains panel


def _thirty_rows():
    """30 variants of two models on four runtimes, many of them nearly on top of each other
    (the hard case for labels): speedups 1.00-1.04 and 3.0-3.1, drops within 0.1 points."""
    from navya.catalogue import variant_names

    names = [n for n in variant_names() if n != "fp32"]
    rows = [{"model": "mobilenet_v2", "variant": "fp32", "name": "fp32", "map": 0.86,
             "speedup": None, "map_drop_points": 0.0, "latency_ms_median": 36.0,
             "size_mb": 13.2, "status": "reference"}]
    rng = __import__("random").Random(0)
    for i in range(29):
        model = "mobilenet_v2" if i < 20 else "mobilenet_v3_large"
        base = names[i % len(names)]
        name = base if model == "mobilenet_v2" else f"{model}:{base}"
        fast = i % 2
        speedup = (3.0 if fast else 1.0) + rng.uniform(0, 0.1 if fast else 0.04)
        drop = rng.uniform(0.0, 0.1) if i % 7 else 60.0 + i  # a few destroyed ones
        rows.append({"model": model, "variant": name, "name": name, "map": 0.86 - drop / 100,
                     "speedup": speedup, "map_drop_points": drop,
                     "latency_ms_median": 36.0 / speedup, "size_mb": 13.2 / (1 + 3 * fast),
                     "status": "FAIL: min_speedup" if i % 5 == 0 else "PASS"})
    rows.append({"model": "mobilenet_v3_large", "variant": "mobilenet_v3_large:fp32",
                 "name": "mobilenet_v3_large:fp32", "map": 0.80, "speedup": None,
                 "map_drop_points": 0.0, "latency_ms_median": 30.0, "size_mb": 8.0,
                 "status": "reference"})
    budgets = {r["name"]: {"max_map_drop_points": 0.5, "min_speedup": 0.9 if r["speedup"]
                           and r["speedup"] < 2 else 2.8} for r in rows}
    return rows, budgets


def test_the_tradeoff_plot_stays_legible_at_thirty_variants(tmp_path: Path) -> None:
    """No two number labels overlap, none covers a marker's centre, every variant has a
    row in the side table, failing variants are red, and the figure grows with the rows."""
    from navya.reporting.plot import tradeoff_figure

    rows, budgets = _thirty_rows()
    assert len(rows) == 31
    fig = tradeoff_figure(rows, budgets=budgets)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_gid() == "navya-label"]
    assert sorted(int(t.get_text()) for t in labels) == list(range(1, 32))
    from matplotlib.text import Text

    boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the text, not its leader
    overlaps = [(labels[i].get_text(), labels[j].get_text()) for i in range(len(boxes))
                for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
    assert overlaps == []
    centres = [ax.transData.transform(o) for c in ax.collections
               for o in c.get_offsets()]
    covered = [t.get_text() for t, b in zip(labels, boxes, strict=True)
               if any(b.contains(x, y) for x, y in centres)]
    assert covered == []
    table = "\n".join(t.get_text() for t in fig.texts)
    for r in rows:
        assert r["name"].split(":")[-1][:34] in table
    from matplotlib.colors import to_hex

    reds = [c for c in ax.collections
            if len(c.get_facecolors()) and to_hex(c.get_facecolors()[0], keep_alpha=False)
            == to_hex("tab:red")]
    assert len(reds) >= sum(r["status"].startswith("FAIL") for r in rows)
    out = plot_tradeoff(rows, tmp_path / "thirty.png", budgets=budgets)
    from PIL import Image

    with Image.open(out) as img:
        assert img.size[1] > 700


def test_a_speedup_estimated_from_in_process_latency_is_marked_on_the_plot() -> None:
    """Issue 28, bug 6: a row without an isolated speedup was placed by the ratio of in-process
    latency medians and drawn like the measured ones."""
    from navya.reporting.plot import tradeoff_figure

    rows = [{"model": "m", "name": "fp32", "map": 0.8, "latency_ms_median": 40.0,
             "status": "reference"},
            {"model": "m", "name": "int8-ptq", "map": 0.79, "speedup": 3.0,
             "map_drop_points": 1.0, "status": "PASS", "latency_ms_median": 13.0},
            {"model": "m", "name": "bf16", "map": 0.8, "map_drop_points": 0.0,
             "latency_ms_median": 32.0, "status": "PASS"}]  # no isolated speedup
    fig = tradeoff_figure(rows)
    texts = "\n".join(t.get_text() for t in fig.texts)
    bf16 = next(line for line in texts.splitlines() if "bf16" in line)
    ptq = next(line for line in texts.splitlines() if "int8-ptq" in line)
    assert bf16.rstrip().endswith("~") and "1.25x" in bf16
    assert not ptq.rstrip().endswith("~")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("in-process latency ratio" in t for t in legend)
    assert "_speedup_from_latency" not in rows[2]  # the caller's rows are left alone


def test_a_drop_with_a_bootstrap_interval_draws_it() -> None:
    """A model gated on a small real set carries its drop's interval (map_drop_points_ci_*):
    the plot draws it behind the marker and names it in the legend; rows without one do not."""
    from navya.reporting.plot import tradeoff_figure

    ref = {"model": "m", "name": "fp32", "map": 0.8, "latency_ms_median": 40.0,
           "status": "reference"}
    ptq = {"model": "m", "name": "int8-ptq", "map": 0.75, "speedup": 1.4,
           "map_drop_points": 4.8, "status": "PASS"}

    def legend(rows):
        return [t.get_text() for t in tradeoff_figure(rows).axes[0].get_legend().get_texts()]

    assert "95 % interval (images)" not in legend([ref, ptq])
    with_ci = {**ptq, "map_drop_points_ci_low": -0.1, "map_drop_points_ci_high": 10.0}
    assert "95 % interval (images)" in legend([ref, with_ci])
