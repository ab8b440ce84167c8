"""Tests for navya.data.synthetic: the deterministic synthetic VOC generator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from navya.data.synthetic import (
    SYNTHETIC_CLASSES,
    SyntheticConfig,
    generate,
    read_fingerprint,
    render_image,
)
from navya.data.voc import VOCDataset

SIZE = 128
CONFIG = SyntheticConfig(splits={"train": 16, "val": 8}, image_size=SIZE)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    info = generate(root, CONFIG, workers=1)
    return root, info


def _snapshot(voc_dir: Path) -> dict[str, bytes | str]:
    """Every file of a tree: bytes for regular files, the target for symlinks."""
    files: dict[str, bytes | str] = {}
    for p in sorted(voc_dir.rglob("*")):
        rel = str(p.relative_to(voc_dir))
        if p.is_symlink():
            files[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            files[rel] = p.read_bytes()
    return files


# -- determinism ---------------------------------------------------------------------------


def test_generating_twice_gives_identical_files(tree, tmp_path):
    _, info = tree
    again = generate(tmp_path, CONFIG, workers=1)
    assert again.fingerprint == info.fingerprint
    assert again.counts == info.counts and again.num_objects == info.num_objects
    assert _snapshot(again.voc_dir) == _snapshot(info.voc_dir)


def test_regenerating_over_an_existing_tree_is_idempotent(tmp_path):
    config = SyntheticConfig(splits={"train": 3, "val": 2}, image_size=64)
    first = generate(tmp_path, config, workers=1)
    files = _snapshot(first.voc_dir)
    second = generate(tmp_path, config, workers=1)
    assert second.fingerprint == first.fingerprint
    assert _snapshot(second.voc_dir) == files


def test_worker_count_does_not_change_the_data(tmp_path):
    # more than 50 images: generate() only uses a process pool above that
    config = SyntheticConfig(splits={"train": 48, "val": 6, "test": 6}, image_size=64)
    one = generate(tmp_path / "one", config, workers=1)
    two = generate(tmp_path / "two", config, workers=2)
    assert one.fingerprint == two.fingerprint
    assert _snapshot(one.voc_dir) == _snapshot(two.voc_dir)


def test_fingerprint_changes_with_the_seed(tree, tmp_path):
    _, info = tree
    other = generate(tmp_path, SyntheticConfig(seed=1, splits=dict(CONFIG.splits),
                                               image_size=SIZE), workers=1)
    assert other.fingerprint != info.fingerprint
    assert len(info.fingerprint) == 64 and int(info.fingerprint, 16) >= 0  # sha256 hex


def test_fingerprint_is_recorded(tree):
    _, info = tree
    assert read_fingerprint(info.voc_dir) == info.fingerprint
    meta = json.loads((info.voc_dir / "navya_synthetic.json").read_text())
    assert meta["fingerprint"] == info.fingerprint
    assert meta["counts"] == {"train": 16, "val": 8}
    assert meta["classes"] == list(SYNTHETIC_CLASSES)
    assert meta["config"]["image_size"] == SIZE and meta["config"]["seed"] == 0


def test_read_fingerprint_without_or_with_a_bad_record(tmp_path):
    assert read_fingerprint(tmp_path) is None
    (tmp_path / "navya_synthetic.json").write_text("{not json")
    with pytest.raises(ValueError, match="navya_synthetic.json"):
        read_fingerprint(tmp_path)


# -- layout and content ----------------------------------------------------------------------


def test_voc_layout_and_split_files(tree):
    root, info = tree
    voc = info.voc_dir
    assert voc == root / "VOCdevkit" / "VOC2007"
    main = voc / "ImageSets" / "Main"
    train = main.joinpath("train.txt").read_text().split()
    val = main.joinpath("val.txt").read_text().split()
    assert len(train) == 16 and len(val) == 8
    assert not set(train) & set(val)
    assert main.joinpath("trainval.txt").read_text().split() == train + val
    assert not main.joinpath("test.txt").exists()  # not asked for
    ids = set(train) | set(val)
    assert {p.stem for p in (voc / "Annotations").glob("*.xml")} == ids
    assert {p.stem for p in (voc / "JPEGImages").glob("*.png")} == ids
    for image_id in ids:  # .jpg names for tools that hard-code them, pointing at the PNG
        link = voc / "JPEGImages" / f"{image_id}.jpg"
        assert link.is_symlink() and os.readlink(link) == f"{image_id}.png"
    assert info.counts == {"train": 16, "val": 8}


def test_classes_file_lists_at_least_eight_classes(tree):
    _, info = tree
    assert len(SYNTHETIC_CLASSES) >= 8 and len(set(SYNTHETIC_CLASSES)) == len(SYNTHETIC_CLASSES)
    names = (info.voc_dir / "classes.txt").read_text().splitlines()
    assert tuple(names) == SYNTHETIC_CLASSES
    ds = VOCDataset(info.voc_dir.parent.parent, "trainval")
    assert ds.class_names == SYNTHETIC_CLASSES  # picked up from classes.txt
    seen = {int(label) for ann in ds.annotations for label in ann.labels}
    assert len(seen) >= 8  # the classes do occur, even in 24 images


@pytest.mark.parametrize("split", ["train", "val"])
def test_round_trip_through_the_voc_reader(tree, split):
    root, _ = tree
    ds = VOCDataset(root, split)
    assert len(ds) == CONFIG.splits[split]
    for i in range(len(ds)):
        pixels, boxes, labels, difficult = render_image(CONFIG, split, i)
        image, target = ds[i]
        assert torch.equal(target["boxes"], torch.from_numpy(boxes)), (split, i)
        assert torch.equal(target["labels"], torch.from_numpy(labels))
        assert torch.equal(target["difficult"], torch.from_numpy(difficult))
        assert image.shape == (3, SIZE, SIZE)
        assert torch.equal((image * 255).round().to(torch.uint8),
                           torch.from_numpy(pixels).permute(2, 0, 1))  # lossless


def test_objects_per_image_and_boxes(tree):
    root, _ = tree
    ds = VOCDataset(root, "trainval")
    counts = [len(ann.labels) for ann in ds.annotations]
    assert min(counts) >= 1 and max(counts) <= 12
    assert max(counts) > min(counts)  # not a constant count
    for ann in ds.annotations:
        b = ann.boxes
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 2] <= SIZE).all() and (b[:, 3] <= SIZE).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert ((ann.labels >= 1) & (ann.labels <= len(SYNTHETIC_CLASSES))).all()


def test_object_count_stays_within_bounds_over_many_images():
    counts = [len(render_image(SyntheticConfig(image_size=64), "train", i)[2])
              for i in range(150)]
    assert min(counts) >= 1 and max(counts) <= 12


def test_render_image_is_a_pure_function_of_seed_split_and_index():
    a = render_image(CONFIG, "val", 3)
    b = render_image(CONFIG, "val", 3)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    c = render_image(CONFIG, "train", 3)
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (SIZE, SIZE, 3) and a[0].dtype == np.uint8


def test_torchvision_voc_detection_reads_the_tree(tree):
    from torchvision.datasets import VOCDetection

    root, _ = tree
    ds = VOCDetection(str(root), year="2007", image_set="val")
    assert len(ds) == 8
    image, target = ds[0]
    assert image.size == (SIZE, SIZE) and image.mode == "RGB"
    ann = target["annotation"]
    objects = ann["object"] if isinstance(ann["object"], list) else [ann["object"]]
    mine = VOCDataset(root, "val").target(0)
    assert len(objects) == len(mine["labels"])
    assert {o["name"] for o in objects} <= set(SYNTHETIC_CLASSES)


def test_split_of_size_zero_writes_an_empty_split_file(tmp_path):
    info = generate(tmp_path, SyntheticConfig(splits={"train": 2, "val": 1, "test": 0},
                                              image_size=64), workers=1)
    assert (info.voc_dir / "ImageSets" / "Main" / "test.txt").read_text() == ""
    assert info.counts["test"] == 0


# -- config validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 32}, "image_size"),
        ({"splits": {"dev": 10}}, "unknown split"),
        ({"splits": {"train": -1}}, ">= 0"),
        ({"min_objects": 0}, "min_objects"),
        ({"min_objects": 5, "max_objects": 4}, "min_objects"),
        ({"max_distractors": -1}, "max_distractors"),
        ({"noise_std": -0.1}, "noise_std"),
    ],
)
def test_synthetic_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**kwargs)


def test_an_interrupted_generation_leaves_no_data_set(tmp_path, monkeypatch):
    import navya.data.synthetic as synthetic

    real, calls = synthetic._write_one, []

    def dies_midway(args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(args)

    monkeypatch.setattr(synthetic, "_write_one", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, SyntheticConfig(splits={"train": 6, "val": 2}, image_size=64),
                 workers=1)
    assert list(tmp_path.iterdir()) == []  # no VOCdevkit, no temporary folder


def test_verify_catches_a_subset_and_a_changed_file(tmp_path):
    from navya.data.synthetic import verify_synthetic

    info = generate(tmp_path, SyntheticConfig(splits={"train": 6, "val": 4}, image_size=64),
                    workers=1)
    assert verify_synthetic(info.voc_dir) == []
    ann = sorted((info.voc_dir / "Annotations").glob("*.xml"))
    ann[0].write_text(ann[0].read_text().replace("<difficult>0", "<difficult>1", 1) + " ")
    assert any("bytes" in p or "differs" in p for p in verify_synthetic(info.voc_dir))
    ann[1].unlink()
    assert any(f"{ann[1]} is missing" in p for p in verify_synthetic(info.voc_dir))
