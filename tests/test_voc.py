"""Tests for navya.data.voc: the Pascal VOC reader and annotation writer."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from navya.data.voc import (
    VOC_CLASSES,
    Annotation,
    VOCDataset,
    VOCFormatError,
    collate,
    parse_annotation,
    read_class_names,
    resolve_voc_dir,
    to_voc_xml_box,
    write_annotation,
)

# --------------------------------------------------------------------------- helpers

W, H = 32, 24  # tiny images keep the suite fast


def _boxes(rows: Sequence[Sequence[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def make_ann(
    image_id: str,
    boxes: Sequence[Sequence[float]] = (),
    labels: Sequence[int] = (),
    difficult: Sequence[bool] | None = None,
    *,
    width: int = W,
    height: int = H,
    filename: str | None = None,
    ext: str = ".png",
) -> Annotation:
    labels = list(labels)
    return Annotation(
        image_id=image_id,
        filename=filename if filename is not None else f"{image_id}{ext}",
        width=width,
        height=height,
        boxes=_boxes(boxes),
        labels=np.asarray(labels, dtype=np.int64),
        difficult=np.asarray(
            difficult if difficult is not None else [False] * len(labels), dtype=bool
        ),
    )


def write_image(path: Path, width: int, height: int, *, mode: str = "RGB", seed: int = 0) -> None:
    """A small random image; JPEG if the suffix says so, else PNG (lossless)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def make_voc(
    root: Path,
    anns: Sequence[Annotation],
    *,
    split: str = "val",
    year: str = "2007",
    class_names: Sequence[str] = VOC_CLASSES,
    classes_txt: Sequence[str] | None = None,
    images: bool = True,
) -> Path:
    """Write ``root/VOCdevkit/VOC<year>`` with images, XMLs and the split file; return it."""
    voc = root / "VOCdevkit" / f"VOC{year}"
    for k, ann in enumerate(anns):
        write_annotation(
            voc / "Annotations" / f"{ann.image_id}.xml", ann, class_names, folder=f"VOC{year}"
        )
        if images:
            write_image(voc / "JPEGImages" / ann.filename, ann.width, ann.height, seed=k)
    split_dir = voc / "ImageSets" / "Main"
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / f"{split}.txt").write_text("".join(f"{a.image_id}\n" for a in anns))
    if classes_txt is not None:
        (voc / "classes.txt").write_text("\n".join(classes_txt) + "\n")
    return voc


def standard_anns() -> list[Annotation]:
    return [
        make_ann("000001", [[0, 0, 10, 5], [3, 4, 32, 24]], [12, 15], [False, True]),
        make_ann("000002", [[1, 2, 3, 4]], [1]),
        make_ann("000003"),  # no objects
    ]


# A real-VOC-style file (VOC2007 000001.xml-like), with <source>, <owner>, <pose>,
# <truncated>, <segmented> and a <part> that has its own <bndbox>.
REAL_XML = """\
<annotation>
	<folder>VOC2007</folder>
	<filename>{filename}</filename>
	<source>
		<database>The VOC2007 Database</database>
		<annotation>PASCAL VOC2007</annotation>
		<image>flickr</image>
		<flickrid>341012865</flickrid>
	</source>
	<owner>
		<flickrid>Fried Camels</flickrid>
		<name>Jinky the Fruit Bat</name>
	</owner>
	<size>
		<width>{width}</width>
		<height>{height}</height>
		<depth>3</depth>
	</size>
	<segmented>0</segmented>
	<object>
		<name>dog</name>
		<pose>Left</pose>
		<truncated>1</truncated>
		<difficult>0</difficult>
		<bndbox>
			<xmin>{xmin}</xmin>
			<ymin>{ymin}</ymin>
			<xmax>{xmax}</xmax>
			<ymax>{ymax}</ymax>
		</bndbox>
	</object>
	<object>
		<name>{name2}</name>
		<pose>Left</pose>
		<truncated>1</truncated>
		<difficult>1</difficult>
		<bndbox>
			<xmin>8</xmin>
			<ymin>12</ymin>
			<xmax>352</xmax>
			<ymax>498</ymax>
		</bndbox>
		<part>
			<name>head</name>
			<bndbox>
				<xmin>1</xmin>
				<ymin>1</ymin>
				<xmax>2</xmax>
				<ymax>2</ymax>
			</bndbox>
		</part>
	</object>
</annotation>
"""
REAL_DEFAULTS = dict(
    filename="000001.jpg",
    width="353",
    height="500",
    xmin="48",
    ymin="240",
    xmax="195",
    ymax="371",
    name2="person",
)


