"""VOCDataset(other_classes=...): a detector of fewer classes scored on annotations that name more
(a person detector on 20-class VOC). The default stays an error naming the class; ``"ignore"``
drops those objects, counts them per class and says so once."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from navya.data.voc import VOCDataset, VOCFormatError


def _xml(image_id: str, objects: list[tuple[str, tuple[int, int, int, int], int]]) -> str:
    objs = "".join(
        f"<object><name>{name}</name><difficult>{diff}</difficult><bndbox>"
        f"<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax>"
        f"</bndbox></object>" for name, b, diff in objects)
    return (f"<annotation><filename>{image_id}.jpg</filename><size><width>64</width>"
            f"<height>48</height><depth>3</depth></size>{objs}</annotation>")


@pytest.fixture
def voc(tmp_path):
    """A tiny VOC folder: three images; persons among aeroplanes, dogs and a chair."""
    images = {
        "a": [("person", (1, 1, 20, 30), 0), ("aeroplane", (5, 5, 60, 40), 0),
              ("dog", (2, 3, 10, 12), 1)],
        "b": [("aeroplane", (1, 1, 64, 48), 0)],  # no person at all: an image without objects
        "c": [("person", (10, 10, 30, 40), 1), ("person", (31, 2, 50, 20), 0),
              ("chair", (3, 3, 9, 9), 0), ("dog", (40, 30, 60, 45), 0)],
    }
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, objects in images.items():
        (tmp_path / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, objects))
        Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(
            tmp_path / "JPEGImages" / f"{image_id}.jpg")
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("a\nb\nc\n")
    return tmp_path


def test_default_still_refuses_an_unknown_class_by_name(voc):
    with pytest.raises(VOCFormatError, match="unknown class name 'aeroplane'"):
        VOCDataset(voc, "val", class_names=["person"])
    with pytest.raises(VOCFormatError, match="unknown class name 'aeroplane'"):
        VOCDataset(voc, "val", class_names=["person"], other_classes="error")


def test_ignore_drops_other_classes_counts_them_and_warns_once(voc):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = VOCDataset(voc, "val", class_names=["person"], other_classes="ignore")
    notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(notes) == 1
    assert "5 objects of classes not in class_names dropped" in notes[0]
    assert "aeroplane 2, chair 1, dog 2" in notes[0]
    assert data.other_classes == "ignore"
    assert data.ignored_objects == {"aeroplane": 2, "chair": 1, "dog": 2}
    assert data.class_names == ("person",)
    assert len(data) == 3
    # the persons are kept with their boxes (x1 = xmin - 1) and difficult flags, label 1
    a, b, c = (data.target(i) for i in range(3))
    assert a["labels"].tolist() == [1] and a["boxes"].tolist() == [[0.0, 0.0, 20.0, 30.0]]
    assert b["labels"].tolist() == [] and tuple(b["boxes"].shape) == (0, 4)
    assert c["labels"].tolist() == [1, 1] and c["difficult"].tolist() == [True, False]
    assert c["boxes"].tolist() == [[9.0, 9.0, 30.0, 40.0], [30.0, 1.0, 50.0, 20.0]]
    image, target = data[2]
    assert tuple(image.shape) == (3, 48, 64) and target["image_id"] == "c"


def test_ignore_keeps_every_known_class_and_is_silent_when_nothing_is_dropped(voc):
    names = ["person", "aeroplane", "dog", "chair"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all
        ignoring = VOCDataset(voc, "val", class_names=names, other_classes="ignore")
    strict = VOCDataset(voc, "val", class_names=names)
    assert ignoring.ignored_objects == {} and strict.ignored_objects == {}
    assert ignoring.annotations == strict.annotations
    assert ignoring.fingerprint() == strict.fingerprint()


def test_ignored_objects_change_the_fingerprint_not_the_default(voc):
    names = ["person", "aeroplane", "dog", "chair"]
    full = VOCDataset(voc, "val", class_names=names)
    with pytest.warns(UserWarning, match="dropped"):
        person = VOCDataset(voc, "val", class_names=["person"], other_classes="ignore")
    assert person.fingerprint() != full.fingerprint()


def test_an_unknown_policy_is_refused(voc):
    with pytest.raises(VOCFormatError, match="other_classes must be one of"):
        VOCDataset(voc, "val", class_names=["person"], other_classes="drop")


def test_classes_txt_at_the_root_of_an_export_is_read_by_the_check_and_the_reader(voc):
    """Issue 28, bug 10: exports ship classes.txt beside Annotations/ or at their top; `navya
    data check` and the reader both find it there, and the unknown-class problem says how to
    fix it."""
    import shutil

    from navya.cli import main as navya_main
    from navya.data.check import check_voc

    export = voc.parent / f"{voc.name}_export"
    inner = export / "VOCdevkit" / "VOC2007"
    shutil.copytree(voc, inner)
    # no class list: Pascal VOC's 20, which know every class here
    assert check_voc(export).usable
    (export / "classes.txt").write_text("person\ndog\n")  # at the root the user names
    report = check_voc(export)
    assert report.class_names == ("person", "dog")
    assert report.classes_from == str(export / "classes.txt")
    assert not report.usable
    problem = report.to_dict()["problems"]["unknown class"]
    text = str(problem)
    assert "aeroplane" in text and "--write-classes" in text and "--classes" in text
    assert VOCDataset(export, "val", other_classes="ignore").class_names == ("person", "dog")
    # one beside Annotations/ wins over the root's
    (inner / "classes.txt").write_text("person\ndog\naeroplane\nchair\n")
    assert check_voc(export).class_names == ("person", "dog", "aeroplane", "chair")
    assert check_voc(export).usable
    # --classes names the list to check against
    assert navya_main(["data", "check", str(export), "--classes", "person,dog"]) == 1
    assert navya_main(["data", "check", str(export), "--classes",
                       "person,dog,aeroplane,chair"]) == 0
