"""``navya data check`` and ``navya data split``: a VOC folder looked at whole, never modified
(except the split and class files the caller asks for).

:func:`check_voc` makes one pass over the split files, every listed annotation and every image
header, and collects every problem instead of stopping at the first: problems are grouped by
kind (:data:`KINDS`), each with a count and the first few files. A kind is *blocking* when the
data cannot be used as it is (an annotation or image missing or unreadable, an unknown class,
a box without coordinates, no split file); the rest are warnings the reader handles
(:class:`~navya.data.voc.VOCDataset`: a wrong ``<size>`` takes the image's, boxes are clipped
or dropped under the degenerate policy). The report also gives images and objects per class
and split, and summaries of image and box sizes.

:func:`write_split` writes ``ImageSets/Main/{train,val,trainval}.txt`` for a folder that has
none, stratified by class; :func:`collect_class_names` gives the classes the annotations use.
"""

from __future__ import annotations

import os
import random
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from navya.data.voc import (
    _SWAPPING,
    _read_split,
    find_image,
    image_header,
    resolve_voc_dir,
)
from navya.data.voc_xml import (
    VOC_CLASSES,
    VOCFormatError,
    _basename,
    _class_index,
    _parse,
    _text,
    class_names_file,
    read_class_names,
)

__all__ = ["KINDS", "DataCheck", "check_voc", "collect_class_names", "write_split"]

#: kind -> (blocking, what it means)
KINDS: dict[str, tuple[bool, str]] = {
    "no split files": (True, "ImageSets/Main has no <split>.txt (`navya data split` writes them)"),
    "annotation missing": (True, "an id listed in a split has no Annotations/<id>.xml"),
    "malformed XML": (True, "the annotation is not well-formed XML, or not <annotation>"),
    "image missing": (True, "no image file for the id or its <filename>"),
    "image unreadable": (True, "the image file is not an image Pillow can read"),
    "unknown class": (True, "an object's class is not in the class list"),
    "bad object": (True, "an object without <name>, <bndbox> or a numeric coordinate"),
    "size replaced": (False, "<size> missing, zero or not the image's: the image's own is used"),
    "EXIF rotated": (False, "the annotation is of the EXIF-rotated view: the image is rotated"),
    "box clipped or dropped": (False, "a box outside the image or of zero area (clipped, or "
                                      "dropped when nothing is left)"),
    "filename elsewhere": (False, "<filename> names another file than <id>.<ext>, which is read"),
    "no objects": (False, "an image without any object (allowed: a negative example)"),
}
FIRST = 5  # files shown per kind


