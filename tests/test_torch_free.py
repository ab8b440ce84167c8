"""Issue 28: the reports read results only. Writing a run's summary (CSV, Markdown, the
trade-off plot), its page and verdicts, reading them back (`navya report DIR`) and the shared
types (figures, verdicts, the selection) import no torch: a report can be rendered on a machine
that only holds the results."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import sys
    from pathlib import Path

    from navya import figures, spec, verdicts  # noqa: F401
    from navya.metrics.measure import row_columns
    from navya.reporting.rows import read_csv
    from navya.reporting.summary import write_summary
    from navya.reporting.page import report_from_dir, write_html_report, write_run

    out = Path(sys.argv[1])
    columns = ["model", *row_columns(["car", "person"])]
    rows = []
    for i, (name, runtime) in enumerate([("fp32", "torch"), ("int8-ptq", "torch"),
                                         ("onnx-int8", "onnxruntime")]):
        row = dict.fromkeys(columns)
        row.update(model="m", name=name, map=0.8 - i / 100, map_voc07=0.79, eval_images=8,
                   size_mb=10.0 / (i + 1), latency_ms_median=20.0 / (i + 1),
                   speedup=None if i == 0 else 1.0 + i, size_ratio=1.0 + i,
                   map_drop_points=i * 1.0, runtime=runtime,
                   status="reference" if i == 0 else "PASS" if i == 1 else "FAIL: min_speedup",
                   ap_car=0.7, ap_person=0.9)
        rows.append(row)
    budgets = {"int8-ptq": {"max_map_drop_points": 2.0, "min_speedup": 1.5}}
    paths = write_summary(out, rows, columns, notes=["a note"], budgets=budgets)
    record = {"created": "now", "git_commit": None, "incomplete": None, "machine": {},
              "machine_slug": "x", "models": {"m": {}}, "budgets": budgets, "notes": [],
              "verdicts": {"int8-ptq": {"min_speedup": {"outcome": "pass", "message": "ok",
                                                         "measured": 2.0, "limit": 1.5}}}}
    write_run(out, record, "run.json")
    paths += write_html_report(out, read_csv(out / "summary.csv"), record)
    paths += report_from_dir(out)
    assert any(p.name == "tradeoff.png" for p in paths), paths
    heavy = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    print("TORCH:", heavy[:5])
''')


def test_reports_render_without_importing_torch(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TORCH: []" in proc.stdout, proc.stdout
    for name in ("summary.csv", "summary.md", "tradeoff.png", "index.html", "verdicts.md"):
        assert (tmp_path / name).is_file(), name
