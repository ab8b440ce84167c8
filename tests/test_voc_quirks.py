"""VOC exports as labelling tools write them read without edits: the image is the truth for its
size, any image Pillow reads is RGB whatever its extension, EXIF rotation follows the
annotation, and the quirks of hand-made XML (no declaration, tabs, other tag order, Windows
paths, a ``<filename>`` naming another file) are accepted."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from navya.data.voc import VOCDataset, VOCFormatError, to_rgb

pytest_plugins = ["pytester"]


def _tree(tmp_path, items, classes=("cat", "dog")):
    """A VOC2007 tree: ``items`` maps an id to ``(image bytes, file name, xml text)``."""
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    (voc / "classes.txt").write_text("\n".join(classes) + "\n")
    for image_id, (data, name, xml) in items.items():
        (voc / "JPEGImages" / name).write_bytes(data)
        (voc / "Annotations" / f"{image_id}.xml").write_text(xml)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("\n".join(items) + "\n")
    return tmp_path


def _image(w, h, mode="RGB", fmt="JPEG", value=128, **save):
    arr = np.full((h, w, 3), value, np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def _xml(size="<size><width>64</width><height>48</height><depth>3</depth></size>",
         boxes=((1, 1, 20, 20),), name="cat", filename="a.jpg", extra="", decl=True):
    objs = "".join(f"<object><name>{name}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
                   f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>" for a, b, c, d in boxes)
    head = '<?xml version="1.0"?>\n' if decl else ""
    return f"{head}<annotation>{extra}<filename>{filename}</filename>{size}{objs}</annotation>"


def test_a_zero_or_wrong_size_is_the_images_own_with_one_warning(tmp_path):
    items = {
        "zero": (_image(64, 48), "zero.jpg",
                 _xml("<size><width>0</width><height>0</height></size>", filename="zero.jpg")),
        "offbyone": (_image(64, 47), "offbyone.jpg", _xml(boxes=((1, 1, 64, 48),),
                                                          filename="offbyone.jpg")),
        "nosize": (_image(64, 48), "nosize.jpg", _xml("", filename="nosize.jpg")),
        "fine": (_image(64, 48), "fine.jpg", _xml(filename="fine.jpg")),
    }
    root = _tree(tmp_path, items)
    with pytest.warns(UserWarning) as record:
        ds = VOCDataset(root, "train")
    messages = [str(w.message) for w in record]
    size_notes = [m for m in messages if "<size>" in m]
    assert len(size_notes) == 1 and "3 annotations with a missing, zero or wrong <size>" in (
        size_notes[0])
    sizes = {ann.image_id: (ann.width, ann.height) for ann in ds.annotations}
    assert sizes == {"zero": (64, 48), "offbyone": (64, 47), "nosize": (64, 48),
                     "fine": (64, 48)}
    # the box of the 64x48 annotation is clipped to the real 64x47 image
    box = ds.annotations[1].boxes[0]
    assert box.tolist() == [0.0, 0.0, 64.0, 47.0]
    assert ds[1][0].shape == (3, 47, 64)
    with pytest.raises(VOCFormatError, match=r"zero\.xml: <size/width> must be a positive"):
        VOCDataset(root, "train", size_policy="annotation")
    with pytest.raises(VOCFormatError, match=r"zero\.xml: .*size_policy='error'"):
        VOCDataset(root, "train", size_policy="error")


@pytest.mark.parametrize("mode,fmt,value,expect", [
    ("RGBA", "PNG", 200, 200),     # a PNG behind .jpg, with alpha
    ("P", "PNG", 90, None),        # palette
    ("L", "PNG", 77, 77),          # grayscale
    ("L", "JPEG", 60, None),       # grayscale JPEG
    ("CMYK", "JPEG", 128, None),
])
def test_any_image_pillow_reads_is_rgb_whatever_its_extension(tmp_path, mode, fmt, value,
                                                              expect):
    root = _tree(tmp_path, {"a": (_image(64, 48, mode, fmt, value), "a.jpg", _xml())})
    image = VOCDataset(root, "train")[0][0]
    assert image.shape == (3, 48, 64) and image.dtype.is_floating_point
    if expect is not None:
        assert abs(float(image.mean()) * 255 - expect) < 1.5


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    img = Image.fromarray(np.full((48, 64), 32768, np.uint16))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")
    root = _tree(tmp_path, {"a": (buf.getvalue(), "a.png", _xml(filename="a.png"))})
    assert abs(float(VOCDataset(root, "train")[0][0].mean()) * 255 - 127.5) < 1.0
    assert np.asarray(to_rgb(Image.fromarray(np.full((2, 2), 0.5, np.float32)))).max() == 128


def test_progressive_jpeg_with_trailing_bytes_reads(tmp_path):
    data = _image(64, 48, progressive=True, quality=90) + b"\x00garbage after EOI" * 10
    root = _tree(tmp_path, {"a": (data, "a.jpg", _xml())})
    assert VOCDataset(root, "train")[0][0].shape == (3, 48, 64)


def test_boxes_at_zero_and_of_zero_area_follow_the_degenerate_policy(tmp_path):
    xml = _xml(boxes=((0, 0, 10, 10), (5, 5, 4, 9), (3, 3, 9, 9)))
    root = _tree(tmp_path, {"a": (_image(64, 48), "a.jpg", xml)})
    with pytest.warns(UserWarning, match="2 degenerate boxes clipped/dropped"):
        ds = VOCDataset(root, "train")
    assert ds.annotations[0].boxes.tolist() == [[0, 0, 10, 10], [2, 2, 9, 9]]
    with pytest.raises(VOCFormatError, match=r"a\.xml: object\[0\]"):
        VOCDataset(root, "train", degenerate="error")


def test_hand_made_xml_reads(tmp_path):
    """No XML declaration, tabs, tags in another order, no <difficult>, Windows paths in
    <folder>/<path>/<filename>, and a <filename> that names another (existing) file."""
    odd = ("<annotation>\n\t<object>\n\t\t<bndbox><ymax>20</ymax><xmax>30</xmax><ymin>2</ymin>"
           "<xmin>3</xmin></bndbox>\n\t\t<name>dog</name>\n\t</object>\n"
           "\t<size><height>48</height><width>64</width></size>\n"
           "\t<path>C:\\Users\\me\\Pictures\\b.jpg</path><folder>C:\\Users\\me</folder>\n"
           "\t<filename>C:\\Users\\me\\Pictures\\b.jpg</filename>\n</annotation>")
    items = {"a": (_image(64, 48, value=10), "a.jpg", odd),
             "b": (_image(64, 48, value=250), "b.jpg", _xml(filename="b.jpg")),
             "c": (_image(64, 48, value=99), "c_photo.jpg", _xml(filename="c_photo.jpg"))}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = VOCDataset(_tree(tmp_path, items), "train")
    assert ds.annotations[0].boxes.tolist() == [[2, 1, 30, 20]]
    assert ds.annotations[0].labels.tolist() == [2] and not ds.annotations[0].difficult.any()
    # a.xml names b.jpg: the id's own image a.jpg is read; c has only its <filename>
    assert ds.image_path(0).name == "a.jpg" and float(ds[0][0].mean()) < 0.1
    assert ds.image_path(2).name == "c_photo.jpg"


def _exif_rotated(w, h, orientation):
    img = Image.fromarray(np.full((h, w, 3), 100, np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def test_exif_rotation_follows_the_annotation(tmp_path):
    """Stored 64x48 with orientation 6 (shown rotated, 48x64): an annotation of the shown
    view (48x64) gets the rotated image; one of the stored pixels (64x48) gets them as
    stored (LabelImg's view: Qt does not apply EXIF rotation by default)."""
    items = {"shown": (_exif_rotated(64, 48, 6), "shown.jpg",
                       _xml("<size><width>48</width><height>64</height></size>",
                            filename="shown.jpg")),
             "stored": (_exif_rotated(64, 48, 6), "stored.jpg", _xml(filename="stored.jpg"))}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = VOCDataset(_tree(tmp_path, items), "train")
    assert ds[0][0].shape == (3, 64, 48)
    assert ds[1][0].shape == (3, 48, 64)


def test_a_large_jpeg_decodes_reduced_to_the_model_input_with_its_boxes_scaled(tmp_path):
    """decode_size=100: a 1000x640 JPEG decodes at 1/4 (250x160: the largest reduction that
    keeps both sides >= 100), its boxes and orig_size scale with it, a PNG and a small JPEG
    decode at full size, and an EXIF-rotated one is reduced before it is turned."""
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (640, 1000, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "JPEG", quality=90)
    xml = _xml("<size><width>1000</width><height>640</height></size>",
               boxes=((101, 65, 500, 320),), filename="big.jpg")
    items = {"big": (buf.getvalue(), "big.jpg", xml),
             "png": (_image(1000, 640, fmt="PNG"), "png.png",
                     _xml("<size><width>1000</width><height>640</height></size>",
                          filename="png.png")),
             "small": (_image(150, 120), "small.jpg",
                       _xml("<size><width>150</width><height>120</height></size>",
                            filename="small.jpg")),
             "turned": (_exif_rotated(1000, 640, 6), "turned.jpg",
                        _xml("<size><width>640</width><height>1000</height></size>",
                             filename="turned.jpg"))}
    root = _tree(tmp_path, items)
    full = VOCDataset(root, "train")
    ds = VOCDataset(root, "train", decode_size=100)
    image, target = ds[0]
    assert image.shape == (3, 160, 250) and target["orig_size"] == (160, 250)
    assert target["boxes"].tolist() == [[25.0, 16.0, 125.0, 80.0]]
    assert full.target(0)["boxes"].tolist() == [[100.0, 64.0, 500.0, 320.0]]
    # the same picture: the reduced decode is close to the full one downscaled by 4
    ref = full[0][0].reshape(3, 160, 4, 250, 4).mean((2, 4))
    assert (image - ref).abs().mean() < 0.05
    assert ds[1][0].shape == (3, 640, 1000)  # PNG: no reduced decoding
    assert ds[2][0].shape == (3, 120, 150)  # 150x120 < 2x100: full size
    assert ds[3][0].shape == (3, 250, 160) and ds.target(3)["orig_size"] == (250, 160)
    assert ds.decoded_size(0) == (250, 160) and full.decoded_size(0) == (1000, 640)
    assert ds.fingerprint() != full.fingerprint()
    with pytest.raises(VOCFormatError, match="decode_size must be a positive integer"):
        VOCDataset(root, "train", decode_size=0)


# -- navya data check / split -----------------------------------------------------------------


def _quirky_tree(tmp_path, n_good=8):
    """Good images of two classes, plus one of each problem kind."""
    items = {}
    for i in range(n_good):
        name = "cat" if i % 2 else "dog"
        items[f"g{i}"] = (_image(64, 48, value=(40 + 9 * i) % 250), f"g{i}.jpg",
                          _xml(boxes=((5 + i, 5, 30 + i, 40),), name=name, filename=f"g{i}.jpg"))
    items["zero"] = (_image(64, 48), "zero.jpg",
                     _xml("<size><width>0</width><height>0</height></size>", filename="zero.jpg"))
    items["edge"] = (_image(64, 48), "edge.jpg", _xml(boxes=((0, 0, 10, 10),),
                                                      filename="edge.jpg"))
    items["empty"] = (_image(64, 48), "empty.jpg", _xml(boxes=(), filename="empty.jpg"))
    return _tree(tmp_path, items)


def test_data_check_lists_every_problem_kind_with_counts(tmp_path, capsys):
    from navya.cli import main
    from navya.data.check import check_voc

    root = _quirky_tree(tmp_path)
    report = check_voc(root)
    assert report.usable
    assert report.counts == {"size replaced": 1, "box clipped or dropped": 1, "no objects": 1}
    assert report.splits["train"]["images"] == 11
    assert report.splits["train"]["objects_per_class"] == {"cat": 6, "dog": 4}
    # break it: a missing image, an unknown class, malformed XML, a listed id without XML
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "JPEGImages" / "g0.jpg").unlink()
    (voc / "Annotations" / "g1.xml").write_text(_xml(name="horse", filename="g1.jpg"))
    (voc / "Annotations" / "g2.xml").write_text("<annotation><size>")
    with open(voc / "ImageSets" / "Main" / "train.txt", "a") as f:
        f.write("ghost\n")
    before = {p: p.stat().st_mtime_ns for p in voc.rglob("*") if p.is_file()}
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    for line in ["NOT USABLE", "[BLOCKING] image missing: 1", "[BLOCKING] unknown class: 1",
                 "[BLOCKING] malformed XML: 1", "[BLOCKING] annotation missing: 1",
                 "[warning] size replaced: 1", "g1.xml: horse", "split train: 12 images"]:
        assert line in out, (line, out)
    assert before == {p: p.stat().st_mtime_ns for p in voc.rglob("*") if p.is_file()}
    assert main(["data", "check", str(root), "--json"]) == 1
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["problems"]["image missing"]["count"] == 1 and not data["usable"]


