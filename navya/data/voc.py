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
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from navya.data.voc_xml import (
    _OTHER_CLASSES_POLICIES,
    _SIZE_POLICIES,
    VOC_CLASSES,
    Annotation,
    DegeneratePolicy,
    OtherClassesPolicy,
    SizePolicy,
    VOCFormatError,
    _check_policy,
    _class_index,
    _parse,
    class_names_file,
    parse_annotation,
    read_class_names,
    to_voc_xml_box,
    write_annotation,
)

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

#: EXIF orientations that swap width and height (90 or 270 degrees, mirrored or not)
_EXIF_ORIENTATION = 0x0112
_SWAPPING = (5, 6, 7, 8)
_IMAGE_EXTS: tuple[str, ...] = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG", ".bmp",
                                 ".webp", ".tif", ".tiff")

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


def find_image(img_dir: Path, image_id: str, filename: str, xml_path: Path) -> Path:
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
                path = find_image(img_dir, image_id, filename, xml_path)
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
