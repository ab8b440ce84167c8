"""Tests for navya.analysis.sensitivity: per-block INT8 sensitivity, CSV and bar plot."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from navya.analysis.sensitivity import (
    SensitivityRow,
    keep_most_sensitive,
    layer_sensitivity,
    plot_sensitivity,
    write_sensitivity_csv,
)
from navya.compress import quantize as Q
from navya.models import build_model

SIZE = 128
BLOCKS = ("backbone.stage1.0", "extras.2", "cls_heads.1")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from navya.data.synthetic import SyntheticConfig, generate
    from navya.data.voc import VOCDataset

    root = tmp_path_factory.mktemp("voc")
    generate(root, SyntheticConfig(splits={"train": 8, "val": 4}, image_size=SIZE), workers=1)
    return VOCDataset(root, "train"), VOCDataset(root, "val")


@pytest.fixture(scope="module")
def rows(data):
    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", 4, width_mult=0.25, image_size=SIZE).eval()
    train, val = data
    cfg = Q.PTQConfig(calibration_images=2, activation_observer="minmax")
    return layer_sensitivity(model, val, train, blocks=BLOCKS, eval_images=4, config=cfg)


def test_rows_cover_the_blocks_sorted_by_drop(rows):
    assert sorted(r.block for r in rows) == sorted(BLOCKS)
    drops = [r.drop_points for r in rows]
    assert drops == sorted(drops, reverse=True)
    for r in rows:
        assert 0.0 <= r.map_fp32 <= 1.0 and 0.0 <= r.map_quant_block_only <= 1.0
        assert math.isclose(r.drop_points, 100 * (r.map_fp32 - r.map_quant_block_only))
    assert len({r.map_fp32 for r in rows}) == 1


def test_keep_most_sensitive():
    rows = [SensitivityRow("a", 0.5, 0.49, 1.0), SensitivityRow("b", 0.5, 0.45, 5.0),
            SensitivityRow("c", 0.5, 0.5, 0.0)]
    assert keep_most_sensitive(rows, 2) == ("b", "a")
    assert keep_most_sensitive(rows, 0) == ()
    with pytest.raises(ValueError, match="only 3"):
        keep_most_sensitive(rows, 4)
    with pytest.raises(ValueError, match=">= 0"):
        keep_most_sensitive(rows, -1)
    assert Q.PTQConfig(keep_float=keep_most_sensitive(rows, 1)).keep_float == ("b",)


def test_csv_is_written_atomically_with_all_rows(rows, tmp_path):
    path = tmp_path / "sub" / "sensitivity.csv"
    write_sensitivity_csv(rows, path)
    with path.open() as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == ["block", "map_fp32", "map_quant_block_only", "drop_points"]
    assert [r["block"] for r in read] == [r.block for r in rows]
    for got, want in zip(read, rows, strict=True):
        assert math.isclose(float(got["drop_points"]), want.drop_points, rel_tol=1e-5,
                            abs_tol=1e-9)
    assert [p.name for p in path.parent.iterdir()] == ["sensitivity.csv"]  # no temp file left


def test_plot_is_a_valid_png(rows, tmp_path):
    import matplotlib.image

    path = plot_sensitivity(rows, tmp_path / "sensitivity.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300
    with pytest.raises(ValueError, match="no sensitivity rows"):
        plot_sensitivity([], tmp_path / "empty.png")


def test_unknown_block_is_an_error(data):
    model = build_model("ssdlite_mobilenet_v2", 4, width_mult=0.25, image_size=SIZE).eval()
    train, val = data
    with pytest.raises(Q.QuantizationError, match=r"unknown block name\(s\): nope; valid"):
        layer_sensitivity(model, val, train, blocks=["nope"])
