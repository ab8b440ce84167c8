"""Tests for navya.analysis.sweep: pruning sweeps, their CSV table and plot."""

from __future__ import annotations

import copy
import csv

import pytest
import torch

from navya.analysis.sweep import (
    METHODS,
    SweepRow,
    plot_sweep,
    ratios_from_percent,
    sweep,
    write_sweep_csv,
)
from navya.compress.prune import PruningError
from navya.models import build_model

SIZE = 128


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    from navya.data.synthetic import SyntheticConfig, generate
    from navya.data.voc import VOCDataset

    root = tmp_path_factory.mktemp("voc")
    generate(root, SyntheticConfig(splits={"val": 4}, image_size=SIZE), workers=1)
    return VOCDataset(root, "val")


@pytest.fixture(scope="module")
def model(val):
    torch.manual_seed(0)
    return build_model("ssdlite_mobilenet_v2", len(val.class_names) + 1, width_mult=0.25,
                       image_size=SIZE).eval()


@pytest.fixture(scope="module")
def rows(model, val):
    before = copy.deepcopy(model.state_dict())
    out = sweep(model, val, method="l1-unstructured", ratios=(0.0, 0.1, 0.3), eval_images=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return out


def test_one_row_per_ratio(rows, val):
    assert [r.ratio for r in rows] == [0.0, 0.1, 0.3]
    assert all(r.method == "l1-unstructured" for r in rows)
    assert rows[0].drop_points == 0.0 and rows[0].sparsity == 0.0
    assert rows[0].sparsity < rows[1].sparsity < rows[2].sparsity < 0.3
    assert rows[0].macs == rows[2].macs > rows[2].effective_macs  # zeros do not cut dense MACs
    for r in rows:
        assert set(r.ap_per_class) == set(val.class_names)
        assert 0.0 <= r.map <= 1.0
        assert r.drop_points == pytest.approx(100 * (rows[0].map - r.map))


def test_csv_has_the_study_table(rows, val, tmp_path):
    path = tmp_path / "out" / "sweep.csv"
    write_sweep_csv(rows, path)
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert [t["pruning_pct"] for t in table] == ["0", "10", "30"]
    for col in ("method", "map_pct", "drop_points", "sparsity_pct", "macs"):
        assert col in table[0]
    assert {f"ap_pct_{c}" for c in val.class_names} <= set(table[0])
    assert float(table[2]["sparsity_pct"]) == pytest.approx(100 * rows[2].sparsity, abs=0.01)
    assert not list(path.parent.glob(".*tmp"))


def test_plot_is_a_png(rows, tmp_path):
    from PIL import Image

    more = [SweepRow("random-unstructured", r.ratio, r.map * 0.9, r.ap_per_class,
                     r.drop_points, r.sparsity, r.macs) for r in rows]
    path = tmp_path / "sweep.png"
    plot_sweep(rows + more, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.verify()
    with pytest.raises(ValueError, match="no sweep rows"):
        plot_sweep([], tmp_path / "empty.png")


def test_structured_sweep_without_finetune(model, val):
    out = sweep(model, val, method="l1-structured", ratios=[0.3], eval_images=1,
                config_overrides={"finetune_iters": 0})
    assert len(out) == 1 and out[0].ratio == 0.3
    assert out[0].sparsity == 0.0  # channels are gone, not zeroed
    full = build_model("ssdlite_mobilenet_v2", len(val.class_names) + 1, width_mult=0.25,
                       image_size=SIZE)
    assert out[0].params < sum(p.numel() for p in full.parameters())


def test_ratios_from_percent():
    assert ratios_from_percent("0,2,4,5,8,10,15,20,25,30") == (
        0.0, 0.02, 0.04, 0.05, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3)
    assert ratios_from_percent([0, 50]) == (0.0, 0.5)
    with pytest.raises(PruningError, match=r"\[0, 100\)"):
        ratios_from_percent("10,100")
    with pytest.raises(PruningError, match="percents separated by commas"):
        ratios_from_percent("10;20")


def test_sweep_errors(model, val):
    with pytest.raises(PruningError, match="unknown pruning method 'l2'.*l1-unstructured"):
        sweep(model, val, method="l2", ratios=[0.1])
    with pytest.raises(PruningError, match=r"fractions in \[0, 1\).*percents"):
        sweep(model, val, method=METHODS[0], ratios=[10])
    with pytest.raises(PruningError, match="no pruning ratio"):
        sweep(model, val, method=METHODS[0], ratios=[])


def test_reference_scored_once_per_context(model, val, monkeypatch):
    import navya.metrics.evaluate as ev
    from navya.compress.base import CompressContext

    calls = []
    real = ev.evaluate_model
    monkeypatch.setattr(ev, "evaluate_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    context = CompressContext()
    a = sweep(model, val, method="l1-unstructured", ratios=[0.1], eval_images=1, context=context)
    b = sweep(model, val, method="random-unstructured", ratios=[0.1], eval_images=1,
              context=context)
    assert len(calls) == 3  # the unpruned model once, then one per pruned model
    assert a[0].map - b[0].map == pytest.approx((b[0].drop_points - a[0].drop_points) / 100)
