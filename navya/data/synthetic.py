"""Deterministic synthetic detection data in the Pascal VOC layout: navya's embedded default.

Nothing can be downloaded where navya runs, so the default workload is a data set that navya
writes itself, in exactly the layout :mod:`navya.data.voc` reads (and real VOC uses)::

    <out>/VOCdevkit/VOC2007/
        Annotations/<id>.xml          VOC XML, 1-based inclusive pixel boxes
        JPEGImages/<id>.png           lossless RGB images (PNG), 320x320 by default
        JPEGImages/<id>.jpg           symlink to the PNG, for tools that hard-code ".jpg"
                                      (torchvision's VOCDetection); PIL reads by content
        ImageSets/Main/{train,val,test,trainval}.txt
        classes.txt                   the class names, one per line, in label order
        navya_synthetic.json          generation config, counts and sha256 fingerprint

Every image is drawn from its own generator seeded by ``(seed, split, index)``, so the data set
is identical whatever the number of worker processes, and a single image can be regenerated.

The classes are built with graded difficulty, so that a trained detector is not saturated and
compression losses show up, unevenly, per class:

========  ===============================================================
class     what makes it easy or hard
========  ===============================================================
disc      large, high contrast: the easy reference
square    rotated squares, high contrast
triangle  rotated equilateral triangles
cross     plus signs, medium contrast
star      five-pointed stars, medium contrast
ring      annuli at LOW contrast against the textured background
pentagon  look-alike pair with ``hexagon`` (small, rotated regular polygons)
hexagon   look-alike pair with ``pentagon``
bar       thin (2-5 px) elongated bars at any angle: boxes mostly background
dot       SMALL discs (7-13 px), below the smallest anchor
========  ===============================================================

On top of that: 1 to 12 objects per image, objects partially occluding each other (an object
less than 40 % visible is marked ``difficult``, as VOC does for hard instances), distractor
shapes of no class (arcs, lines, irregular blobs, L shapes), textured backgrounds, a lighting
gradient and pixel noise.

The fingerprint is a sha256 over every image's decoded pixels, every annotation and the split
files: it tells one generation from another independently of the PNG encoder's bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from navya._io import atomic_write_text
from navya.data.shapes import (
    background,
    distractor_mask,
    object_color,
    overlaps_too_much,
    shape_mask,
)
from navya.data.voc import Annotation, write_annotation
from navya.errors import NavyaError

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "disc",
    "square",
    "triangle",
    "cross",
    "star",
    "ring",
    "pentagon",
    "hexagon",
    "bar",
    "dot",
)

# Per-class appearance: circumscribed size range (pixels) and contrast range (0..1 luminance
# offset from the local background). ``bar`` sizes are lengths; its thickness is separate.
_CLASS_STYLE: dict[str, tuple[tuple[int, int], tuple[float, float]]] = {
    "disc": ((28, 90), (0.30, 0.60)),
    "square": ((26, 84), (0.30, 0.60)),
    "triangle": ((28, 90), (0.25, 0.55)),
    "cross": ((26, 80), (0.20, 0.45)),
    "star": ((28, 84), (0.20, 0.45)),
    "ring": ((26, 84), (0.05, 0.12)),
    "pentagon": ((16, 44), (0.20, 0.45)),
    "hexagon": ((16, 44), (0.20, 0.45)),
    "bar": ((36, 140), (0.25, 0.55)),
    "dot": ((7, 13), (0.30, 0.60)),
}

_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
_DIFFICULT_VISIBLE = 0.40  # below this visible fraction an object is marked difficult
_DROP_VISIBLE = 0.10  # below this it is dropped from the annotation altogether
FORMAT_VERSION = 2



class SyntheticError(NavyaError, ValueError):
    """A synthetic-set configuration or metadata file that cannot be used."""


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. Defaults are the embedded default data set.

    ``image_size`` is the side of the square images in pixels.
    """

    seed: int = 0
    image_size: int = 320
    splits: dict[str, int] = field(
        default_factory=lambda: {"train": 3000, "val": 500, "test": 500}
    )
    min_objects: int = 1
    max_objects: int = 12
    max_distractors: int = 4
    noise_std: float = 0.02
    year: str = "2007"

    def __post_init__(self) -> None:
        if self.image_size < 64:
            raise SyntheticError(f"image_size must be >= 64 pixels, got {self.image_size}")
        unknown = set(self.splits) - set(_SPLIT_CODES)
        if unknown:
            raise SyntheticError(f"unknown split(s) {sorted(unknown)}; known: {sorted(_SPLIT_CODES)}")
        if any(n < 0 for n in self.splits.values()):
            raise SyntheticError(f"split sizes must be >= 0, got {self.splits}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise SyntheticError(
                f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}"
            )
        if self.max_distractors < 0 or self.noise_std < 0:
            raise SyntheticError("max_distractors and noise_std must be >= 0")


