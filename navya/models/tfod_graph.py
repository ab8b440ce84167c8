"""A TF OD API frozen graph read as what it configures: its nodes by name, the pre-processor
(resize and scaling), the SSD anchors, the post-processor (box coder, score function, NMS) and
the label map. :mod:`navya.models.tfod` maps its network onto navya's SSDLite."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from navya.errors import NavyaError
from navya.models._tf_graph import NodeDef, TensorValue


class TFImportError(NavyaError, ValueError):
    """A frozen graph navya cannot map (the message names the op or tensor)."""

def _base(name: str) -> str:
    """Node name of an input reference (``^ctrl``, ``node:1`` -> ``node``)."""
    return name.lstrip("^").split(":")[0]

@dataclass
class _Graph:
    nodes: dict[str, NodeDef]
    consumers: dict[str, list[NodeDef]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for n in self.nodes.values():
            for i in n.data_inputs:
                self.consumers.setdefault(_base(i), []).append(n)

    def node(self, name: str, what: str = "tensor") -> NodeDef:
        n = self.nodes.get(_base(name))
        if n is None:
            raise TFImportError(f"the graph has no {what} {name!r}")
        return n

    def resolve(self, name: str) -> NodeDef:
        """The node behind ``name``, through ``Identity`` nodes."""
        n = self.node(name)
        seen = 0
        while n.op == "Identity":
            n = self.node(n.data_inputs[0])
            seen += 1
            if seen > 100:
                raise TFImportError(f"{name!r}: a cycle of Identity nodes")
        return n

    def const(self, name: str) -> np.ndarray:
        n = self.resolve(name)
        if n.op != "Const" or not isinstance(n.attr.get("value"), TensorValue):
            raise TFImportError(f"tensor {n.name!r} (op {n.op}) is not a constant: a frozen "
                                f"graph holds its weights as Const nodes")
        return np.asarray(n.attr["value"].array)

    def consumer(self, node: NodeDef, ops) -> NodeDef | None:
        """The one consumer of ``node`` (through Identity nodes) whose op is in ``ops``."""
        frontier, found = [node], []
        while frontier:
            cur = frontier.pop()
            for c in self.consumers.get(cur.name, []):
                if c.op == "Identity":
                    frontier.append(c)
                elif c.op in ops:
                    found.append(c)
        if len(found) > 1:
            raise TFImportError(f"{node.name!r} feeds {len(found)} {'/'.join(ops)} nodes "
                                f"({', '.join(f.name for f in found)}): not a plain layer")
        return found[0] if found else None

    def find_suffix(self, suffix: str, op: str | None = None) -> NodeDef:
        hits = [n for n in self.nodes.values()
                if n.name.endswith(suffix) and (op is None or n.op == op)]
        if len(hits) != 1:
            raise TFImportError(f"expected one tensor named '*{suffix}' in the graph, found "
                                f"{len(hits)}{': ' + ', '.join(h.name for h in hits[:4]) if hits else ''}")
        return hits[0]

def _preprocessor(g: _Graph) -> dict:
    resize = [n for n in g.nodes.values() if n.name.startswith("Preprocessor/")
              and n.op.startswith("Resize")]
    if len(resize) != 1:
        raise TFImportError(f"expected one resize op in the Preprocessor, found "
                            f"{[f'{n.name} ({n.op})' for n in resize]}")
    r = resize[0]
    if r.op != "ResizeBilinear":
        raise TFImportError(f"{r.name}: op {r.op} (navya maps ResizeBilinear)")
    if r.attr.get("align_corners", False):
        raise TFImportError(f"{r.name}: align_corners=True is not mapped")
    size = g.const(r.data_inputs[1]).tolist()
    if len(size) != 2 or size[0] != size[1]:
        raise TFImportError(f"{r.name}: resize to {size}: navya's detectors are square")
    sub = g.node("Preprocessor/sub", "pre-processor output")
    mul = g.resolve(sub.data_inputs[0])
    if mul.op != "Mul":
        raise TFImportError(f"Preprocessor/sub reads {mul.name} ({mul.op}), expected x * scale - "
                            f"offset")
    scale = next((float(g.const(i)) for i in mul.data_inputs if g.resolve(i).op == "Const"), None)
    offset = float(g.const(sub.data_inputs[1]))
    if scale is None or scale <= 0:
        raise TFImportError(f"{mul.name}: no positive constant pixel scale")
    # navya's images are x / 255 in [0, 1]: x * scale - offset = (x/255 - mean) / std
    std = 1.0 / (255.0 * scale)
    mean = offset * std
    return {
        "image_size": int(size[0]),
        "resize": "bilinear" if r.attr.get("half_pixel_centers", False) else "tf_legacy_bilinear",
        "image_mean": round(mean, 6), "image_std": round(std, 6),
    }

def _anchor_specs(g: _Graph, levels: int) -> list[list[tuple[float, float]]]:
    """Per level, the (scale, aspect ratio) pairs of the anchor generator's constants."""
    specs = []
    for k in range(levels):
        sq = g.nodes.get("MultipleGridAnchorGenerator/Sqrt" + ("" if k == 0 else f"_{k}"))
        if sq is None or sq.op != "Sqrt":
            raise TFImportError(f"the graph has no anchor-generator tensor "
                                f"'MultipleGridAnchorGenerator/Sqrt{'' if k == 0 else f'_{k}'}' "
                                f"(navya maps the ssd_anchor_generator)")
        ratios = g.const(sq.data_inputs[0]).astype(np.float64)
        div = [c for c in g.consumers.get(sq.name, []) if c.op == "RealDiv"
               and _base(c.data_inputs[1]) == sq.name]
        if len(div) != 1:
            raise TFImportError(f"{sq.name}: cannot find the anchor heights (scales / sqrt(ratio))")
        scales = g.const(div[0].data_inputs[0]).astype(np.float64)
        specs.append(list(zip(scales.tolist(), ratios.tolist(), strict=True)))
    return specs

