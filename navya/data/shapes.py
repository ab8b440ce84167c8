"""Drawing the synthetic set: the shapes of each class as anti-aliased masks, distractors,
textured backgrounds and object colours of a given contrast (:mod:`navya.data.synthetic`
composes them into images and annotations)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

_SUPERSAMPLE = 3  # anti-aliasing factor for shape masks


def _regular_polygon(n: int, radius: float, angle: float, star_inner: float | None = None):
    pts = []
    k = 2 * n if star_inner else n
    for i in range(k):
        r = radius if (star_inner is None or i % 2 == 0) else radius * star_inner
        a = angle + 2 * math.pi * i / k
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


def _cross_polygon(radius: float, arm: float, angle: float):
    h, t = radius, radius * arm
    base = [(-t, -h), (t, -h), (t, -t), (h, -t), (h, t), (t, t), (t, h), (-t, h), (-t, t),
            (-h, t), (-h, -t), (-t, -t)]
    c, s = math.cos(angle), math.sin(angle)
    return [(x * c - y * s, x * s + y * c) for x, y in base]


def _rect_polygon(length: float, thickness: float, angle: float):
    hl, ht = length / 2, thickness / 2
    c, s = math.cos(angle), math.sin(angle)
    return [(x * c - y * s, x * s + y * c) for x, y in ((-hl, -ht), (hl, -ht), (hl, ht), (-hl, ht))]


def _mask(size: int, draw_fn: Callable[[ImageDraw.ImageDraw, float, float], None]) -> np.ndarray:
    """Render a shape into a ``size`` x ``size`` anti-aliased alpha mask (float32, 0..1)."""
    ss = size * _SUPERSAMPLE
    img = Image.new("L", (ss, ss), 0)
    draw_fn(ImageDraw.Draw(img), ss / 2, _SUPERSAMPLE)
    img = img.resize((size, size), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.float32) / 255.0


def shape_mask(cls: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Alpha mask of one object of class ``cls`` with circumscribed size ``size`` pixels."""
    angle = float(rng.uniform(0, 2 * math.pi))
    canvas = size + 4

    def poly(points):
        def fn(d, c, s):
            d.polygon([(c + x * s, c + y * s) for x, y in points], fill=255)

        return fn

    r = size / 2
    if cls in ("disc", "dot"):
        def fn(d, c, s):
            d.ellipse([c - r * s, c - r * s, c + r * s, c + r * s], fill=255)
    elif cls == "ring":
        inner = r * float(rng.uniform(0.5, 0.68))

        def fn(d, c, s):
            d.ellipse([c - r * s, c - r * s, c + r * s, c + r * s], fill=255)
            d.ellipse([c - inner * s, c - inner * s, c + inner * s, c + inner * s], fill=0)
    elif cls == "square":
        fn = poly(_regular_polygon(4, r, angle))
    elif cls == "triangle":
        fn = poly(_regular_polygon(3, r, angle))
    elif cls == "pentagon":
        fn = poly(_regular_polygon(5, r, angle))
    elif cls == "hexagon":
        fn = poly(_regular_polygon(6, r, angle))
    elif cls == "star":
        fn = poly(_regular_polygon(5, r, angle, star_inner=0.45))
    elif cls == "cross":
        fn = poly(_cross_polygon(r, float(rng.uniform(0.28, 0.4)), angle))
    elif cls == "bar":
        thickness = float(rng.uniform(2, 5))
        fn = poly(_rect_polygon(size, thickness, float(rng.uniform(0, math.pi))))
    else:  # pragma: no cover - guarded by SYNTHETIC_CLASSES
        raise ValueError(f"unknown synthetic class {cls!r}")
    return _mask(canvas, fn)


def distractor_mask(rng: np.random.Generator) -> np.ndarray:
    """A shape of no class: arc, line, irregular blob or L shape."""
    size = int(rng.integers(16, 70))
    kind = int(rng.integers(0, 4))
    r = size / 2
    if kind == 0:
        start = float(rng.uniform(0, 360))
        width = int(rng.integers(2, 5))

        def fn(d, c, s):
            d.arc([c - r * s, c - r * s, c + r * s, c + r * s], start, start + rng_extent,
                  fill=255, width=width * s)

        rng_extent = float(rng.uniform(60, 200))
    elif kind == 1:
        a = float(rng.uniform(0, math.pi))
        w = int(rng.integers(1, 3))

        def fn(d, c, s):
            dx, dy = math.cos(a) * r * s, math.sin(a) * r * s
            d.line([c - dx, c - dy, c + dx, c + dy], fill=255, width=w * s)
    elif kind == 2:
        n = int(rng.integers(7, 11))
        radii = rng.uniform(0.35, 1.0, size=n) * r
        pts = [(radii[i] * math.cos(2 * math.pi * i / n), radii[i] * math.sin(2 * math.pi * i / n))
               for i in range(n)]

        def fn(d, c, s):
            d.polygon([(c + x * s, c + y * s) for x, y in pts], fill=255)
    else:
        t = max(3.0, r * 0.3)
        pts = [(-r, -r), (-r + t, -r), (-r + t, r - t), (r, r - t), (r, r), (-r, r)]

        def fn(d, c, s):
            d.polygon([(c + x * s, c + y * s) for x, y in pts], fill=255)
    return _mask(size + 4, fn)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured background: smooth colour field + lighting gradient, float32 HxWx3 in 0..1."""
    grid = int(rng.integers(3, 8))
    coarse = rng.uniform(0.15, 0.85, size=(grid, grid, 3)).astype(np.float32)
    base = np.stack(
        [np.asarray(Image.fromarray(coarse[..., c]).resize((size, size), Image.Resampling.BICUBIC))
         for c in range(3)],
        axis=-1,
    )
    # fine texture: a second, higher-frequency field at low amplitude
    fine_n = int(rng.integers(16, 40))
    fine = rng.uniform(-0.08, 0.08, size=(fine_n, fine_n)).astype(np.float32)
    fine = np.asarray(Image.fromarray(fine).resize((size, size), Image.Resampling.BILINEAR))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ang = float(rng.uniform(0, 2 * math.pi))
    light = (np.cos(ang) * xs + np.sin(ang) * ys) * float(rng.uniform(0.1, 0.35))
    img = base + fine[..., None] + light[..., None] - light.mean()
    return np.clip(img, 0.0, 1.0)


def object_color(rng: np.random.Generator, bg_rgb: np.ndarray, contrast: float) -> np.ndarray:
    """A random colour whose luminance differs from ``bg_rgb``'s by about ``contrast``."""
    lum_bg = float(bg_rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    sign = 1.0 if (lum_bg + contrast <= 1.0 and (lum_bg - contrast < 0.0 or rng.random() < 0.5)) else -1.0
    hue = rng.uniform(-0.12, 0.12, size=3).astype(np.float32)
    hue -= hue.mean()
    return np.clip(bg_rgb + sign * contrast + hue, 0.0, 1.0).astype(np.float32)


def overlaps_too_much(box, boxes, limit: float = 0.45) -> bool:
    x1, y1, x2, y2 = box
    for bx1, by1, bx2, by2 in boxes:
        iw, ih = min(x2, bx2) - max(x1, bx1), min(y2, by2) - max(y1, by1)
        if iw > 0 and ih > 0:
            inter = iw * ih
            union = (x2 - x1) * (y2 - y1) + (bx2 - bx1) * (by2 - by1) - inter
            if inter / union > limit:
                return True
    return False