def test_data_check_writes_classes_from_the_annotations(tmp_path, capsys):
    from navya.cli import main

    root = _quirky_tree(tmp_path)
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "classes.txt").unlink()  # Pascal's 20 classes: cat and dog are among them
    assert main(["data", "check", str(root), "--write-classes"]) == 0
    assert (voc / "classes.txt").read_text() == "cat\ndog\n"
    assert main(["data", "check", str(root), "--write-classes"]) == 2  # exists: refused
    assert "not overwritten" in capsys.readouterr().err


def test_data_split_is_stratified_seeded_and_refuses_to_overwrite(tmp_path, capsys):
    from navya.cli import main
    from navya.data.check import write_split

    root = _quirky_tree(tmp_path, n_good=20)
    main_dir = root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    (main_dir / "train.txt").unlink()
    counts = write_split(root, 0.25, seed=3)
    assert counts == {"train": 18, "val": 5, "trainval": 23}  # dog 10 -> 2, cat 12 -> 3
    val = (main_dir / "val.txt").read_text().split()
    assert {"cat", "dog"} <= {"cat" if int(i[1:]) % 2 else "dog" for i in val if i[0] == "g"}
    assert main(["data", "split", str(root)]) == 2  # exists: refused
    assert "not overwritten" in capsys.readouterr().err
    assert write_split(root, 0.25, seed=3, force=True) == counts
    assert (main_dir / "val.txt").read_text().split() == val  # same seed, same split


