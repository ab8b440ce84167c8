"""Tests for ``navya sensitivity``: per-block INT8 sensitivity from the command line (tiny runs:
a width-0.25 model at 128 px, 3 blocks, 4 evaluation and 2 calibration images)."""

from __future__ import annotations

import ast
import contextlib
import csv
import io
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from navya.cli import main

SIZE = 128
BLOCKS = ("backbone.stage1.0", "extras.2", "cls_heads.1")
TINY = ["--eval-images", "4", "--calibration-images", "2", "--observer", "minmax"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from navya.data.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("voc")
    generate(root, SyntheticConfig(splits={"train": 4, "val": 4}, image_size=SIZE), workers=1)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    from navya.data.voc import VOCDataset
    from navya.models import build_model, save_checkpoint

    names = VOCDataset(data_root, "val").class_names
    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", len(names) + 1, width_mult=0.25, image_size=SIZE)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model.eval(), {"class_names": list(names)})
    return path


def table_rows(stdout: str) -> list[list[str]]:
    """The ranked table's rows (rank, block, drop, mAP %), split on white space."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rank", "block"])
    return [line.split() for line in lines[start + 1:start + 1 + len(BLOCKS)]]


def keep_float(stdout: str) -> tuple[str, ...]:
    """The tuple of the last line, ``PTQConfig(keep_float=(...))``."""
    line = stdout.strip().splitlines()[-1]
    prefix = "PTQConfig(keep_float="
    assert line.startswith(prefix) and line.endswith(")"), line
    return ast.literal_eval(line[len(prefix):-1])


@pytest.fixture(scope="module")
def result(tmp_path_factory, data_root, checkpoint) -> tuple[Path, str]:
    """One real ``navya sensitivity --keep 2`` run: (out folder, stdout)."""
    out_dir = tmp_path_factory.mktemp("sens") / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["sensitivity", "--checkpoint", str(checkpoint), "--data", str(data_root),
                     "--blocks", ",".join(BLOCKS), *TINY, "--keep", "2",
                     "--out", str(out_dir)])
    assert code == 0, stderr.getvalue()
    assert "sensitivity" in stderr.getvalue()  # the progress bar
    return out_dir, stdout.getvalue()


def test_csv_has_one_row_per_selected_block_and_a_png(result):
    out_dir, stdout = result
    assert sorted(p.name for p in out_dir.iterdir()) == ["sensitivity.csv", "sensitivity.png"]
    with (out_dir / "sensitivity.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["block", "map_fp32", "map_quant_block_only", "drop_points"]
    assert sorted(r["block"] for r in rows) == sorted(BLOCKS)
    table = table_rows(stdout)
    assert [r["block"] for r in rows] == [t[1] for t in table]  # the CSV in table order
    for r in rows:
        assert math.isclose(float(r["drop_points"]),
                            100 * (float(r["map_fp32"]) - float(r["map_quant_block_only"])),
                            rel_tol=1e-4, abs_tol=1e-4)
    assert (out_dir / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_real_run_table_is_ranked_and_keep_prints_k_names(result):
    _, stdout = result
    table = table_rows(stdout)
    assert [t[0] for t in table] == ["1", "2", "3"]
    drops = [float(t[2]) for t in table]
    assert drops == sorted(drops, reverse=True)
    assert keep_float(stdout) == tuple(t[1] for t in table[:2])


def test_table_and_keep_follow_the_drops_not_the_block_order(data_root, checkpoint, tmp_path,
                                                             capsys, monkeypatch):
    """The untrained tiny model scores 0 mAP everywhere (every drop 0), so this run scripts
    the scores: the fp32 model 50%, then, one evaluation per block in ``--blocks`` order,
    49%, 45% and 50%, i.e. drops of 1, 5 and 0 points. The models are still built,
    quantized and run."""
    import navya.metrics.evaluate as ev

    real = ev.evaluate_model
    maps = iter([0.50, 0.49, 0.45, 0.50])

    def scripted(*args, **kwargs):
        real(*args, **kwargs)
        value = next(maps)
        return SimpleNamespace(map=lambda method: value)

    monkeypatch.setattr(ev, "evaluate_model", scripted)
    code = main(["sensitivity", "--checkpoint", str(checkpoint), "--data", str(data_root),
                 "--blocks", ",".join(BLOCKS), *TINY, "--keep", "2",
                 "--out", str(tmp_path)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "fp32 mAP 50.00% on 4 val images" in stdout
    assert table_rows(stdout) == [["1", BLOCKS[1], "5.00", "45.00"],
                                  ["2", BLOCKS[0], "1.00", "49.00"],
                                  ["3", BLOCKS[2], "0.00", "50.00"]]
    assert keep_float(stdout) == (BLOCKS[1], BLOCKS[0])
    with (tmp_path / "sensitivity.csv").open(newline="") as f:
        assert [r["block"] for r in csv.DictReader(f)] == [BLOCKS[1], BLOCKS[0], BLOCKS[2]]


@pytest.mark.parametrize("argv, pattern", [
    # the unknown name, then the valid ones
    (["--blocks", f"{BLOCKS[0]},no.such.block"],
     r"unknown block name\(s\): no\.such\.block; valid blocks: backbone\.stage1\.0, .*extras\.2"),
    (["--blocks", ",".join(BLOCKS), "--keep", "4"], r"--keep 4: .* 3 analysed blocks"),
    (["--blocks", " , "], r"--blocks names no block; valid blocks: backbone\.stage1\.0"),
], ids=["unknown-block", "keep-too-large", "no-block"])
def test_bad_arguments_exit_2_with_one_line(data_root, checkpoint, tmp_path, capsys, argv,
                                            pattern):
    out_dir = tmp_path / "out"
    code = main(["sensitivity", "--checkpoint", str(checkpoint), "--data", str(data_root),
                 *TINY, *argv, "--out", str(out_dir)])
    assert code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("navya: error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    assert not out_dir.exists()  # fails before writing anything
