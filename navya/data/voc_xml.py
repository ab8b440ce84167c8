"""Pascal VOC annotations: the XML reader and writer, the class list (``classes.txt``) and the
error every VOC problem raises (:class:`VOCFormatError`). The box convention and the policies
are described in :mod:`navya.data.voc`, which reads whole splits with them.
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape as _xml_escape

import numpy as np

from navya._io import current_umask
from navya.errors import NavyaError

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