def _anchor_config(specs: list[list[tuple[float, float]]]) -> dict:
    """The ssd_anchor_generator options that give ``specs`` (verified by recomputing them)."""
    r6 = lambda v: round(float(v), 6)  # noqa: E731 - pipeline configs are decimal text
    first, second, last = specs[0], specs[1], specs[-1]
    reduce = len(first) == 3 and r6(first[0][0]) == 0.1 and [r6(a) for _, a in first] == [1, 2, 0.5]
    ratios = [r6(a) for _, a in second]
    interp = 0.0
    if len({r6(s) for s, _ in second}) == 2:  # the last box has the interpolated scale
        interp = ratios.pop()
    cfg = {
        "anchor_generator": "tf_ssd",
        "min_ratio": r6(first[1][0] if reduce else first[0][0]),
        "max_ratio": r6(last[0][0]),
        "aspect_ratios": tuple(ratios),
        "interpolated_scale_aspect_ratio": interp,
        "reduce_boxes_in_lowest_layer": reduce,
    }
    # recompute as TF's create_ssd_anchors does and compare
    n = len(specs)
    lo, hi = cfg["min_ratio"], cfg["max_ratio"]
    sc = [lo + (hi - lo) * i / (n - 1) for i in range(n)] + [1.0]
    for k, got in enumerate(specs):
        if k == 0 and reduce:
            want = [(0.1, 1.0), (sc[0], 2.0), (sc[0], 0.5)]
        else:
            want = [(sc[k], a) for a in ratios]
            if interp > 0:
                want.append((float(np.sqrt(sc[k] * sc[k + 1])), interp))
        if len(want) != len(got) or not np.allclose(np.array(want), np.array(got), atol=1e-6):
            raise TFImportError(f"anchor generator level {k}: (scale, aspect ratio) {got} is not "
                                f"what ssd_anchor_generator gives with {cfg}: {want}")
    return cfg

def _postprocessor(g: _Graph) -> dict:
    decode = [float(g.const(f"Postprocessor/Decode/truediv{s}/y")) for s in ("", "_1", "_2", "_3")]
    if decode != [10.0, 10.0, 5.0, 5.0]:
        raise TFImportError(f"box coder scales {decode} (Postprocessor/Decode/truediv*/y): navya's "
                            f"box coder uses 10, 10, 5, 5")
    conv = g.node("Postprocessor/convert_scores", "score converter")
    if conv.op not in ("Sigmoid", "Softmax"):
        raise TFImportError(f"Postprocessor/convert_scores: op {conv.op!r} (navya maps Sigmoid "
                            f"and Softmax)")
    scale_node = g.resolve(conv.data_inputs[0])
    logit_scale = 1.0
    if scale_node.name == "Postprocessor/scale_logits":
        logit_scale = float(g.const(scale_node.data_inputs[1]))
        src = g.resolve(scale_node.data_inputs[0]).name
    else:
        src = scale_node.name
    if src != "concat_1":
        raise TFImportError(f"the score converter reads {src!r}, expected the class predictions "
                            f"'concat_1'")
    iou = float(g.const(g.find_suffix("non_max_suppression/iou_threshold").name))
    thresh = float(g.const(g.find_suffix("non_max_suppression/score_threshold").name))
    per_class = int(g.const(g.find_suffix("MultiClassNonMaxSuppression/Minimum/x").name))
    return {"score": "sigmoid" if conv.op == "Sigmoid" else "softmax", "logit_scale": logit_scale,
            "nms_thresh": round(iou, 6), "score_thresh": float(f"{thresh:.6g}"),
            "detections_per_img": per_class}

def parse_label_map(path: str | os.PathLike) -> list[str]:
    """Class names of a TF OD API label map (``.pbtxt``: ``item { id: 1 name: 'person' }``),
    in id order from 1; ``display_name`` preferred over ``name``."""
    text = Path(path).read_text()
    items = re.findall(r"item\s*\{(.*?)\}", text, flags=re.S)
    if not items:
        raise TFImportError(f"{path}: no 'item {{ ... }}' entries: not a label map")
    names: dict[int, str] = {}
    for body in items:
        fields = dict(re.findall(r"(\w+)\s*:\s*(\"[^\"]*\"|'[^']*'|\S+)", body))
        if "id" not in fields:
            raise TFImportError(f"{path}: an item without id: {body.strip()!r}")
        name = fields.get("display_name", fields.get("name"))
        if name is None:
            raise TFImportError(f"{path}: item {fields['id']} has no name")
        names[int(fields["id"])] = name.strip("\"'")
    if sorted(names) != list(range(1, len(names) + 1)):
        raise TFImportError(f"{path}: ids {sorted(names)}: expected 1..{len(names)}")
    return [names[i] for i in range(1, len(names) + 1)]
