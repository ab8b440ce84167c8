"""Pascal VOC detection reader (and a minimal annotation writer).

Layout
------
A VOC tree looks like ``<root>/VOCdevkit/VOC2007/`` (any year) holding::

    Annotations/<id>.xml          one XML file per image
    JPEGImages/<filename>         the images (``<id>.jpg`` in real VOC)
    ImageSets/Main/<split>.txt    the ids of a split, one per line
    classes.txt                   optional, navya extension: one class name per line

:func:`resolve_voc_dir` accepts the folder holding ``VOCdevkit``, the ``VOCdevkit``
folder itself, or the ``VOC20xx`` folder directly.

Box convention
--------------
VOC XML stores 1-based, *inclusive* pixel indices: a box with ``xmin=1, xmax=10``
covers the first ten pixel columns.  navya uses 0-based *continuous* pixel
coordinates (the edges of pixels), float32 ``[x1, y1, x2, y2]``::

    x1 = xmin - 1,  y1 = ymin - 1,  x2 = xmax,  y2 = ymax

so ``x2 - x1 == xmax - xmin + 1`` is the width in pixels as VOC counts it, and a box
that touches the image border is ``[0, 0, width, height]``.  A writer does the
inverse (``xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2``, see
:func:`to_voc_xml_box`), so integer boxes round-trip exactly.  (torchvision's
``VOCDetection`` returns the raw XML strings; its reference detection scripts use
``x1 = xmin`` instead, which is off by one pixel on the left/top edge.)

Degenerate boxes
----------------
After conversion a box is *degenerate* if ``x2 <= x1`` or ``y2 <= y1``, and *outside*
if any coordinate lies beyond ``[0, width] x [0, height]``.  The ``degenerate``
policy decides what happens to such boxes:

``"clip"`` (default)
    clip to ``[0, width] x [0, height]``; drop the box if it is empty after clipping.
``"skip"``
    drop every box that was outside or degenerate.
``"error"``
    raise :class:`VOCFormatError` naming the file, the object and the problem.

Every box clipped or dropped is counted; :class:`VOCDataset` emits one
``UserWarning`` after loading a split that gives the count.  Well-formed VOC data
never triggers it (VOC indices satisfy ``1 <= xmin <= xmax <= width``).

Labels are 1-based indices into ``class_names``; 0 is reserved for background and
never appears in an annotation.

Objects of other classes
------------------------
An object whose ``<name>`` is not in ``class_names`` is an error by default
(``other_classes="error"``). A detector of fewer classes than the annotations name (a person
detector scored on 20-class VOC annotations) reads them with ``other_classes="ignore"``:
those objects are dropped, as if not annotated, and :class:`VOCDataset` records how many of
each class it dropped (:attr:`VOCDataset.ignored_objects`) and says so in one ``UserWarning``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape as _xml_escape

import numpy as np
import torch
from torch.utils.data import Dataset

from navya._io import current_umask
from navya.errors import NavyaError

__all__ = [
    "VOC_CLASSES",
    "VOCFormatError",
    "Annotation",
    "DegeneratePolicy",
    "OtherClassesPolicy",
    "SizePolicy",
    "parse_annotation",
    "class_names_file",
    "read_class_names",
    "resolve_voc_dir",
    "to_voc_xml_box",
    "write_annotation",
    "VOCDataset",
    "collate",
]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

DegeneratePolicy = Literal["clip", "skip", "error"]
_POLICIES: tuple[str, ...] = ("clip", "skip", "error")
#: Where an image's size comes from when its ``<size>`` is missing, zero or not the image's:
#: ``"image"`` (the file's own size, default), ``"annotation"`` (the XML's; a mismatching image
#: is an error when it is read), ``"error"`` (any such file is an error when the split loads).
SizePolicy = Literal["image", "annotation", "error"]
#: What an object of a class not in ``class_names`` means: ``"error"`` (default) or
#: ``"ignore"`` (the object is dropped and counted).
OtherClassesPolicy = Literal["error", "ignore"]
_OTHER_CLASSES_POLICIES: tuple[str, ...] = ("error", "ignore")
_SIZE_POLICIES: tuple[str, ...] = ("image", "annotation", "error")
#: EXIF orientations that swap width and height (90 or 270 degrees, mirrored or not)
_EXIF_ORIENTATION = 0x0112
_SWAPPING = (5, 6, 7, 8)
_IMAGE_EXTS: tuple[str, ...] = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG", ".bmp",
                                 ".webp", ".tif", ".tiff")
_CLASSES_FILE = "classes.txt"


class VOCFormatError(NavyaError, ValueError):
    """Bad VOC input: malformed or incomplete XML, unknown class, missing file or split.

    The message always names the offending file (and, for a box, the object index
    and class name) and the problem.
    """


# --------------------------------------------------------------------------- annotation


@dataclass(frozen=True)
class Annotation:
    """Ground truth of one image, boxes in navya's 0-based continuous pixel coordinates.

    Attributes:
        image_id: the id (the XML file stem, as listed in ``ImageSets/Main/<split>.txt``).
        filename: the image file name from the XML ``<filename>`` (``<id>.jpg`` if absent).
        width, height: image size in pixels, from the XML ``<size>``.
        boxes: float32 ``[N, 4]`` ``x1, y1, x2, y2`` in pixels, ``0 <= x1 < x2 <= width``
            after the degenerate-box policy has been applied.
        labels: int64 ``[N]``, 1-based index into the class names (0 = background, never present).
        difficult: bool ``[N]``, the VOC ``difficult`` flag.

    The arrays are coerced to those dtypes and made read-only.  Equality compares
    the arrays element-wise; instances are not hashable.
    """

    image_id: str
    filename: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.array(self.boxes, dtype=np.float32).reshape(-1, 4)
        labels = np.array(self.labels, dtype=np.int64).reshape(-1)
        difficult = np.array(self.difficult, dtype=bool).reshape(-1)
        if not (len(boxes) == len(labels) == len(difficult)):
            raise ValueError(
                f"Annotation {self.image_id!r}: boxes/labels/difficult lengths differ "
                f"({len(boxes)}, {len(labels)}, {len(difficult)})"
            )
        for name, arr in (("boxes", boxes), ("labels", labels), ("difficult", difficult)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Annotation):
            return NotImplemented
        return (
            self.image_id == other.image_id
            and self.filename == other.filename
            and self.width == other.width
            and self.height == other.height
            and np.array_equal(self.boxes, other.boxes)
            and np.array_equal(self.labels, other.labels)
            and np.array_equal(self.difficult, other.difficult)
        )

    def __len__(self) -> int:
        return len(self.labels)


def _class_index(class_names: Sequence[str]) -> dict[str, int]:
    """Map class name -> 1-based label; validate that the names are non-empty and unique."""
    if isinstance(class_names, str):
        raise TypeError("class_names must be a sequence of names, not a single string")
    names = tuple(class_names)
    if not names:
        raise VOCFormatError("class_names is empty")
    index = {name: i + 1 for i, name in enumerate(names)}
    if len(index) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise VOCFormatError(f"class_names has duplicates: {dupes}")
    return index


def _known_classes_hint(index: Mapping[str, int], k: int = 5) -> str:
    names = list(index)
    shown = ", ".join(repr(n) for n in names[:k])
    more = f", ... ({len(names)} total)" if len(names) > k else ""
    return f"known classes: {shown}{more}"


def _text(elem: ET.Element, tag: str) -> str | None:
    """Stripped text of the direct child ``tag`` of ``elem``; None if the child is absent."""
    child = elem.find(tag)
    if child is None:
        return None
    return (child.text or "").strip()


def _number(text: str | None, where: str, what: str) -> float:
    if text is None:
        raise VOCFormatError(f"{where}: missing <{what}>")
    try:
        value = float(text)
    except ValueError:
        raise VOCFormatError(f"{where}: <{what}> is not a number: {text!r}") from None
    if not np.isfinite(value):
        raise VOCFormatError(f"{where}: <{what}> is not finite: {text!r}")
    return value


def _size(size: ET.Element, where: str, what: str) -> int:
    value = _number(_text(size, what), where, f"size/{what}")
    if value != int(value) or value <= 0:
        raise VOCFormatError(f"{where}: <size/{what}> must be a positive integer, got {value:g}")
    return int(value)


def _xml_size(root: ET.Element, where: str) -> tuple[int, int] | str:
    """``(width, height)`` from ``<size>``, or why there is none (missing, zero, not a
    positive integer)."""
    size = root.find("size")
    if size is None:
        return "missing <size>"
    try:
        return _size(size, where, "width"), _size(size, where, "height")
    except VOCFormatError as exc:
        return str(exc).removeprefix(f"{where}: ")


def _basename(name: str) -> str:
    """The file name of a ``<filename>`` that may carry a Windows or POSIX path."""
    return name.replace("\\", "/").rsplit("/", 1)[-1].strip()


def _parse(
    xml_path: Path, index: Mapping[str, int], degenerate: str,
    resolve_size: Callable[[str, tuple[int, int] | str], tuple[int, int]] | None = None,
    *, ignored: dict[str, int] | None = None,
) -> tuple[Annotation, int, str | None]:
    """Parse one XML; return (annotation, boxes clipped or dropped, note on the first one).

    ``resolve_size(filename, xml_size)`` gives the size the boxes are checked against, from
    the ``<size>`` read (or why there is none); without it the XML's ``<size>`` must be
    valid. ``ignored``: None, an object of a class not in ``index`` is an error; a dict, such
    an object is dropped and counted there by class name."""
    where = str(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        line, col = exc.position
        raise VOCFormatError(
            f"{where}: malformed XML at line {line}, column {col}: {exc}"
        ) from None
    except FileNotFoundError:
        raise VOCFormatError(f"{where}: annotation file not found") from None
    except OSError as exc:
        raise VOCFormatError(f"{where}: cannot read annotation: {exc}") from None
    if root.tag != "annotation":
        raise VOCFormatError(f"{where}: root element is <{root.tag}>, expected <annotation>")

    image_id = xml_path.stem
    filename = _basename(_text(root, "filename") or "") or f"{image_id}.jpg"
    xml_size = _xml_size(root, where)
    if resolve_size is not None:
        width, height = resolve_size(filename, xml_size)
    elif isinstance(xml_size, str):
        raise VOCFormatError(f"{where}: {xml_size}")
    else:
        width, height = xml_size

    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    difficult: list[bool] = []
    n_fixed = 0
    first_note: str | None = None
    for i, obj in enumerate(root.findall("object")):
        name = _text(obj, "name")
        if not name:
            raise VOCFormatError(f"{where}: object[{i}]: missing <name>")
        owhere = f"{where}: object[{i}] {name!r}"
        label = index.get(name)
        if label is None and ignored is not None:
            ignored[name] = ignored.get(name, 0) + 1
            continue
        if label is None:
            raise VOCFormatError(
                f"{owhere}: unknown class name {name!r}; {_known_classes_hint(index)}"
            )
        diff_text = _text(obj, "difficult")
        if diff_text:
            try:
                is_difficult = bool(int(float(diff_text)))
            except ValueError:
                raise VOCFormatError(f"{owhere}: <difficult> is not 0/1: {diff_text!r}") from None
        else:
            is_difficult = False
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise VOCFormatError(f"{owhere}: missing <bndbox>")
        xmin, ymin, xmax, ymax = (
            _number(_text(bndbox, tag), owhere, f"bndbox/{tag}")
            for tag in ("xmin", "ymin", "xmax", "ymax")
        )
        x1, y1, x2, y2 = xmin - 1.0, ymin - 1.0, xmax, ymax

        problem = None
        if x2 <= x1 or y2 <= y1:
            problem = "degenerate (x2 <= x1 or y2 <= y1)"
        elif x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            problem = f"outside the {width}x{height} image"
        if problem is not None:
            desc = (
                f"{owhere}: box xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g} "
                f"(x1,y1,x2,y2 = {x1:g},{y1:g},{x2:g},{y2:g}) is {problem}"
            )
            if degenerate == "error":
                raise VOCFormatError(desc)
            n_fixed += 1
            if first_note is None:
                first_note = desc
            if degenerate == "skip":
                continue
            x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
            y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
            if x2 <= x1 or y2 <= y1:
                continue
        boxes.append((x1, y1, x2, y2))
        labels.append(label)
        difficult.append(is_difficult)

    ann = Annotation(
        image_id=image_id,
        filename=filename,
        width=width,
        height=height,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        difficult=np.asarray(difficult, dtype=bool),
    )
    return ann, n_fixed, first_note


def _check_policy(degenerate: str) -> None:
    if degenerate not in _POLICIES:
        raise VOCFormatError(f"degenerate must be one of {_POLICIES}, got {degenerate!r}")


def parse_annotation(
    xml_path: str | os.PathLike[str],
    class_names: Sequence[str],
    *,
    degenerate: DegeneratePolicy = "clip",
) -> tuple[Annotation, int]:
    """Parse one VOC annotation XML.

    Args:
        xml_path: path of ``Annotations/<id>.xml``; the id is the file stem.
        class_names: class names; label ``k`` (1-based) is ``class_names[k - 1]``.
        degenerate: ``"clip"``, ``"skip"`` or ``"error"`` (see the module docstring).

    Returns:
        ``(annotation, n_fixed)``: boxes in 0-based continuous pixel coordinates
        (``x1 = xmin - 1``, ``x2 = xmax``) and the number of boxes clipped or dropped.
        Only direct ``<bndbox>`` children of ``<object>`` are read (``<part>`` boxes are
        ignored).  ``<difficult>`` defaults to 0; an image with no objects is allowed.

    Raises:
        VOCFormatError: unreadable or malformed XML, missing ``size``/``width``/``height``/
            ``bndbox``/coordinate, non-numeric value, unknown class name, or (with
            ``degenerate="error"``) a degenerate/outside box.
    """
    _check_policy(degenerate)
    ann, n_fixed, _ = _parse(Path(xml_path), _class_index(class_names), degenerate)
    return ann, n_fixed


def class_names_file(voc_dir: str | os.PathLike[str],
                     root: str | os.PathLike[str] | None = None) -> Path | None:
    """Where the class list is: ``<voc_dir>/classes.txt``, else the first ``classes.txt`` in a
    folder above it up to ``root`` (the folder the user named: exports ship it beside
    ``Annotations/`` or at their top). None: there is none."""
    voc_dir = Path(voc_dir)
    folders = [voc_dir]
    if root is not None:
        top = Path(root).expanduser().resolve()
        here = voc_dir.resolve()
        while here != top and top in here.parents:
            here = here.parent
            folders.append(here)
    return next((f / _CLASSES_FILE for f in folders if (f / _CLASSES_FILE).is_file()), None)


def read_class_names(voc_dir: str | os.PathLike[str],
                     root: str | os.PathLike[str] | None = None) -> tuple[str, ...] | None:
    """Read the class list (:func:`class_names_file`: ``<voc_dir>/classes.txt``, or one in a
    folder above it up to ``root``; one name per line, blank lines ignored).

    Returns None if there is no such file.  Raises VOCFormatError if it is empty or
    lists a name twice.
    """
    path = class_names_file(voc_dir, root)
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise VOCFormatError(f"{path}: class list is empty")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise VOCFormatError(f"{path}: class name {name!r} is listed twice")
        seen.add(name)
    return names


# --------------------------------------------------------------------------- writer


def to_voc_xml_box(box: Sequence[float] | np.ndarray) -> tuple[int, int, int, int]:
    """Convert a navya box ``[x1, y1, x2, y2]`` (0-based continuous pixels) to VOC XML.

    Returns ``(xmin, ymin, xmax, ymax)`` 1-based inclusive pixel indices:
    ``xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2``, each rounded to the
    nearest integer (integer boxes round-trip exactly through :func:`parse_annotation`).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    return round(x1) + 1, round(y1) + 1, round(x2), round(y2)