@dataclass
class DataCheck:
    """What :func:`check_voc` found."""

    voc_dir: Path | None
    class_names: tuple[str, ...] = ()
    classes_from: str = ""
    problems: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    image_sizes: dict[str, Any] = field(default_factory=dict)
    box_sizes: dict[str, Any] = field(default_factory=dict)

    def add(self, kind: str, where: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        shown = self.problems.setdefault(kind, [])
        if len(shown) < FIRST:
            shown.append(where)

    @property
    def blocking(self) -> list[str]:
        return [k for k in self.counts if KINDS[k][0]]

    @property
    def usable(self) -> bool:
        return not self.blocking

    def to_dict(self) -> dict[str, Any]:
        return {
            "voc_dir": str(self.voc_dir) if self.voc_dir else None,
            "usable": self.usable,
            "classes": list(self.class_names), "classes_from": self.classes_from,
            "problems": {k: {"count": self.counts[k], "blocking": KINDS[k][0],
                             "meaning": KINDS[k][1], "first": self.problems[k]}
                         for k in self.counts},
            "splits": self.splits, "image_sizes": self.image_sizes,
            "box_sizes": self.box_sizes,
        }

    def text(self) -> str:
        lines = [f"{self.voc_dir}: "
                 + ("USABLE as it is" if self.usable else
                    "NOT USABLE: " + ", ".join(self.blocking))
                 + (f" ({sum(self.counts[k] for k in self.counts if not KINDS[k][0])} "
                    "warning(s))" if any(not KINDS[k][0] for k in self.counts) else "")]
        lines.append(f"classes ({self.classes_from}): {', '.join(self.class_names)}")
        order = sorted(self.counts, key=lambda k: (not KINDS[k][0], k))
        for kind in order:
            flag = "BLOCKING" if KINDS[kind][0] else "warning"
            lines.append(f"  [{flag}] {kind}: {self.counts[kind]} ({KINDS[kind][1]})")
            lines += [f"      {w}" for w in self.problems[kind]]
            if self.counts[kind] > len(self.problems[kind]):
                lines.append(f"      ... and {self.counts[kind] - len(self.problems[kind])} more")
        for split, info in self.splits.items():
            per = ", ".join(f"{c} {n}" for c, n in info["objects_per_class"].items())
            lines.append(f"split {split}: {info['images']} images, {info['objects']} objects "
                         f"({info['difficult']} difficult): {per}")
        if self.image_sizes:
            s = self.image_sizes
            lines.append(f"image sizes (w x h): min {s['min']}, median {s['median']}, "
                         f"max {s['max']}")
        if self.box_sizes:
            b = self.box_sizes
            lines.append(f"box sizes (sqrt of area, px): min {b['min']:.1f}, p10 {b['p10']:.1f}, "
                         f"median {b['median']:.1f}, p90 {b['p90']:.1f}, max {b['max']:.1f}; "
                         f"as a fraction of the image side: median {b['median_rel']:.3f}")
        return "\n".join(lines)


def collect_class_names(voc_dir: str | os.PathLike) -> tuple[str, ...]:
    """The class names used by ``Annotations/*.xml`` (sorted; unreadable files skipped)."""
    names: set[str] = set()
    for xml_path in sorted((Path(voc_dir) / "Annotations").glob("*.xml")):
        try:
            root = ET.parse(xml_path).getroot()
        except (ET.ParseError, OSError):
            continue
        names.update(n for n in (_text(o, "name") for o in root.findall("object")) if n)
    return tuple(sorted(names))


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    q = np.quantile(a, [0.1, 0.5, 0.9])
    return {"min": float(a.min()), "p10": float(q[0]), "median": float(q[1]),
            "p90": float(q[2]), "max": float(a.max())}


def check_voc(root: str | os.PathLike, splits: list[str] | None = None, *,
              year: str | int = "2007",
              class_names: list[str] | tuple[str, ...] | None = None) -> DataCheck:
    """Look at a whole VOC folder (see the module docstring); never modifies it.
    ``class_names``: the class list to check against (default: the folder's ``classes.txt``,
    beside ``Annotations/`` or at ``root``, else Pascal VOC's 20)."""
    try:
        voc_dir = resolve_voc_dir(root, year)
    except VOCFormatError as exc:
        report = DataCheck(None)
        report.add("no split files", str(exc))
        return report
    if class_names:
        names, source = tuple(class_names), "--classes"
    else:
        names, found = read_class_names(voc_dir, root), class_names_file(voc_dir, root)
        source = str(found) if names else "Pascal VOC's 20 (no classes.txt)"
    report = DataCheck(voc_dir, classes_from=source)
    names = names or VOC_CLASSES
    report.class_names = tuple(names)
    index = _class_index(names)
    main = voc_dir / "ImageSets" / "Main"
    available = sorted(p.stem for p in main.glob("*.txt")) if main.is_dir() else []
    wanted = splits or available
    if not wanted:
        report.add("no split files", str(main))
    widths, heights, box_px, box_rel = [], [], [], []
    seen: set[str] = set()
    for split in wanted:
        try:
            ids = _read_split(main / f"{split}.txt")
        except VOCFormatError as exc:
            report.add("no split files", str(exc))
            continue
        per_class: Counter[str] = Counter()
        difficult = objects = 0
        for image_id in ids:
            ann = _check_item(voc_dir, image_id, index, report, first=image_id not in seen)
            if ann is None:
                continue
            for label, diff in zip(ann.labels.tolist(), ann.difficult.tolist(), strict=True):
                per_class[names[label - 1]] += 1
                difficult += bool(diff)
            objects += len(ann)
            if image_id not in seen:
                widths.append(ann.width)
                heights.append(ann.height)
                for x1, y1, x2, y2 in ann.boxes.tolist():
                    side = float(np.sqrt(max(x2 - x1, 0) * max(y2 - y1, 0)))
                    box_px.append(side)
                    box_rel.append(side / float(np.sqrt(ann.width * ann.height)))
            seen.add(image_id)
        report.splits[split] = {"images": len(ids), "objects": objects, "difficult": difficult,
                                "objects_per_class": {c: per_class[c] for c in names
                                                      if per_class[c]}}
    if widths:
        order = np.argsort(np.asarray(widths) * np.asarray(heights))
        pick = [order[0], order[len(order) // 2], order[-1]]
        report.image_sizes = {k: f"{widths[i]}x{heights[i]}"
                              for k, i in zip(("min", "median", "max"), pick, strict=True)}
    if box_px:
        report.box_sizes = _summary(box_px) | {"median_rel": float(np.median(box_rel))}
    return report


def _check_item(voc_dir: Path, image_id: str, index, report: DataCheck, *, first: bool):
    """One annotation and its image: problems added to ``report`` (once per id: ``first``);
    the annotation as the reader would give it, or None when it cannot be read."""
    def add(kind: str, where: str) -> None:
        if first:
            report.add(kind, where)

    xml_path = voc_dir / "Annotations" / f"{image_id}.xml"
    if not xml_path.is_file():
        add("annotation missing", str(xml_path))
        return None
    try:
        root = ET.parse(xml_path).getroot()
        if root.tag != "annotation":
            raise ET.ParseError(f"root element is <{root.tag}>")
    except (ET.ParseError, OSError) as exc:
        add("malformed XML", f"{xml_path}: {exc}")
        return None
    unknown = sorted({n for n in (_text(o, "name") for o in root.findall("object"))
                      if n and n not in index})
    if unknown:
        add("unknown class", f"{xml_path}: {', '.join(unknown)} (not in the class list: "
                             "`navya data check DIR --write-classes` writes classes.txt from "
                             "the annotations; --classes a,b,... checks against a list you name)")
        return None
    state: dict[str, Any] = {}

    def resolve(filename: str, xml_size):
        path = find_image(voc_dir / "JPEGImages", image_id, filename, xml_path)
        state["path"] = path
        if path.name != filename and (voc_dir / "JPEGImages" / filename).is_file():
            add("filename elsewhere", f"{xml_path}: <filename> {filename}, read {path.name}")
        w, h, orientation = image_header(path)
        if xml_size == (w, h):
            return w, h
        if orientation in _SWAPPING and xml_size == (h, w):
            add("EXIF rotated", f"{xml_path}: {path.name}")
            return h, w
        what = xml_size if isinstance(xml_size, str) else f"<size> {xml_size[0]}x{xml_size[1]}"
        add("size replaced", f"{xml_path}: {what}, the image is {w}x{h}")
        return w, h

    try:
        ann, n_fixed, note = _parse(xml_path, index, "clip", resolve)
    except VOCFormatError as exc:
        msg = str(exc)
        kind = ("image missing" if "image file not found" in msg else
                "image unreadable" if "cannot read image" in msg else "bad object")
        add(kind, msg)
        return None
    if n_fixed:
        add("box clipped or dropped", f"{note} ({n_fixed} in this file)")
    if len(ann) == 0:
        add("no objects", str(xml_path))
    return ann


def write_split(root: str | os.PathLike, val: float = 0.2, *, seed: int = 0,
                year: str | int = "2007", force: bool = False) -> dict[str, int]:
    """Write ``ImageSets/Main/{train,val,trainval}.txt`` from every annotation that has an
    image: each image goes with its rarest class (the one fewest images hold), and within each
    class a fraction ``val`` (rounded, at least one where a class has two images or more) goes
    to val, drawn with ``seed``. Refuses to overwrite existing split files unless ``force``.
    Returns the count per split."""
    from navya._io import atomic_write_text

    if not 0 < val < 1:
        raise VOCFormatError(f"--val must be a fraction between 0 and 1, got {val}")
    voc_dir = resolve_voc_dir(root, year)
    main = voc_dir / "ImageSets" / "Main"
    targets = [main / f"{s}.txt" for s in ("train", "val", "trainval")]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise VOCFormatError(f"{existing[0]} exists: not overwritten (pass --force to replace "
                             f"{', '.join(p.name for p in existing)})")
    classes_of: dict[str, set[str]] = {}
    for xml_path in sorted((voc_dir / "Annotations").glob("*.xml")):
        try:
            root_el = ET.parse(xml_path).getroot()
            filename = _basename(_text(root_el, "filename") or "")
            find_image(voc_dir / "JPEGImages", xml_path.stem, filename, xml_path)
        except (ET.ParseError, OSError, VOCFormatError):
            continue  # `navya data check` lists these
        classes_of[xml_path.stem] = {n for n in (_text(o, "name")
                                                 for o in root_el.findall("object")) if n}
    if not classes_of:
        raise VOCFormatError(f"{voc_dir / 'Annotations'}: no annotation with an image to split")
    images_per_class = Counter(c for cs in classes_of.values() for c in cs)
    groups: dict[str, list[str]] = defaultdict(list)
    for image_id, cs in classes_of.items():
        key = min(cs, key=lambda c: (images_per_class[c], c)) if cs else ""
        groups[key].append(image_id)
    rng = random.Random(seed)
    val_ids: set[str] = set()
    for key in sorted(groups):
        ids = sorted(groups[key])
        rng.shuffle(ids)
        n = round(len(ids) * val)
        if n == 0 and len(ids) >= 2:
            n = 1
        val_ids.update(ids[:n])
    all_ids = sorted(classes_of)
    out = {"train": [i for i in all_ids if i not in val_ids],
           "val": [i for i in all_ids if i in val_ids], "trainval": all_ids}
    for split, ids in out.items():
        atomic_write_text(main / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    return {k: len(v) for k, v in out.items()}
