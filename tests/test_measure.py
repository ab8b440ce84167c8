"""Tests for the one-model measurement (``navya.bench.measure``: one Measurement row) and the
``navya measure`` command."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import math
import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from navya.bench import measure
from navya.metrics import Measurement
from navya.metrics.measure import ROW_FIELDS, git_commit
from navya.metrics.model_stats import serialized_size

ROUNDS = 3
WARMUP = 1


def same(a: object, b: object) -> bool:
    """Equality where NaN equals NaN (APs of classes without ground truth are NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def same_row(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(same(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from navya.data.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("voc")
    generate(root, SyntheticConfig(splits={"train": 4, "val": 8}, image_size=128), workers=1)
    return root


@pytest.fixture(scope="module")
def val(data_root: Path):
    from navya.data.voc import VOCDataset

    return VOCDataset(data_root, "val")


@pytest.fixture(scope="module")
def fp32(val):
    from navya.models import build_model

    torch.manual_seed(0)
    return build_model("ssdlite_mobilenet_v2", len(val.class_names) + 1, width_mult=0.25,
                       image_size=128).eval()


@pytest.fixture(scope="module")
def fp32_measurement(fp32, val) -> Measurement:
    return measure(fp32, val, name="fp32", latency_rounds=ROUNDS, warmup=WARMUP)


@pytest.fixture(scope="module")
def int8(fp32, val):
    from navya.compress.base import CompressContext
    from navya.compress.quantize import PTQConfig, quantize_static

    # one calibration image, min-max observers: convert dominates the cost of this fixture
    config = PTQConfig(calibration_images=1, activation_observer="minmax")
    return quantize_static(fp32, config, CompressContext(train_dataset=val))


@pytest.fixture(scope="module")
def int8_run(int8, val):
    """The INT8 twin measured without RSS, recording the thread count of every core call."""
    threads_seen: list[int] = []
    handle = int8.core.register_forward_pre_hook(
        lambda module, args: threads_seen.append(torch.get_num_threads()))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = measure(int8, val, name="int8", eval_images=1, latency_rounds=ROUNDS,
                         warmup=WARMUP, rss=False)
        threads_after = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
        handle.remove()
    return result, threads_seen, threads_after


def test_every_field_is_set(fp32_measurement: Measurement, val) -> None:
    m = fp32_measurement
    for f in fields(Measurement):
        assert getattr(m, f.name) is not None, f.name
    assert m.name == "fp32"
    assert 0.0 <= m.map <= 1.0 and 0.0 <= m.map_voc07 <= 1.0
    assert m.eval_images == len(val) == 8
    assert list(m.ap_per_class) == list(val.class_names)
    assert all(math.isnan(ap) or 0.0 <= ap <= 1.0 for ap in m.ap_per_class.values())
    for name in ("macs", "effective_macs", "params", "nonzero_params", "size_mb",
                 "size_zip_mb", "peak_mem_mb", "rss_mb", "latency_ms_median",
                 "latency_ms_mean", "latency_ms_p95", "latency_ms_min", "fps",
                 "net_latency_ms_median"):
        assert getattr(m, name) > 0, name
    assert m.effective_macs <= m.macs
    assert m.nonzero_params <= m.params
    assert 0.0 <= m.sparsity < 1.0 and 0.0 <= m.prunable_sparsity < 1.0
    assert m.latency_ms_std >= 0
    assert m.latency_ms_min <= m.latency_ms_median <= m.latency_ms_p95
    assert m.fps == pytest.approx(1000.0 / m.latency_ms_median)
    assert m.rss_mb > m.peak_mem_mb  # a whole Python process with torch loaded
    assert (m.latency_rounds, m.threads, m.batch_size) == (ROUNDS, 1, 1)
    assert m.quantized_engine == torch.backends.quantized.engine
    assert m.torch_version == torch.__version__
    assert m.cpu_model.strip()
    stamp = dt.datetime.fromisoformat(m.timestamp)
    assert stamp.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - stamp) < dt.timedelta(hours=1)
    if (Path(__file__).resolve().parents[1] / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", m.git_commit)


def test_size_is_the_serialized_size(fp32_measurement: Measurement, fp32) -> None:
    size = serialized_size(fp32)
    assert fp32_measurement.size_mb == size.size_mb
    assert fp32_measurement.size_zip_mb == size.size_zip_mb


def test_measure_leaves_the_model_as_it_was(fp32, val) -> None:
    fp32.train()
    try:
        with pytest.raises(ValueError, match="batch_size"):
            measure(fp32, val, name="x", batch_size=len(val) + 1)
    finally:
        fp32.eval()


def test_int8_twin_reports_the_same_macs(fp32_measurement, int8_run, fp32) -> None:
    m8 = int8_run[0]
    assert m8.macs == fp32_measurement.macs
    assert m8.rss_mb is None  # rss=False
    assert m8.eval_images == 1
    assert m8.size_mb < fp32_measurement.size_mb / 2
    assert all(getattr(m8, f.name) is not None for f in fields(Measurement) if f.name != "rss_mb")


def test_latency_runs_at_the_requested_threads(int8_run) -> None:
    m8, threads_seen, threads_after = int8_run
    assert m8.threads == 1
    # end to end and network alone: warm-up and timed calls at 1 thread each
    assert threads_seen.count(1) >= 2 * (WARMUP + ROUNDS)
    assert threads_seen[0] == 2  # evaluation is not timed: it runs with all cores (2 here)
    assert threads_after == 2  # restored


def test_row_round_trip_keeps_every_field(fp32_measurement: Measurement, val) -> None:
    row = fp32_measurement.to_row()
    assert list(row)[: len(ROW_FIELDS)] == list(ROW_FIELDS)
    assert list(row)[len(ROW_FIELDS):] == [f"ap_{c}" for c in val.class_names]
    back = Measurement.from_row(row, val.class_names)
    assert same_row(back.to_row(), row)
    # the same from CSV-like strings (floats written with repr)
    text = {k: "" if v is None else (repr(v) if isinstance(v, float) else str(v))
            for k, v in row.items()}
    assert same_row(Measurement.from_row(text, val.class_names).to_row(), row)
    assert same_row(Measurement.from_row(text).to_row(), row)  # AP columns found by prefix


def test_from_row_names_the_bad_column(fp32_measurement: Measurement) -> None:
    row = fp32_measurement.to_row()
    with pytest.raises(ValueError, match="'macs'"):
        Measurement.from_row({**row, "macs": "many"})
    del row["timestamp"]
    with pytest.raises(ValueError, match="'timestamp'"):
        Measurement.from_row(row)


def test_bad_arguments_fail_before_any_work(fp32, val) -> None:
    for kwargs in ({"threads": 0}, {"latency_rounds": 2}, {"eval_images": 0}, {"name": ""}):
        with pytest.raises(ValueError):
            measure(fp32, val, **{"name": "x", **kwargs})


def test_detectors_pickle_in_any_memory_format(fp32) -> None:
    """The RSS worker receives the whole pickled model: channels_last must survive it."""
    import io

    model = copy.deepcopy(fp32).to(memory_format=torch.channels_last)
    model.memory_format = torch.channels_last
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=False).memory_format is torch.channels_last


def test_git_commit_is_none_without_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert git_commit() is None


# -- the command -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, fp32, val) -> Path:
    from navya.models import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, fp32, {"class_names": list(val.class_names)})
    return path


def test_cli_measure_prints_and_appends_one_row(checkpoint, data_root, val, tmp_path,
                                                capsys) -> None:
    from navya.cli import main
    from navya.reporting.rows import read_csv

    out = tmp_path / "out.csv"
    md = tmp_path / "out.md"
    code = main(["measure", "--checkpoint", str(checkpoint), "--data", str(data_root),
                 "--eval-images", "4", "--rounds", "3", "--no-rss", "--csv", str(out),
                 "--markdown", str(md)])
    assert code == 0
    printed = capsys.readouterr().out
    for key in ROW_FIELDS:
        assert re.search(rf"^{key}\s", printed, re.MULTILINE), key
    rows = read_csv(out)
    assert len(rows) == 1
    m = Measurement.from_row(rows[0], val.class_names)
    assert (m.name, m.eval_images, m.rss_mb, m.threads) == ("fp32", 4, None, 1)
    with open(out, newline="") as f:
        assert next(csv.reader(f))[-len(val.class_names):] == [f"ap_{c}"
                                                               for c in val.class_names]
    assert "| mAP (%) |" in md.read_text()


def test_cli_measure_missing_checkpoint(tmp_path, data_root, capsys) -> None:
    from navya.cli import main

    missing = tmp_path / "nope.pt"
    code = main(["measure", "--checkpoint", str(missing), "--data", str(data_root)])
    assert code == 2
    assert str(missing) in capsys.readouterr().err