@pytest.mark.slow  # 5-18 s: in the slow set to keep `pytest tests/` under 5 minutes
def test_a_tiny_model_trains_and_is_gated_on_a_quirky_tree(tmp_path, pytester):
    """The bring-your-own-data path end to end: a tree with labelling-tool quirks reads
    without edits, a tiny model trains a few steps on it, and the suite checks its accuracy and
    size budgets on it."""
    import torch

    from navya.models import build_model, save_checkpoint
    from navya.train import TrainConfig, train

    root = _quirky_tree(tmp_path / "data", n_good=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the quirks' warnings are tested above
        ds = VOCDataset(root, "train")
    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", 3, width_mult=0.25, image_size=96)
    train(model, ds, TrainConfig(batch_size=4, max_iters=3, warmup_iters=1), progress=False)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, model.eval(), {"class_names": list(ds.class_names)})
    voc_main = root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    (voc_main / "val.txt").write_text((voc_main / "train.txt").read_text())
    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    for name in ("test_accuracy", "test_size"):
        pytester.makepyfile(**{name: (repo / "benchmarks" / f"{name}.py").read_text()})
    (pytester.path / "budgets.toml").write_text(
        "[variants.fp32-fused]\nmax_map_drop_points = 0.5\nmin_size_ratio = 0.95\n")
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-v", "--navya-data", str(root), "--navya-checkpoint",
        str(ckpt), "--navya-budgets", "budgets.toml", "--navya-baselines", "baselines",
        "--navya-variants", "fp32,fp32-fused", "--navya-cache", "off", "--navya-no-rss",
        "--navya-report-dir", "reports", "-k", "map_drop or size_ratio")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "test_map_drop[fp32-fused] PASSED" in out and "test_size_ratio[fp32-fused] PASSED" in out
    # the reader's size policy reaches the suite and the command line
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--navya-data", str(root), "--navya-checkpoint", str(ckpt),
        "--navya-budgets", "budgets.toml", "--navya-baselines", "baselines", "--navya-variants",
        "fp32", "--navya-cache", "off", "--navya-no-rss", "--navya-report-dir", "reports",
        "--navya-size-policy", "error", "-k", "size_ratio")
    out = result.stdout.str()
    assert result.ret != 0, out
    assert "zero.xml" in out and "size_policy='error'" in out, out
    from navya.cli import main

    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(root), "--split", "val",
                 "--size-policy", "error"]) == 2