def real_xml(**overrides: str) -> str:
    return REAL_XML.format(**{**REAL_DEFAULTS, **overrides})


# --------------------------------------------------------------------------- constants


def test_voc_classes() -> None:
    assert len(VOC_CLASSES) == 20 == len(set(VOC_CLASSES))
    assert VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[-1] == "tvmonitor"
    assert VOC_CLASSES.index("person") == 14
    assert issubclass(VOCFormatError, ValueError)


# --------------------------------------------------------------------------- parser / writer


def test_parse_real_voc_style_xml(tmp_path: Path) -> None:
    path = tmp_path / "000001.xml"
    path.write_text(real_xml())
    ann, n_fixed = parse_annotation(path, VOC_CLASSES)
    assert n_fixed == 0
    assert (ann.image_id, ann.filename, ann.width, ann.height) == ("000001", "000001.jpg", 353, 500)
    # 1-based inclusive -> 0-based continuous; the <part> bndbox is not an object
    np.testing.assert_array_equal(ann.boxes, [[47, 239, 195, 371], [7, 11, 352, 498]])
    assert ann.boxes.dtype == np.float32 and ann.boxes.shape == (2, 4)
    assert ann.labels.dtype == np.int64
    assert ann.labels.tolist() == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("person") + 1]
    assert ann.difficult.dtype == np.bool_ and ann.difficult.tolist() == [False, True]
    assert len(ann) == 2


def test_parse_float_coordinates_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "x.xml"
    path.write_text(
        "<annotation><size><width>100</width><height>50</height></size>"
        "<object><name> cat </name><bndbox><xmin>10.5</xmin><ymin>2</ymin>"
        "<xmax>20.5</xmax><ymax>30</ymax></bndbox></object></annotation>"
    )
    ann, _ = parse_annotation(path, VOC_CLASSES)
    assert ann.filename == "x.jpg"  # no <filename>: VOC convention
    np.testing.assert_array_equal(ann.boxes, [[9.5, 1, 20.5, 30]])
    assert ann.difficult.tolist() == [False]  # no <difficult>
    assert ann.labels.tolist() == [VOC_CLASSES.index("cat") + 1]


def test_to_voc_xml_box_is_one_based() -> None:
    assert to_voc_xml_box([0, 0, 10, 5]) == (1, 1, 10, 5)
    assert to_voc_xml_box(np.array([46.9, 239.2, 195.0, 371.4])) == (48, 240, 195, 371)
    assert all(type(v) is int for v in to_voc_xml_box(np.zeros(4, np.float32)))


def test_write_annotation_xml_content(tmp_path: Path) -> None:
    path = tmp_path / "a" / "000007.xml"  # parent created
    ann = make_ann("000007", [[0, 0, 10, 5]], [VOC_CLASSES.index("dog") + 1], [True], ext=".jpg")
    write_annotation(path, ann, VOC_CLASSES, folder="VOC2012")
    text = path.read_text()
    for fragment in (
        "<folder>VOC2012</folder>",
        "<filename>000007.jpg</filename>",
        f"<width>{W}</width>",
        f"<height>{H}</height>",
        "<depth>3</depth>",
        "<name>dog</name>",
        "<pose>Unspecified</pose>",
        "<truncated>0</truncated>",
        "<difficult>1</difficult>",
        "<xmin>1</xmin>",
        "<ymin>1</ymin>",
        "<xmax>10</xmax>",
        "<ymax>5</ymax>",
    ):
        assert fragment in text
    assert [p.name for p in path.parent.iterdir()] == ["000007.xml"]  # no temp file left
    back, n = parse_annotation(path, VOC_CLASSES)
    assert n == 0 and back == ann


