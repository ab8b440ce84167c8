"""Tests for the ``navya`` command: ``data synth``, ``train`` and ``evaluate`` (tiny runs)."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import pytest

from navya import cli
from navya.data.synthetic import SYNTHETIC_CLASSES, read_fingerprint
from navya.models import load_checkpoint

SYNTH = ["--train", "4", "--val", "4", "--test", "0", "--image-size", "128"]
TRAIN = ["--width", "0.25", "--image-size", "128", "--max-iters", "3", "--epochs", "1",
         "--batch-size", "2"]


def run(argv: list[str]) -> tuple[int, str, str]:
    """``navya.cli.main(argv)`` with its stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli") / "synth"
    code, out, err = run(["data", "synth", "--out", str(d), *SYNTH])
    assert code == 0, err
    return d


@pytest.fixture(scope="module")
def checkpoint(data_dir) -> tuple[Path, str]:
    ckpt = data_dir.parent / "tiny.pt"
    code, out, err = run(["train", "--data", str(data_dir), "--out", str(ckpt), *TRAIN])
    assert code == 0, err
    return ckpt, out


def test_data_synth(data_dir):
    voc = data_dir / "VOCdevkit" / "VOC2007"
    main = voc / "ImageSets" / "Main"
    assert len(main.joinpath("train.txt").read_text().split()) == 4
    assert len(main.joinpath("val.txt").read_text().split()) == 4
    assert main.joinpath("test.txt").read_text() == ""
    assert read_fingerprint(voc) is not None


def test_data_synth_reports_what_it_wrote(tmp_path):
    code, out, _ = run(["data", "synth", "--out", str(tmp_path), "--train", "2", "--val", "1",
                        "--test", "1", "--image-size", "64", "--seed", "7"])
    assert code == 0
    fingerprint = read_fingerprint(tmp_path / "VOCdevkit" / "VOC2007")
    assert f"fingerprint {fingerprint}" in out
    assert "train 2 images" in out and "val 1 images" in out and "test 1 images" in out


def test_train_writes_a_checkpoint_with_meta(data_dir, checkpoint):
    ckpt, out = checkpoint
    assert ckpt.is_file()
    assert ckpt.with_suffix(".state.pt").is_file()  # resumable
    model, info = load_checkpoint(ckpt)
    assert info.arch == "ssdlite_mobilenet_v2"
    assert info.num_classes == len(SYNTHETIC_CLASSES) + 1
    assert info.model_config == {"width_mult": 0.25, "image_size": 128}
    meta = info.meta
    assert meta["class_names"] == list(SYNTHETIC_CLASSES)
    assert meta["data_fingerprint"] == read_fingerprint(data_dir / "VOCdevkit" / "VOC2007")
    assert meta["train_iterations"] == 2  # 1 epoch of 4 images in batches of 2: before 3
    assert meta["train_config"]["max_iters"] == 3 and meta["train_config"]["batch_size"] == 2
    assert math.isfinite(meta["final_loss"])
    val = meta["val"]
    assert val["split"] == "val" and val["images"] == 4
    assert 0.0 <= val["map"] <= 1.0 or math.isnan(val["map"])
    assert set(val["ap"]) == set(SYNTHETIC_CLASSES)
    assert "val mAP@0.5 (all-point)" in out and f"saved {ckpt}" in out


def test_training_from_scratch_is_reproducible_with_its_seed(data_dir, checkpoint):
    """The model is built after the seed is set: the same --seed gives the same weights and
    the same first loss (here: the whole run)."""
    import torch

    ckpt, _ = checkpoint
    again = data_dir.parent / "tiny-again.pt"
    code, _, err = run(["train", "--data", str(data_dir), "--out", str(again), *TRAIN])
    assert code == 0, err
    a, info_a = load_checkpoint(ckpt)
    b, info_b = load_checkpoint(again)
    assert info_a.meta["final_loss"] == info_b.meta["final_loss"]
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_evaluate_prints_a_per_class_table_and_map(data_dir, checkpoint):
    ckpt, _ = checkpoint
    code, out, err = run(["evaluate", "--checkpoint", str(ckpt), "--data", str(data_dir),
                          "--split", "val", "--json"])
    assert code == 0, err
    lines = out.splitlines()
    header = lines[0].split()
    assert header == ["class", "GT", "AP", "AP07"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:] if line.strip()}
    for name in SYNTHETIC_CLASSES:
        assert name in rows, name
        gt, ap, ap07 = rows[name]
        assert int(gt) >= 0
        assert ap == "nan" or 0.0 <= float(ap) <= 1.0
    assert "mAP" in rows
    import json

    result = json.loads(lines[-1])
    # the same mAP as recorded by train, on the same split
    _, info = load_checkpoint(ckpt)
    recorded = info.meta["val"]["map"]
    assert result["map"] == pytest.approx(recorded, nan_ok=True)
    assert rows["mAP"][1] == ("nan" if math.isnan(recorded) else f"{recorded:.4f}")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_missing_data_dir_is_a_one_line_error(tmp_path, checkpoint, command):
    missing = tmp_path / "no-such-data"
    argv = ["--data", str(missing)]
    if command == "train":
        argv += ["--out", str(tmp_path / "x.pt"), *TRAIN]
    else:
        argv += ["--checkpoint", str(checkpoint[0])]
    code, out, err = run([command, *argv])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("navya: error:")
    assert str(missing) in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()


def test_evaluate_missing_checkpoint_is_a_one_line_error(tmp_path, data_dir):
    missing = tmp_path / "none.pt"
    code, _, err = run(["evaluate", "--checkpoint", str(missing), "--data", str(data_dir)])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and str(missing) in err


def test_unknown_subcommand_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        run(["frobnicate"])
    assert exc.value.code == 2