def write_annotation(
    path: str | os.PathLike[str],
    annotation: Annotation,
    class_names: Sequence[str],
    *,
    folder: str = "VOC2007",
) -> None:
    """Write ``annotation`` as a VOC-style XML file, atomically.

    The XML holds ``folder``, ``filename``, ``size`` (width, height, depth 3) and one
    ``object`` per box (name, pose ``Unspecified``, truncated 0, difficult, bndbox via
    :func:`to_voc_xml_box`).  It is written to a temporary file in the destination
    folder (created if needed) and moved into place with :func:`os.replace`, so readers
    never see a partial file.  No fsync: atomic, not durable across power loss.

    Raises:
        ValueError: a label outside ``1..len(class_names)``.
    """
    path = Path(path)
    names = tuple(class_names)
    parts = [
        "<annotation>\n",
        f"\t<folder>{_xml_escape(folder)}</folder>\n",
        f"\t<filename>{_xml_escape(annotation.filename)}</filename>\n",
        "\t<size>\n",
        f"\t\t<width>{int(annotation.width)}</width>\n",
        f"\t\t<height>{int(annotation.height)}</height>\n",
        "\t\t<depth>3</depth>\n",
        "\t</size>\n",
        "\t<segmented>0</segmented>\n",
    ]
    for box, label, diff in zip(
        annotation.boxes, annotation.labels, annotation.difficult, strict=True
    ):
        label = int(label)
        if not 1 <= label <= len(names):
            raise ValueError(f"{path}: label {label} outside 1..{len(names)} (0 is background)")
        xmin, ymin, xmax, ymax = to_voc_xml_box(box)
        parts.append(
            "\t<object>\n"
            f"\t\t<name>{_xml_escape(names[label - 1])}</name>\n"
            "\t\t<pose>Unspecified</pose>\n"
            "\t\t<truncated>0</truncated>\n"
            f"\t\t<difficult>{int(bool(diff))}</difficult>\n"
            "\t\t<bndbox>\n"
            f"\t\t\t<xmin>{xmin}</xmin>\n"
            f"\t\t\t<ymin>{ymin}</ymin>\n"
            f"\t\t\t<xmax>{xmax}</xmax>\n"
            f"\t\t\t<ymax>{ymax}</ymax>\n"
            "\t\t</bndbox>\n"
            "\t</object>\n"
        )
    parts.append("</annotation>\n")
    data = "".join(parts).encode("utf-8")

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; a plain open() would not
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# --------------------------------------------------------------------------- dataset