def test_write_annotation_overwrites_and_escapes(tmp_path: Path) -> None:
    names = ("salt & pepper", "<odd>")
    path = tmp_path / "q.xml"
    write_annotation(path, make_ann("q", [[0, 0, 1, 1]], [1]), names)
    ann = make_ann("q", [[1, 1, 5, 5], [2, 2, 3, 3]], [1, 2], filename="a&b.png")
    write_annotation(path, ann, names)
    back, _ = parse_annotation(path, names)
    assert back == ann
    assert len(list(tmp_path.iterdir())) == 1


def test_write_annotation_rejects_bad_label(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="label 0"):
        write_annotation(tmp_path / "b.xml", make_ann("b", [[0, 0, 1, 1]], [0]), VOC_CLASSES)
    with pytest.raises(ValueError, match="label 21"):
        write_annotation(tmp_path / "b.xml", make_ann("b", [[0, 0, 1, 1]], [21]), VOC_CLASSES)
    assert not (tmp_path / "b.xml").exists()


def test_annotation_coerces_and_freezes() -> None:
    ann = make_ann("z", [[0, 0, 2, 2]], [3])
    assert ann.boxes.dtype == np.float32 and not ann.boxes.flags.writeable
    with pytest.raises(ValueError):
        ann.boxes[0, 0] = 5
    with pytest.raises(ValueError, match="lengths differ"):
        Annotation("z", "z.png", 4, 4, np.zeros((2, 4)), np.ones(1), np.zeros(2))
    empty = make_ann("e")
    assert empty.boxes.shape == (0, 4) and empty.labels.shape == (0,)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_integer_boxes_round_trip_property(tmp_path_factory: pytest.TempPathFactory, data) -> None:
    width = data.draw(st.integers(1, 2000), label="width")
    height = data.draw(st.integers(1, 2000), label="height")
    n = data.draw(st.integers(0, 6), label="n")
    rows = []
    for _ in range(n):
        # VOC indices: 1 <= xmin <= xmax <= width  <=>  0 <= x1 < x2 <= width
        xmin = data.draw(st.integers(1, width))
        xmax = data.draw(st.integers(xmin, width))
        ymin = data.draw(st.integers(1, height))
        ymax = data.draw(st.integers(ymin, height))
        rows.append([xmin - 1, ymin - 1, xmax, ymax])
    labels = data.draw(st.lists(st.integers(1, 20), min_size=n, max_size=n), label="labels")
    difficult = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="difficult")
    ann = make_ann("p", rows, labels, difficult, width=width, height=height)

    path = tmp_path_factory.getbasetemp() / "roundtrip" / "p.xml"
    write_annotation(path, ann, VOC_CLASSES)
    back, n_fixed = parse_annotation(path, VOC_CLASSES, degenerate="error")
    assert n_fixed == 0
    assert back == ann
    assert [to_voc_xml_box(b) for b in back.boxes] == [
        (int(r[0]) + 1, int(r[1]) + 1, int(r[2]), int(r[3])) for r in rows
    ]


# --------------------------------------------------------------------------- dataset


def test_dataset_round_trip(tmp_path: Path) -> None:
    anns = standard_anns()
    make_voc(tmp_path, anns)
    ds = VOCDataset(tmp_path)
    assert len(ds) == 3 and ds.split == "val" and ds.ids == ["000001", "000002", "000003"]
    assert ds.class_names == VOC_CLASSES
    assert ds.voc_dir == tmp_path / "VOCdevkit" / "VOC2007"
    assert ds.annotations == anns
    for i, ann in enumerate(anns):
        t = ds.target(i)
        assert t["boxes"].dtype == torch.float32 and t["boxes"].shape == (len(ann), 4)
        assert t["labels"].dtype == torch.int64 and t["difficult"].dtype == torch.bool
        np.testing.assert_array_equal(t["boxes"].numpy(), ann.boxes)
        np.testing.assert_array_equal(t["labels"].numpy(), ann.labels)
        np.testing.assert_array_equal(t["difficult"].numpy(), ann.difficult)
        assert t["image_id"] == ann.image_id and t["orig_size"] == (H, W)
        assert ds.image_path(i) == ds.voc_dir / "JPEGImages" / f"{ann.image_id}.png"
    assert ds.target(2)["boxes"].shape == (0, 4)
    assert ds.target(-1)["image_id"] == "000003"
    with pytest.raises(IndexError):
        ds.target(3)


