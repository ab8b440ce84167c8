"""The real photographs (100 VOC2012 images with their annotations, MIT, from
rafaelpadilla/review_object_detection_metrics): readable by navya as they are, with their
licence and attribution, and counts that agree with the attribution. They are kept outside the
repository (README, "Real photographs"): ``NAVYA_REAL_PHOTOS`` names the folder, by default
``../shared/real/voc2012_100`` beside the checkout; without it these tests skip, loudly."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from navya.cli import main as navya_main
from navya.data.check import check_voc
from navya.data.voc import VOC_CLASSES, VOCDataset
from navya.metrics.bootstrap import APInterval, bootstrap_ap

REAL = Path(os.environ.get("NAVYA_REAL_PHOTOS") or
            Path(__file__).resolve().parents[1].parent / "shared" / "real" / "voc2012_100")
if not (REAL / "Annotations").is_dir():
    pytest.skip(f"the real photographs are not at {REAL}: set NAVYA_REAL_PHOTOS to the folder "
                f"(README, 'Real photographs')", allow_module_level=True)
SOURCE = "https://github.com/rafaelpadilla/review_object_detection_metrics"
COMMIT = "2efe66d2c4b89e4fcc64e490d4caced2096f03aa"


def ids(split: str) -> list[str]:
    return (REAL / "ImageSets" / "Main" / f"{split}.txt").read_text().split()


def attribution() -> str:
    return (REAL / "ATTRIBUTION.md").read_text(encoding="utf-8")


def attributed_counts() -> dict[str, tuple[int, int, int]]:
    """class -> (images, objects, difficult) from ATTRIBUTION.md's table."""
    rows = re.findall(r"^\| (\w+) \| (\d+) \| (\d+) \| (\d+) \|$", attribution(), re.M)
    return {name: (int(a), int(b), int(c)) for name, a, b, c in rows}


@pytest.fixture(scope="module")
def report():
    return check_voc(REAL)


def test_navya_data_check_passes_without_any_problem(report):
    assert report.usable, report.text()
    assert report.counts == {}, report.text()  # not even a warning
    assert report.voc_dir == REAL
    assert report.class_names == VOC_CLASSES
    assert set(report.splits) == {"test", "train", "val", "trainval"}


def test_the_command_line_check_passes(capsys):
    assert navya_main(["data", "check", str(REAL)]) == 0
    assert "USABLE as it is" in capsys.readouterr().out


def test_licence_and_attribution_are_beside_the_data():
    licence = (REAL / "LICENSE").read_text(encoding="utf-8")
    assert "The MIT License (MIT)" in licence and "Copyright (c) 2020" in licence
    assert SOURCE in licence  # the licence's own attribution clause
    text = attribution()
    assert SOURCE in text and COMMIT in text
    assert "data/database/images" in text and "data/database/gts/pascalvoc_format" in text
    assert "flickr" in text.lower() and "PASCAL VOC" in text
    assert "https://doi.org/10.3390/electronics10030279" in text


def test_image_and_object_counts_match_the_attribution(report):
    n_images, n_objects, n_difficult = map(int, re.search(
        r"(\d+) images, (\d+) objects \((\d+) difficult", attribution()).groups())
    jpegs = sorted(p.stem for p in (REAL / "JPEGImages").iterdir())
    xmls = sorted(p.stem for p in (REAL / "Annotations").iterdir())
    assert len(jpegs) == len(xmls) == n_images == 100
    assert jpegs == xmls == sorted(ids("test"))
    test = report.splits["test"]
    assert (test["images"], test["objects"], test["difficult"]) == (
        n_images, n_objects, n_difficult)
    table = attributed_counts()
    assert set(table) == set(VOC_CLASSES)
    assert {c: v[1] for c, v in table.items()} == test["objects_per_class"]
    assert sum(v[1] for v in table.values()) == n_objects
    assert sum(v[2] for v in table.values()) == n_difficult


def test_splits_partition_the_images():
    train, val, trainval, test = (set(ids(s)) for s in ("train", "val", "trainval", "test"))
    assert not train & val
    assert train | val == trainval == test
    assert (len(train), len(val)) == (21, 79)  # as ATTRIBUTION.md says


def test_images_are_original_jpegs_with_the_annotated_size():
    ds = VOCDataset(REAL, "test", size_policy="error")
    assert len(ds) == 100
    for i in range(len(ds)):
        path = ds.image_path(i)
        assert path.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, as taken (not re-encoded)
    assert 7_000_000 < sum(p.stat().st_size for p in (REAL / "JPEGImages").iterdir()) < 10_000_000


def test_ground_truth_as_detections_scores_one_with_a_zero_width_interval():
    ds = VOCDataset(REAL, "test")
    targets = [ds.target(i) for i in range(len(ds))]
    predictions = [{"boxes": t["boxes"], "labels": t["labels"],
                    "scores": np.ones(len(t["labels"]))} for t in targets]
    result = bootstrap_ap(predictions, targets, ds.class_names, n_resamples=50, seed=0)
    # the points are exactly 1; a resample's all-point AP sums recall steps (k / num_gt), which
    # can add up to 1 - 1e-16
    assert result.ap["all-point"]["person"] == pytest.approx(APInterval(1.0, 1.0, 1.0), abs=1e-12)
    assert result.ap["all-point"]["person"].point == 1.0
    assert result.mean_ap["voc07"] == pytest.approx(APInterval(1.0, 1.0, 1.0), abs=1e-12)