def resolve_voc_dir(root: str | os.PathLike[str], year: str | int = "2007") -> Path:
    """Find the ``VOC<year>`` folder (the one holding ``Annotations/``) under ``root``.

    ``root`` may be the folder holding ``VOCdevkit``, the ``VOCdevkit`` folder itself,
    or the ``VOC<year>`` folder directly (any folder with an ``Annotations/``
    subfolder is accepted as-is, whatever its name).

    Raises:
        VOCFormatError: none of the candidates exists; the message lists them.
    """
    root = Path(root).expanduser()
    name = f"VOC{year}"
    candidates = [
        root,
        root / "VOCdevkit" / name,
        root / name,
        root / "TrainVal" / "VOCdevkit" / name,  # VOC2011 tarball layout
    ]
    for cand in candidates:
        if (cand / "Annotations").is_dir():
            return cand
    looked = ", ".join(str(c / "Annotations") for c in candidates)
    msg = f"no Pascal VOC {year} folder under {root}; looked for: {looked}"
    found = sorted(str(p) for d in (root, root / "VOCdevkit") if d.is_dir() for p in d.glob("VOC*"))
    if found:
        msg += "; found instead: " + ", ".join(found) + " (check `year`)"
    raise VOCFormatError(msg)


def _read_split(split_file: Path) -> list[str]:
    try:
        text = split_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        available = sorted(p.stem for p in split_file.parent.glob("*.txt"))
        hint = f"; available: {', '.join(available[:20])}" if available else ""
        raise VOCFormatError(f"{split_file}: split file not found{hint}") from None
    ids: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        image_id = fields[0]  # per-class files have "<id> <-1|0|1>"
        if image_id in seen:
            raise VOCFormatError(
                f"{split_file}: line {lineno}: id {image_id!r} repeats line {seen[image_id]}"
            )
        seen[image_id] = lineno
        ids.append(image_id)
    if not ids:
        raise VOCFormatError(f"{split_file}: split file is empty (no image ids)")
    return ids