def test_target_matches_getitem_and_image_tensor(tmp_path: Path) -> None:
    make_voc(tmp_path, standard_anns())
    ds = VOCDataset(tmp_path)
    for i in range(len(ds)):
        image, target = ds[i]
        expected = ds.target(i)
        assert target.keys() == expected.keys()
        for key in ("boxes", "labels", "difficult"):
            assert torch.equal(target[key], expected[key])
        assert target["image_id"] == expected["image_id"]
        assert target["orig_size"] == expected["orig_size"]
        assert image.dtype == torch.float32 and image.shape == (3, H, W)
        assert image.is_contiguous()
        assert 0.0 <= image.min() and image.max() <= 1.0
        pixels = np.asarray(Image.open(ds.image_path(i)).convert("RGB"))
        np.testing.assert_allclose(image.permute(1, 2, 0).numpy() * 255, pixels, atol=1e-3)
    # targets are fresh copies: mutating one does not corrupt the dataset
    ds.target(0)["boxes"].zero_()
    assert ds.target(0)["boxes"].sum() > 0


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_non_rgb_images_become_rgb(tmp_path: Path, mode: str) -> None:
    voc = make_voc(tmp_path, [make_ann("g", [[0, 0, 4, 4]], [1])])
    write_image(voc / "JPEGImages" / "g.png", W, H, mode=mode)
    image, _ = VOCDataset(tmp_path)[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    if mode == "L":
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_transforms_and_collate(tmp_path: Path) -> None:
    make_voc(tmp_path, standard_anns())

    def flip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        width = image.shape[-1]
        boxes = target["boxes"].clone()
        boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
        return image.flip(-1), {**target, "boxes": boxes}

    ds = VOCDataset(tmp_path, transforms=flip)
    image, target = ds[0]
    assert torch.equal(target["boxes"][0], torch.tensor([22.0, 0, 32, 5]))
    assert ds.target(0)["boxes"][0].tolist() == [0, 0, 10, 5]  # target() is untransformed

    loader = torch.utils.data.DataLoader(VOCDataset(tmp_path), batch_size=3, collate_fn=collate)
    images, targets = next(iter(loader))
    assert isinstance(images, list) and isinstance(targets, list)
    assert [len(t["labels"]) for t in targets] == [2, 1, 0]
    assert all(img.shape == (3, H, W) for img in images)
    assert collate([]) == ([], [])


def test_limit(tmp_path: Path) -> None:
    make_voc(tmp_path, standard_anns())
    ds = VOCDataset(tmp_path, limit=2)
    assert ds.ids == ["000001", "000002"] and len(ds) == 2 and len(ds.annotations) == 2
    assert len(VOCDataset(tmp_path, limit=100)) == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="limit"):
            VOCDataset(tmp_path, limit=bad)


def test_limit_skips_broken_files_beyond_it(tmp_path: Path) -> None:
    voc = make_voc(tmp_path, standard_anns())
    (voc / "Annotations" / "000003.xml").write_text("<annotation>")
    assert len(VOCDataset(tmp_path, limit=2)) == 2


