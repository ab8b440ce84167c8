"""The history check (navya.history): same-run ratios against the saved runs' spread; absolute
medians only reported."""

from __future__ import annotations

import json

import pytest

from navya.history import MIN_HISTORY, HistoryError, check_history, read_run


def _save(folder, n, medians, model="mobilenet_v2"):
    """A saved pytest-benchmark run: ``medians`` (variant -> seconds) at threads=1."""
    benches = [{"group": "latency threads=1", "name": f"test_latency[{v}-1]",
                "params": {"variant": v, "threads": 1}, "extra_info": {"model": model},
                "stats": {"median": m}} for v, m in medians.items()]
    path = folder / f"{n:04d}_abc_20261203_000000.json"
    path.write_text(json.dumps({"benchmarks": benches}))
    return path


def test_a_host_that_slows_every_figure_together_is_no_alarm(tmp_path):
    host = [1.0, 1.02, 0.99, 1.01, 1.0]
    for i, h in enumerate(host):
        _save(tmp_path, i + 1, {"fp32": 0.040 * h, "int8-ptq": 0.015 * h})
    _save(tmp_path, 6, {"fp32": 0.040 * 1.5, "int8-ptq": 0.015 * 1.5})  # a busy host: +50 %
    judgements, paths = check_history(tmp_path)
    assert len(paths) == 6
    (int8,) = [j for j in judgements if j.key[2] == "int8-ptq"]
    assert not int8.alarm and int8.n_history == 5
    assert int8.median_change == pytest.approx(0.5)  # reported, as information
    assert "information only" in int8.line() and ": ok" in int8.line()


def test_a_variant_that_became_slower_than_its_spread_allows_is_an_alarm(tmp_path):
    noise = [1.0, 1.01, 0.99, 1.005, 0.995]
    for i, e in enumerate(noise):
        _save(tmp_path, i + 1, {"fp32": 0.040, "int8-ptq": 0.015 * e})
    _save(tmp_path, 6, {"fp32": 0.040, "int8-ptq": 0.015 * 1.10})
    (int8,) = [j for j in check_history(tmp_path)[0] if j.key[2] == "int8-ptq"]
    assert int8.alarm and "SLOWER" in int8.line()
    assert int8.tolerance >= 0.05


def test_too_little_history_is_reported_not_judged(tmp_path):
    for i in range(MIN_HISTORY):
        _save(tmp_path, i + 1, {"fp32": 0.040, "int8-ptq": 0.015 * (1 + i)})
    (int8,) = [j for j in check_history(tmp_path)[0] if j.key[2] == "int8-ptq"]
    assert not int8.alarm and "not judged" in int8.line()


def test_a_broken_saved_run_names_its_file(tmp_path):
    bad = tmp_path / "0001_x.json"
    bad.write_text("{")
    with pytest.raises(HistoryError, match="0001_x.json"):
        read_run(bad)