def image_header(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(width, height, EXIF orientation)`` of an image file from its header (the pixels are
    not decoded); any format Pillow reads, whatever the file's extension.

    Raises:
        VOCFormatError: the file is not an image Pillow can read (names the file).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            w, h = img.size
            try:
                orientation = int(img.getexif().get(_EXIF_ORIENTATION, 1))
            except Exception:  # noqa: BLE001 - a broken EXIF block: no rotation
                orientation = 1
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise VOCFormatError(f"{path}: cannot read image: {exc}") from None
    return int(w), int(h), orientation


def to_rgb(img):
    """A Pillow image as 8-bit RGB: palette (with transparency), RGBA, LA, grayscale, CMYK,
    16-bit grayscale (scaled from 0-65535) and 32-bit integer or float grayscale (scaled from
    their range: 0-65535 when above 255, else 0-255; 0-1 for float) alike."""
    from PIL import Image

    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        a = np.asarray(img).astype(np.float64)
        if img.mode == "F" and a.size and a.max() <= 1.0:
            top = 1.0
        elif img.mode.startswith("I;16") or (a.size and a.max() > 255):
            top = 65535.0
        else:
            top = 255.0
        img = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


class VOCDataset(Dataset):
    """Pascal VOC detection split, annotations parsed eagerly at construction.

    Args:
        root: the folder holding ``VOCdevkit``, ``VOCdevkit`` itself, or ``VOC<year>``.
        split: name of ``ImageSets/Main/<split>.txt``.
        year: VOC year, used to find ``VOCdevkit/VOC<year>``.
        class_names: class list; None -> ``<VOC dir>/classes.txt`` if present, else
            :data:`VOC_CLASSES`.
        degenerate: ``"clip"``, ``"skip"`` or ``"error"`` (see the module docstring).
        limit: keep only the first ``limit`` ids of the split.
        transforms: ``transforms(image, target) -> (image, target)``, applied in
            ``__getitem__``.
        size_policy: what a missing, zero or wrong ``<size>`` means: ``"image"`` (default:
            the image's own size, one warning that counts the files), ``"annotation"``
            (trust the XML; no image header is read at construction) or ``"error"``.
        decode_size: the model's input side, or None. A JPEG whose sides are both at least
            2x this decodes at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling, Pillow's
            ``draft``: the largest reduction that keeps both sides >= ``decode_size``, so a
            model that resizes to ``decode_size`` never upsamples); its target's boxes and
            ``orig_size`` are scaled to the decoded pixels (IoU, so mAP, does not change
            under that scaling). Other formats decode at full size.
        other_classes: an object whose class is not in ``class_names``: ``"error"`` (default,
            :class:`VOCFormatError` naming it) or ``"ignore"`` (dropped as if not annotated;
            counted per class in :attr:`ignored_objects`, one ``UserWarning`` gives the count).
            For a detector of fewer classes, e.g. ``class_names=["person"]`` on VOC's 20.

    All annotations are parsed and every image file is checked for existence here,
    so a broken tree fails at construction with :class:`VOCFormatError`.  If any box
    was clipped or dropped, one ``UserWarning`` gives the count.

    Items are ``(image, target)``: ``image`` float32 ``[3, H, W]`` RGB in ``[0, 1]``;
    ``target`` = ``{"boxes": float32 [N, 4] (x1, y1, x2, y2 pixels), "labels": int64
    [N] (1-based), "difficult": bool [N], "image_id": str, "orig_size": (H, W)}``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        *,
        year: str | int = "2007",
        class_names: Sequence[str] | None = None,
        degenerate: DegeneratePolicy = "clip",
        limit: int | None = None,
        transforms: Callable[[torch.Tensor, dict[str, Any]], tuple[torch.Tensor, dict[str, Any]]]
        | None = None,
        size_policy: SizePolicy = "image",
        decode_size: int | None = None,
        other_classes: OtherClassesPolicy = "error",
    ) -> None:
        _check_policy(degenerate)
        if other_classes not in _OTHER_CLASSES_POLICIES:
            raise VOCFormatError(f"other_classes must be one of {_OTHER_CLASSES_POLICIES}, got "
                                 f"{other_classes!r}")
        self.other_classes: str = other_classes
        #: objects of classes not in ``class_names`` dropped (``other_classes="ignore"``), per
        #: class name, sorted by name; empty when none was (always, with ``"error"``)
        self.ignored_objects: dict[str, int] = {}
        if decode_size is not None and (isinstance(decode_size, bool)
                                        or int(decode_size) != decode_size or decode_size < 1):
            raise VOCFormatError(f"decode_size must be a positive integer or None, got "
                                 f"{decode_size!r}")
        self.decode_size: int | None = None if decode_size is None else int(decode_size)
        #: per item, memoized: the decoded view's (width, height) (see decode_size)
        self._decoded: dict[int, tuple[int, int]] = {}
        if size_policy not in _SIZE_POLICIES:
            raise VOCFormatError(f"size_policy must be one of {_SIZE_POLICIES}, got "
                                 f"{size_policy!r}")
        self.size_policy: str = size_policy
        if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 1):
            raise VOCFormatError(f"limit must be a positive integer or None, got {limit!r}")
        self.voc_dir: Path = resolve_voc_dir(root, year)
        self.split: str = split
        self.year: str = str(year)
        self.degenerate: str = degenerate
        self.transforms = transforms
        if class_names is None:
            class_names = read_class_names(self.voc_dir, root) or VOC_CLASSES
        index = _class_index(class_names)
        self.class_names: tuple[str, ...] = tuple(index)

        split_file = self.voc_dir / "ImageSets" / "Main" / f"{split}.txt"
        ids = _read_split(split_file)
        #: images the split lists (before ``limit``)
        self.split_size: int = len(ids)
        if limit is not None:
            ids = ids[: int(limit)]
        self.ids: list[str] = ids

        ann_dir = self.voc_dir / "Annotations"
        img_dir = self.voc_dir / "JPEGImages"
        self.annotations: list[Annotation] = []
        self._image_paths: list[Path] = []
        #: per item: apply the image's EXIF orientation (its annotation is of the rotated view)
        self._transpose: list[bool] = []
        n_fixed = n_files = 0
        first_note: str | None = None
        resized: list[str] = []
        ignored: dict[str, int] | None = {} if other_classes == "ignore" else None
        for image_id in ids:
            xml_path = ann_dir / f"{image_id}.xml"
            if not xml_path.is_file():
                raise VOCFormatError(
                    f"{xml_path}: annotation missing for id {image_id!r} listed in {split_file}"
                )
            found: dict[str, Any] = {}

            def resolve(filename: str, xml_size, image_id=image_id, xml_path=xml_path,
                        found=found):
                path = self._find_image(img_dir, image_id, filename, xml_path)
                found["path"], found["transpose"] = path, False
                if size_policy == "annotation":
                    if isinstance(xml_size, str):
                        raise VOCFormatError(f"{xml_path}: {xml_size}")
                    return xml_size
                w, h, orientation = image_header(path)
                if xml_size == (w, h):
                    return w, h
                if orientation in _SWAPPING and xml_size == (h, w):
                    found["transpose"] = True  # annotated as shown, EXIF rotation applied
                    return h, w
                what = (xml_size if isinstance(xml_size, str)
                        else f"<size> is {xml_size[0]}x{xml_size[1]}")
                if size_policy == "error":
                    raise VOCFormatError(f"{xml_path}: {what} but the image {path.name} is "
                                         f"{w}x{h} (width x height; size_policy='error')")
                resized.append(f"{xml_path.name}: {what}, the image is {w}x{h}")
                return w, h

            ann, n, note = _parse(xml_path, index, degenerate, resolve, ignored=ignored)
            if n:
                n_fixed += n
                n_files += 1
                first_note = first_note or note
            self.annotations.append(ann)
            self._image_paths.append(found["path"])
            self._transpose.append(found["transpose"])

        if resized:
            warnings.warn(
                f"VOC {split}: {len(resized)} annotation{'s' if len(resized) != 1 else ''} "
                f"with a missing, zero or wrong <size>: the image's own size is used "
                f"(size_policy='image'), first: {resized[0]}",
                category=UserWarning,
                stacklevel=2,
            )

        if ignored:
            self.ignored_objects = dict(sorted(ignored.items()))
            total = sum(ignored.values())
            shown = ", ".join(f"{k} {v}" for k, v in self.ignored_objects.items())
            warnings.warn(
                f"VOC {split}: {total} object{'s' if total != 1 else ''} of classes not in "
                f"class_names dropped (other_classes='ignore'): {shown}",
                category=UserWarning,
                stacklevel=2,
            )

        if n_fixed:
            warnings.warn(
                f"VOC {split}: {n_fixed} degenerate box{'es' if n_fixed != 1 else ''} "
                f"clipped/dropped (policy {degenerate!r}) in {n_files} "
                f"file{'s' if n_files != 1 else ''}, first: {first_note}",
                category=UserWarning,
                stacklevel=2,
            )

    @staticmethod
    def _find_image(img_dir: Path, image_id: str, filename: str, xml_path: Path) -> Path:
        """The image of ``image_id``: ``<id>.<ext>`` first (the XML's stem is the id the
        split lists; a ``<filename>`` copied from another annotation names another file),
        then the ``<filename>``."""
        tried = [img_dir / f"{image_id}{ext}" for ext in _IMAGE_EXTS]
        if filename:
            tried.append(img_dir / filename)
        for cand in tried:
            if cand.is_file():
                return cand
        looked = ", ".join(str(p) for p in dict.fromkeys(tried))
        raise VOCFormatError(f"{xml_path}: image file not found; looked for {looked}")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(voc_dir={str(self.voc_dir)!r}, split={self.split!r}, "
            f"images={len(self)}, classes={len(self.class_names)})"
        )

    def fingerprint(self, file_digest: Callable[[Path], str] | None = None) -> str:
        """SHA-256 of what this data set gives a model: the class names, the split and year,
        the degenerate-box policy, and per item its id, its parsed ground truth and the
        SHA-256 of its image file's bytes (``file_digest``, e.g. a memoizing
        :class:`navya._cache.FileDigests`; default: read every file). A key for results that
        depend on the data (cached calibrations and fine-tunes, cached evaluations); not the
        synthetic set's recorded fingerprint, which covers every split."""
        import hashlib

        if file_digest is None:
            def file_digest(path: Path) -> str:
                return hashlib.sha256(Path(path).read_bytes()).hexdigest()

        h = hashlib.sha256()
        h.update(repr((self.class_names, self.split, self.year, self.degenerate,
                       self.transforms is None, self.decode_size)).encode())
        for ann, path, turn in zip(self.annotations, self._image_paths, self._transpose,
                                   strict=True):
            h.update(repr((ann.image_id, ann.width, ann.height, turn)).encode())
            for arr in (ann.boxes, ann.labels, ann.difficult):
                h.update(np.ascontiguousarray(arr).tobytes())
            h.update(file_digest(path).encode())
        return h.hexdigest()

    def _index(self, i: int) -> int:
        n = len(self.ids)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        return i

    def image_path(self, i: int) -> Path:
        """Path of the image file of item ``i``."""
        return self._image_paths[self._index(i)]

    def decoded_size(self, i: int) -> tuple[int, int]:
        """``(width, height)`` of item ``i``'s image as :meth:`load_image` returns it: the
        annotation's size, or less when ``decode_size`` lets a JPEG decode reduced (read from
        the file's header, memoized; the pixels are not decoded)."""
        i = self._index(i)
        ann = self.annotations[i]
        if self.decode_size is None:
            return ann.width, ann.height
        if i not in self._decoded:
            from PIL import Image, UnidentifiedImageError

            path = self._image_paths[i]
            try:
                with Image.open(path) as img:
                    full = img.size
                    img.draft("RGB", (self.decode_size, self.decode_size))
                    w, h = img.size
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise VOCFormatError(f"{path}: cannot read image: {exc}") from None
            if (w, h) == full:  # no reduction (not a JPEG, or too small)
                w, h = ann.width, ann.height
            elif self._transpose[i] or (full != (ann.width, ann.height)
                                        and full[::-1] == (ann.width, ann.height)):
                w, h = h, w  # the annotation is of the EXIF-rotated view
            self._decoded[i] = (w, h)
        return self._decoded[i]

    def target(self, i: int) -> dict[str, Any]:
        """Target dict of item ``i`` without loading the image (fresh tensors each call);
        boxes and ``orig_size`` in the pixels of :meth:`load_image` (see ``decode_size``)."""
        i = self._index(i)
        ann = self.annotations[i]
        boxes = torch.tensor(ann.boxes, dtype=torch.float32).reshape(-1, 4)
        w, h = self.decoded_size(i)
        if (w, h) != (ann.width, ann.height):
            scale = torch.tensor([w / ann.width, h / ann.height] * 2, dtype=torch.float32)
            boxes = boxes * scale
        return {
            "boxes": boxes,
            "labels": torch.tensor(ann.labels, dtype=torch.int64),
            "difficult": torch.tensor(ann.difficult, dtype=torch.bool),
            "image_id": ann.image_id,
            "orig_size": (h, w),
        }

    def load_image(self, i: int) -> torch.Tensor:
        """Image of item ``i`` as float32 ``[3, H, W]`` RGB in ``[0, 1]``.

        Raises VOCFormatError if the file cannot be decoded or its size differs from
        the XML ``<size>`` (the boxes would then be wrong).
        """
        from PIL import Image, ImageOps, UnidentifiedImageError

        i = self._index(i)
        path = self._image_paths[i]
        ann = self.annotations[i]
        want = self.decoded_size(i)
        try:
            with Image.open(path) as img:
                if want != (ann.width, ann.height):
                    img.draft("RGB", (self.decode_size, self.decode_size))
                if self._transpose[i]:
                    img = ImageOps.exif_transpose(img)
                elif self.size_policy == "annotation" and img.size != want:
                    turned = ImageOps.exif_transpose(img)  # annotated as shown?
                    if turned.size == want:
                        img = turned
                arr = np.array(to_rgb(img), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise VOCFormatError(f"{path}: cannot read image: {exc}") from None
        h, w = arr.shape[:2]
        if (w, h) != want:
            what = (f"{ann.width}x{ann.height}" if want == (ann.width, ann.height) else
                    f"{ann.width}x{ann.height}, decoded at {want[0]}x{want[1]}")
            raise VOCFormatError(
                f"{path}: image is {w}x{h} but its annotation says {what} (width x height)"
            )
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous().float().div_(255.0)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, target = self.load_image(i), self.target(i)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate(
    batch: Sequence[tuple[torch.Tensor, dict[str, Any]]],
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """DataLoader ``collate_fn`` for detection: ``(list of images, list of targets)``.

    Images may differ in size and targets in box count, so nothing is stacked.
    """
    images = [item[0] for item in batch]
    targets = [item[1] for item in batch]
    return images, targets