def test_bad_policy_rejected(tmp_path: Path) -> None:
    make_voc(tmp_path, standard_anns())
    with pytest.raises(ValueError, match="degenerate"):
        VOCDataset(tmp_path, degenerate="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="degenerate"):
        parse_annotation(tmp_path / "x.xml", VOC_CLASSES, degenerate="nope")  # type: ignore[arg-type]


def test_other_split_and_per_class_split_format(tmp_path: Path) -> None:
    voc = make_voc(tmp_path, standard_anns(), split="trainval")
    # ImageSets/Main/<class>_<split>.txt style lines: "<id> <flag>", blank lines ignored
    (voc / "ImageSets" / "Main" / "dog_trainval.txt").write_text("000001  1\n\n000003 -1\n")
    assert VOCDataset(tmp_path, "trainval").ids == ["000001", "000002", "000003"]
    assert VOCDataset(tmp_path, "dog_trainval").ids == ["000001", "000003"]


# --------------------------------------------------------------------------- classes


def test_custom_class_names_argument(tmp_path: Path) -> None:
    names = ("widget", "gadget")
    anns = [make_ann("a", [[0, 0, 4, 4], [5, 5, 9, 9]], [2, 1])]
    voc = make_voc(tmp_path, anns, class_names=names)
    assert "<name>gadget</name>" in (voc / "Annotations" / "a.xml").read_text()
    ds = VOCDataset(tmp_path, class_names=list(names))
    assert ds.class_names == names
    assert ds.target(0)["labels"].tolist() == [2, 1]
    # the default VOC class list does not know these names
    with pytest.raises(VOCFormatError, match="unknown class name 'gadget'"):
        VOCDataset(tmp_path)


def test_classes_txt(tmp_path: Path) -> None:
    names = ("widget", "gadget", "gizmo")
    voc = make_voc(
        tmp_path, [make_ann("a", [[0, 0, 4, 4]], [3])], class_names=names, classes_txt=names
    )
    assert read_class_names(voc) == names
    ds = VOCDataset(tmp_path)
    assert ds.class_names == names and ds.target(0)["labels"].tolist() == [3]
    # an explicit list wins over classes.txt (and here relabels)
    assert VOCDataset(tmp_path, class_names=("gizmo",)).target(0)["labels"].tolist() == [1]


def test_read_class_names_absent_empty_duplicate(tmp_path: Path) -> None:
    assert read_class_names(tmp_path) is None
    (tmp_path / "classes.txt").write_text("  \n\n")
    with pytest.raises(VOCFormatError, match=r"classes\.txt.*empty"):
        read_class_names(tmp_path)
    (tmp_path / "classes.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(VOCFormatError, match=r"classes\.txt.*'cat'.*twice"):
        read_class_names(tmp_path)
    (tmp_path / "classes.txt").write_text(" cat \r\ndog\r\n\r\n")
    assert read_class_names(tmp_path) == ("cat", "dog")


def test_duplicate_class_names_argument_rejected(tmp_path: Path) -> None:
    make_voc(tmp_path, standard_anns())
    with pytest.raises(ValueError, match="duplicates"):
        VOCDataset(tmp_path, class_names=("dog", "dog"))
    with pytest.raises(TypeError):
        VOCDataset(tmp_path, class_names="dog")


# --------------------------------------------------------------------------- root resolution


@pytest.mark.parametrize("which", ["parent", "VOCdevkit", "VOC2007"])
def test_root_forms(tmp_path: Path, which: str) -> None:
    voc = make_voc(tmp_path, standard_anns())
    root = {"parent": tmp_path, "VOCdevkit": voc.parent, "VOC2007": voc}[which]
    assert resolve_voc_dir(root, "2007") == voc
    assert resolve_voc_dir(str(root), 2007) == voc
    assert len(VOCDataset(root)) == 3


def test_other_year(tmp_path: Path) -> None:
    voc = make_voc(tmp_path, standard_anns(), year="2012")
    assert VOCDataset(tmp_path, year="2012").voc_dir == voc
    with pytest.raises(VOCFormatError) as exc:
        VOCDataset(tmp_path)  # year 2007 is not there
    msg = str(exc.value)
    assert "VOCdevkit/VOC2007/Annotations" in msg.replace("\\", "/")
    assert "VOC2012" in msg  # points at what is there


def test_root_not_found_lists_candidates(tmp_path: Path) -> None:
    with pytest.raises(VOCFormatError) as exc:
        resolve_voc_dir(tmp_path / "nowhere", "2007")
    msg = str(exc.value).replace("\\", "/")
    assert "nowhere/Annotations" in msg
    assert "nowhere/VOCdevkit/VOC2007/Annotations" in msg
    assert "nowhere/VOC2007/Annotations" in msg


# --------------------------------------------------------------------------- errors


def _xml_error(tmp_path: Path, text: str) -> str:
    """Write a tree whose second file is ``text``; return the VOCFormatError message."""
    voc = make_voc(tmp_path, standard_anns())
    (voc / "Annotations" / "000002.xml").write_text(text)
    with pytest.raises(VOCFormatError) as exc:  # the XML's <size> trusted (the default takes
        VOCDataset(tmp_path, size_policy="annotation")  # the image's: test_voc_quirks.py)
    msg = str(exc.value)
    assert "000002.xml" in msg
    assert "Traceback" not in msg
    return msg


_BAD_XML = {
    "missing size": (
        re.sub(r"<size>.*?</size>", "", real_xml(), flags=re.S),
        ["missing <size>"],
    ),
    "missing width": (
        real_xml().replace("<width>353</width>", ""),
        ["missing <size/width>"],
    ),
    "missing height": (
        real_xml().replace("<height>500</height>", ""),
        ["missing <size/height>"],
    ),
    "zero width": (real_xml(width="0"), ["size/width", "positive integer"]),
    "non-numeric height": (real_xml(height="big"), ["size/height", "not a number", "'big'"]),
    "missing bndbox": (
        re.sub(r"<bndbox>\s*<xmin>48.*?</bndbox>", "", real_xml(), flags=re.S),
        ["object[0] 'dog'", "missing <bndbox>"],
    ),
    "missing coordinate": (
        real_xml().replace("<ymax>371</ymax>", ""),
        ["object[0] 'dog'", "missing <bndbox/ymax>"],
    ),
    "non-numeric coordinate": (
        real_xml(xmin="4B"),
        ["object[0] 'dog'", "<bndbox/xmin> is not a number", "'4B'"],
    ),
    "nan coordinate": (real_xml(ymin="nan"), ["object[0] 'dog'", "bndbox/ymin", "not finite"]),
    "unknown class": (
        real_xml(name2="unicorn"),
        ["object[1]", "unknown class name 'unicorn'", "known classes", "'aeroplane'"],
    ),
    "missing name": (real_xml(name2=""), ["object[1]", "missing <name>"]),
    "bad difficult": (
        real_xml().replace("<difficult>1</difficult>", "<difficult>yes</difficult>"),
        ["object[1] 'person'", "<difficult>", "'yes'"],
    ),
    "wrong root": ("<annotations></annotations>", ["expected <annotation>"]),
}


@pytest.mark.parametrize("case", sorted(_BAD_XML))
def test_bad_xml_errors(tmp_path: Path, case: str) -> None:
    text, fragments = _BAD_XML[case]
    msg = _xml_error(tmp_path, text)
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_malformed_xml_reports_line_and_column(tmp_path: Path) -> None:
    text = real_xml().replace("</owner>", "</ownr>")
    line = text[: text.index("</ownr>")].count("\n") + 1
    msg = _xml_error(tmp_path, text)
    assert "malformed XML" in msg
    assert f"line {line}, column" in msg
    # the standalone parser raises the same error type
    with pytest.raises(VOCFormatError, match="malformed XML"):
        parse_annotation(tmp_path / "VOCdevkit/VOC2007/Annotations/000002.xml", VOC_CLASSES)


def test_parse_annotation_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VOCFormatError, match=r"ghost\.xml.*not found"):
        parse_annotation(tmp_path / "ghost.xml", VOC_CLASSES)


def test_missing_image_file(tmp_path: Path) -> None:
    voc = make_voc(tmp_path, standard_anns())
    (voc / "JPEGImages" / "000002.png").unlink()
    with pytest.raises(VOCFormatError) as exc:
        VOCDataset(tmp_path)
    msg = str(exc.value)
    assert "000002.xml" in msg and "image file not found" in msg
    for name in ("000002.png", "000002.jpg", "000002.jpeg"):
        assert name in msg


def test_image_fallback_to_id_extension(tmp_path: Path) -> None:
    voc = make_voc(
        tmp_path, [make_ann("a", [[0, 0, 4, 4]], [1], filename="renamed.jpg")], images=False
    )
    write_image(voc / "JPEGImages" / "a.png", W, H)
    ds = VOCDataset(tmp_path)
    assert ds.image_path(0).name == "a.png"
    assert ds[0][0].shape == (3, H, W)


def test_image_size_mismatch_raises_on_load(tmp_path: Path) -> None:
    voc = make_voc(tmp_path, standard_anns())
    write_image(voc / "JPEGImages" / "000002.png", W + 1, H)
    ds = VOCDataset(tmp_path, size_policy="annotation")
    with pytest.raises(VOCFormatError, match=r"000002\.png.*33x24.*32x24"):
        ds[1]
    with pytest.warns(UserWarning, match="1 annotation with a missing, zero or wrong <size>"):
        assert VOCDataset(tmp_path)[1][0].shape == (3, H, W + 1)  # default: the image's size


def test_unreadable_image_raises_on_load(tmp_path: Path) -> None:
    voc = make_voc(tmp_path, standard_anns())
    (voc / "JPEGImages" / "000002.png").write_bytes(b"not an image")
    with pytest.raises(VOCFormatError, match=r"000002\.png.*cannot read image"):
        VOCDataset(tmp_path)[1]


def test_missing_split_file(tmp_path: Path) -> None:
    make_voc(tmp_path, standard_anns())
    with pytest.raises(VOCFormatError) as exc:
        VOCDataset(tmp_path, "test")
    msg = str(exc.value).replace("\\", "/")
    assert "ImageSets/Main/test.txt" in msg and "split file not found" in msg
    assert "available: val" in msg


def test_empty_split_file(tmp_path: Path) -> None:
    voc = make_voc(tmp_path, standard_anns())
    (voc / "ImageSets" / "Main" / "val.txt").write_text("\n  \n")
    with pytest.raises(VOCFormatError, match=r"val\.txt.*split file is empty"):
        VOCDataset(tmp_path)


def test_duplicate_id_in_split(tmp_path: Path) -> None:
    voc = make_voc(tmp_path, standard_anns())
    (voc / "ImageSets" / "Main" / "val.txt").write_text("000001\n000002\n000001\n")
    with pytest.raises(VOCFormatError, match=r"val\.txt: line 3: id '000001' repeats line 1"):
        VOCDataset(tmp_path)


def test_missing_annotation_for_split_id(tmp_path: Path) -> None:
    voc = make_voc(tmp_path, standard_anns())
    (voc / "ImageSets" / "Main" / "val.txt").write_text("000001\n000009\n")
    with pytest.raises(VOCFormatError) as exc:
        VOCDataset(tmp_path)
    msg = str(exc.value)
    assert "000009.xml" in msg and "annotation missing" in msg and "val.txt" in msg


# --------------------------------------------------------------------------- degenerate boxes


def degenerate_tree(tmp_path: Path) -> Path:
    """3 bad boxes in 2 files, plus good ones (navya coordinates, image 32x24)."""
    anns = [
        make_ann("000001", [[0, 0, 10, 5]], [1]),  # fine
        make_ann(
            "000002",
            [
                [2, 2, 8, 8],  # fine
                [-3, 4, 40, 10],  # partly outside: clipped to [0, 4, 32, 10]
                [9, 9, 5, 12],  # inverted (xmax < xmin): dropped
            ],
            [1, 2, 3],
        ),
        make_ann("000003", [[40, 1, 50, 6], [1, 1, 3, 3]], [4, 5]),  # fully outside; fine
    ]
    return make_voc(tmp_path, anns)


def test_degenerate_clip_single_warning(tmp_path: Path) -> None:
    degenerate_tree(tmp_path)
    with pytest.warns(UserWarning) as record:
        ds = VOCDataset(tmp_path)
    assert len(record) == 1
    msg = str(record[0].message)
    assert re.search(
        r"VOC val: 3 degenerate boxes clipped/dropped \(policy 'clip'\) in 2 files", msg
    )
    assert "first: " in msg and "000002.xml" in msg and "object[1]" in msg
    assert record[0].filename == __file__  # stacklevel points at the caller
    assert ds.target(0)["boxes"].tolist() == [[0, 0, 10, 5]]
    assert ds.target(1)["boxes"].tolist() == [[2, 2, 8, 8], [0, 4, 32, 10]]
    assert ds.target(1)["labels"].tolist() == [1, 2]
    assert ds.target(2)["boxes"].tolist() == [[1, 1, 3, 3]]
    assert ds.target(2)["labels"].tolist() == [5]


def test_degenerate_skip(tmp_path: Path) -> None:
    degenerate_tree(tmp_path)
    with pytest.warns(
        UserWarning, match=r"VOC val: 3 degenerate boxes .*policy 'skip'.* in 2 files"
    ):
        ds = VOCDataset(tmp_path, degenerate="skip")
    assert ds.target(1)["boxes"].tolist() == [[2, 2, 8, 8]]
    assert ds.target(1)["labels"].tolist() == [1]
    assert ds.target(2)["labels"].tolist() == [5]


def test_degenerate_error(tmp_path: Path) -> None:
    degenerate_tree(tmp_path)
    with pytest.raises(VOCFormatError) as exc:
        VOCDataset(tmp_path, degenerate="error")
    msg = str(exc.value)
    assert "000002.xml" in msg and "object[1] 'bicycle'" in msg and "outside the 32x24 image" in msg


def test_parse_annotation_counts_fixes(tmp_path: Path) -> None:
    voc = degenerate_tree(tmp_path)
    path = voc / "Annotations" / "000002.xml"
    ann, n = parse_annotation(path, VOC_CLASSES)
    assert n == 2 and len(ann) == 2
    ann, n = parse_annotation(path, VOC_CLASSES, degenerate="skip")
    assert n == 2 and len(ann) == 1
    with pytest.raises(VOCFormatError, match=r"object\[1\].*degenerate|object\[1\].*outside"):
        parse_annotation(path, VOC_CLASSES, degenerate="error")


def test_inverted_box_error_message(tmp_path: Path) -> None:
    path = tmp_path / "inv.xml"
    write_annotation(path, make_ann("inv", [[9, 9, 5, 12]], [3]), VOC_CLASSES)
    with pytest.raises(VOCFormatError, match=r"inv\.xml: object\[0\] 'bird'.*degenerate"):
        parse_annotation(path, VOC_CLASSES, degenerate="error")


def test_clean_data_emits_no_warning(tmp_path: Path) -> None:
    make_voc(tmp_path, standard_anns())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VOCDataset(tmp_path, degenerate="error")
        VOCDataset(tmp_path)


# --------------------------------------------------------------------------- torchvision


def test_torchvision_voc_detection_reads_our_tree(tmp_path: Path) -> None:
    from torchvision.datasets import VOCDetection

    anns = [
        make_ann("000001", [[0, 0, 10, 5], [3, 4, 32, 24]], [12, 15], [False, True], ext=".jpg"),
        make_ann("000002", [[1, 2, 3, 4]], [1], ext=".jpg"),
    ]
    make_voc(tmp_path, anns)
    tv = VOCDetection(str(tmp_path), year="2007", image_set="val", download=False)
    ours = VOCDataset(tmp_path)
    assert len(tv) == len(ours) == 2
    for i, ann in enumerate(anns):
        image, target = tv[i]
        assert image.size == (W, H) and image.mode == "RGB"
        a = target["annotation"]
        assert a["filename"] == ann.filename
        assert (int(a["size"]["width"]), int(a["size"]["height"])) == (W, H)
        objects = a["object"]
        assert [o["name"] for o in objects] == [VOC_CLASSES[k - 1] for k in ann.labels]
        assert [o["difficult"] == "1" for o in objects] == ann.difficult.tolist()
        tv_boxes = [
            [int(o["bndbox"][k]) for k in ("xmin", "ymin", "xmax", "ymax")] for o in objects
        ]
        # torchvision gives raw 1-based VOC indices; ours are x1 = xmin - 1, x2 = xmax
        expected = [[b[0] - 1, b[1] - 1, b[2], b[3]] for b in tv_boxes]
        assert ours.target(i)["boxes"].tolist() == expected
        assert ours.image_path(i).suffix == ".jpg"
        assert ours[i][0].shape == (3, H, W)