@dataclass(frozen=True)
class SyntheticInfo:
    """What :func:`generate` wrote: the VOC directory, counts and fingerprint."""

    voc_dir: Path
    fingerprint: str
    counts: dict[str, int]
    num_objects: dict[str, int]
    config: SyntheticConfig


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def render_image(config: SyntheticConfig, split: str, index: int):
    """Render one image. Returns ``(pixels uint8 HxWx3, boxes float32 [N,4], labels, difficult)``.

    Boxes are ``[x1, y1, x2, y2]`` in 0-based continuous pixel coordinates (the tight box of the
    object's rendered mask, whole pixels); labels are 1-based indices into
    :data:`SYNTHETIC_CLASSES`.
    """
    rng = np.random.default_rng([config.seed, _SPLIT_CODES[split], index])
    size = config.image_size
    img = background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int16)

    n_obj = int(rng.integers(config.min_objects, config.max_objects + 1))
    n_dis = int(rng.integers(0, config.max_distractors + 1))
    # draw order: objects and distractors interleaved, so both occlude and get occluded
    items = [("obj", int(rng.integers(0, len(SYNTHETIC_CLASSES)))) for _ in range(n_obj)]
    items += [("dis", -1)] * n_dis
    order = rng.permutation(len(items))

    placed_boxes: list[tuple[int, int, int, int]] = []
    objects: list[tuple[int, np.ndarray, tuple[int, int]]] = []  # (label, mask, (x0, y0))
    for k in order:
        kind, cls_idx = items[int(k)]
        if kind == "obj":
            cls = SYNTHETIC_CLASSES[cls_idx]
            (smin, smax), (cmin, cmax) = _CLASS_STYLE[cls]
            # scale sizes with the image so other image sizes keep the same difficulty
            scale = size / 320.0
            obj_size = max(6, int(rng.integers(int(smin * scale), int(smax * scale) + 1)))
            mask = shape_mask(cls, obj_size, rng)
            contrast = float(rng.uniform(cmin, cmax))
        else:
            mask = distractor_mask(rng)
            contrast = float(rng.uniform(0.15, 0.5))
        mh, mw = mask.shape
        placed = None
        for _ in range(20):
            x0 = int(rng.integers(-mw // 4, size - 3 * mw // 4))
            y0 = int(rng.integers(-mh // 4, size - 3 * mh // 4))
            box = (max(x0, 0), max(y0, 0), min(x0 + mw, size), min(y0 + mh, size))
            if kind == "dis" or not overlaps_too_much(box, placed_boxes):
                placed = (x0, y0)
                break
        if placed is None:
            continue
        x0, y0 = placed
        # crop the mask to the image
        cx0, cy0 = max(0, -x0), max(0, -y0)
        cx1, cy1 = min(mw, size - x0), min(mh, size - y0)
        sub = mask[cy0:cy1, cx0:cx1]
        ix0, iy0 = x0 + cx0, y0 + cy0
        region = img[iy0 : iy0 + sub.shape[0], ix0 : ix0 + sub.shape[1]]
        bg_rgb = region.reshape(-1, 3).mean(axis=0)
        color = object_color(rng, bg_rgb, contrast)
        # gentle shading across the object
        shade = 1.0 + np.linspace(-0.08, 0.08, sub.shape[1], dtype=np.float32)[None, :, None]
        alpha = sub[..., None]
        region[:] = region * (1 - alpha) + np.clip(color * shade, 0, 1) * alpha
        solid = sub > 0.5
        own = owner[iy0 : iy0 + sub.shape[0], ix0 : ix0 + sub.shape[1]]
        if kind == "obj":
            label_id = len(objects)
            own[solid] = label_id
            objects.append((cls_idx + 1, solid, (ix0, iy0)))
            placed_boxes.append((ix0, iy0, ix0 + sub.shape[1], iy0 + sub.shape[0]))
        else:
            own[solid] = -2  # a distractor occludes whatever is below it

    boxes, labels, difficult = [], [], []
    for obj_id, (label, solid, (ix0, iy0)) in enumerate(objects):
        total = int(solid.sum())
        if total == 0:
            continue
        own = owner[iy0 : iy0 + solid.shape[0], ix0 : ix0 + solid.shape[1]]
        visible = int(((own == obj_id) & solid).sum()) / total
        if visible < _DROP_VISIBLE:
            continue
        rows = np.flatnonzero(solid.any(axis=1))
        cols = np.flatnonzero(solid.any(axis=0))
        boxes.append((ix0 + cols[0], iy0 + rows[0], ix0 + cols[-1] + 1, iy0 + rows[-1] + 1))
        labels.append(label)
        difficult.append(visible < _DIFFICULT_VISIBLE)

    if config.noise_std > 0:
        img = img + rng.normal(0.0, config.noise_std, size=img.shape).astype(np.float32)
    pixels = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return (
        pixels,
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
        np.asarray(difficult, dtype=bool),
    )


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _image_id(split: str, index: int, config: SyntheticConfig) -> str:
    offset = 0
    for name in ("train", "val", "test"):
        if name == split:
            break
        offset += config.splits.get(name, 0)
    return f"{offset + index:06d}"


def _write_one(args) -> tuple[str, str, int, int]:
    """Render and write one image + annotation; returns (id, sha256 hex, n objects, n difficult)."""
    config, voc_dir, split, index = args
    image_id = _image_id(split, index, config)
    pixels, boxes, labels, difficult = render_image(config, split, index)
    filename = f"{image_id}.png"
    img_path = voc_dir / "JPEGImages" / filename
    tmp = img_path.with_suffix(".png.tmp")
    Image.fromarray(pixels).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, img_path)
    link = voc_dir / "JPEGImages" / f"{image_id}.jpg"
    if not link.is_symlink():
        if link.exists():
            link.unlink()
        link.symlink_to(filename)
    ann = Annotation(
        image_id=image_id, filename=filename, width=pixels.shape[1], height=pixels.shape[0],
        boxes=boxes, labels=labels, difficult=difficult,
    )
    xml_path = voc_dir / "Annotations" / f"{image_id}.xml"
    write_annotation(xml_path, ann, SYNTHETIC_CLASSES, folder=f"VOC{config.year}")
    h = hashlib.sha256()
    h.update(pixels.tobytes())
    h.update(xml_path.read_bytes())
    return (image_id, h.hexdigest(), len(labels), int(difficult.sum()),
            img_path.stat().st_size, xml_path.stat().st_size)


def generate(
    out: str | os.PathLike,
    config: SyntheticConfig | None = None,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SyntheticInfo:
    """Write the synthetic data set under ``out`` (``out/VOCdevkit/VOC<year>/...``).

    ``workers`` processes render images in parallel (default: all cores); the output does not
    depend on it. ``progress(done, total)`` is called as images complete. The set is written
    into a private folder under ``out`` and moved into place whole (an existing set of the
    same year is replaced then), so an interrupted generation leaves no partial set.
    """
    config = config or SyntheticConfig()
    final_dir = Path(out) / "VOCdevkit" / f"VOC{config.year}"
    # generated into a private folder and moved into place whole: an interrupted generation
    # leaves nothing that looks like a data set
    staging = Path(out) / f".navya-synth-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    voc_dir = staging / "VOCdevkit" / f"VOC{config.year}"
    try:
        info = _generate_into(voc_dir, config, workers=workers, progress=progress)
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
        if final_dir.exists():
            final_dir.rename(old)
        voc_dir.rename(final_dir)
        if old.exists():
            shutil.rmtree(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SyntheticInfo(final_dir, info.fingerprint, info.counts, info.num_objects, config)


def _generate_into(voc_dir: Path, config: SyntheticConfig, *, workers: int | None,
                   progress: Callable[[int, int], None] | None) -> SyntheticInfo:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc_dir / sub).mkdir(parents=True, exist_ok=True)

    jobs = [(config, voc_dir, split, i)
            for split in ("train", "val", "test") for i in range(config.splits.get(split, 0))]
    total = len(jobs)
    workers = workers or os.cpu_count() or 1
    results = []
    if workers > 1 and total > 50:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            for r in pool.imap(_write_one, jobs, chunksize=16):
                results.append(r)
                if progress:
                    progress(len(results), total)
    else:
        for job in jobs:
            results.append(_write_one(job))
            if progress:
                progress(len(results), total)

    digest = hashlib.sha256()
    counts, num_objects = {}, {}
    pos = 0
    split_text = {}
    for split in ("train", "val", "test"):
        n = config.splits.get(split, 0)
        if n == 0 and split not in config.splits:
            continue
        rows = results[pos : pos + n]
        pos += n
        split_text[split] = "".join(f"{r[0]}\n" for r in rows)
        counts[split] = n
        num_objects[split] = sum(r[2] for r in rows)
        for r in rows:
            digest.update(r[1].encode())
    if "train" in split_text or "val" in split_text:
        split_text["trainval"] = split_text.get("train", "") + split_text.get("val", "")
    for split, text in split_text.items():
        atomic_write_text(voc_dir / "ImageSets" / "Main" / f"{split}.txt", text)
        digest.update(f"{split}:{text}".encode())
    atomic_write_text(voc_dir / "classes.txt", "".join(f"{c}\n" for c in SYNTHETIC_CLASSES))
    digest.update("\n".join(SYNTHETIC_CLASSES).encode())
    fingerprint = digest.hexdigest()
    meta = {
        "generator": "navya.data.synthetic",
        "format_version": FORMAT_VERSION,
        "config": asdict(config),
        "classes": list(SYNTHETIC_CLASSES),
        "counts": counts,
        "num_objects": num_objects,
        "fingerprint": fingerprint,
        # per image: [sha256 of pixels + annotation, PNG bytes, XML bytes] (verify_synthetic)
        "files": {r[0]: [r[1], r[4], r[5]] for r in results},
    }
    atomic_write_text(voc_dir / "navya_synthetic.json", json.dumps(meta, indent=1) + "\n")
    return SyntheticInfo(voc_dir, fingerprint, counts, num_objects, config)


def verify_synthetic(voc_dir: str | os.PathLike, *, sample: int = 16) -> list[str]:
    """What is wrong with a generated set (empty when it matches its metadata): every image
    and annotation listed in ``navya_synthetic.json`` present with its recorded size, the
    split files listing exactly those images, and ``sample`` images (spread over the set)
    re-hashed. About a second for the default 4,000 images."""
    voc_dir = Path(voc_dir)
    path = voc_dir / "navya_synthetic.json"
    try:
        meta = json.loads(path.read_text())
        files = meta["files"]
        counts = meta["counts"]
    except FileNotFoundError:
        return [f"{path} is missing"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        return [f"{path}: not a valid navya_synthetic.json with per-file records ({exc!r}); "
                "sets from before navya 0.1 lack them: regenerate"]
    problems = []
    for image_id, (_sha, png_size, xml_size) in files.items():
        for sub, suffix, size in (("JPEGImages", ".png", png_size),
                                  ("Annotations", ".xml", xml_size)):
            f = voc_dir / sub / f"{image_id}{suffix}"
            try:
                actual = f.stat().st_size
            except FileNotFoundError:
                problems.append(f"{f} is missing")
                continue
            if actual != size:
                problems.append(f"{f} has {actual} bytes, the set recorded {size}")
        if len(problems) >= 5:
            return problems + ["(further files not checked)"]
    listed = 0
    for split, n in counts.items():
        split_file = voc_dir / "ImageSets" / "Main" / f"{split}.txt"
        ids = split_file.read_text().split() if split_file.exists() else None
        if ids is None or len(ids) != n or not set(ids) <= set(files):
            problems.append(f"{split_file} does not list the {n} images the set recorded")
        listed += n
    if listed != len(files):
        problems.append(f"{path}: its splits count {listed} images, its files {len(files)}")
    ids = sorted(files)
    for image_id in ids[:: max(1, len(ids) // max(sample, 1))][:sample]:
        img = voc_dir / "JPEGImages" / f"{image_id}.png"
        xml = voc_dir / "Annotations" / f"{image_id}.xml"
        if not (img.exists() and xml.exists()):
            continue
        h = hashlib.sha256()
        h.update(np.asarray(Image.open(img).convert("RGB")).tobytes())
        h.update(xml.read_bytes())
        if h.hexdigest() != files[image_id][0]:
            problems.append(f"{img} or {xml}: content differs from the generated set")
    return problems


def read_fingerprint(voc_dir: str | os.PathLike) -> str | None:
    """The fingerprint recorded by :func:`generate` in ``voc_dir``, or None if there is none."""
    path = Path(voc_dir) / "navya_synthetic.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())["fingerprint"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SyntheticError(f"{path}: not a valid navya_synthetic.json ({exc})") from exc
