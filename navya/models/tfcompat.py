"""TensorFlow's conventions that an imported TF OD API detector needs in navya's SSDLite (model
options of :data:`navya.models.ssdlite.DEFAULTS`): "SAME" padding, the SSD anchor generator and
the legacy bilinear resize. navya's own models never use them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

# Every default in one place (torchvision's ssdlite320 values unless noted).


def tf_same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one spatial dimension: ``(before, after)``; the odd pixel
    goes after (bottom / right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2

def apply_tf_same_padding(core: nn.Module, image_size: int) -> None:
    """Give every convolution of ``core`` TensorFlow's "SAME" padding for inputs of
    ``image_size`` (in place). Symmetric padding stays the convolution's own; asymmetric
    padding becomes an ``nn.ZeroPad2d`` named ``pad`` just before the convolution in its
    ``nn.Sequential`` (quantizable: it pads with the quantized zero)."""
    sizes: dict[str, tuple[int, int]] = {}
    convs = {n: m for n, m in core.named_modules() if isinstance(m, nn.Conv2d)}
    hooks = [m.register_forward_pre_hook(
        lambda mod, args, name=n: sizes.__setitem__(name, tuple(args[0].shape[-2:])))
        for n, m in convs.items()]
    was_training = core.training
    try:
        with torch.no_grad():
            feats = core.eval().features(torch.zeros(1, 3, image_size, image_size))
            for f, c, r in zip(feats, core.cls_heads, core.reg_heads, strict=True):
                c(f)
                r(f)
    finally:
        for h in hooks:
            h.remove()
        core.train(was_training)
    for name, conv in convs.items():
        (ph0, ph1), (pw0, pw1) = (
            tf_same_pads(sizes[name][i], conv.kernel_size[i], conv.stride[i], conv.dilation[i])
            for i in range(2))
        if (ph0, pw0) == (ph1, pw1):
            conv.padding = (ph0, pw0)
            continue
        parent_name, _, leaf = name.rpartition(".")
        parent = core.get_submodule(parent_name) if parent_name else core
        if not isinstance(parent, nn.Sequential) or "pad" in parent._modules:
            raise ValueError(f"cannot give {name} asymmetric TF SAME padding: its parent is not "
                             f"an nn.Sequential with room for a 'pad' module")
        conv.padding = (0, 0)
        mods = list(parent._modules.items())
        parent._modules.clear()
        for k, v in mods:
            if k == leaf:
                parent._modules["pad"] = nn.ZeroPad2d((pw0, pw1, ph0, ph1))
            parent._modules[k] = v

def anchors_per_level(cfg: dict, levels: int) -> list[int]:
    """Anchors per feature-map cell, per level."""
    if cfg["anchor_generator"] == "tf_ssd":
        n = len(cfg["aspect_ratios"]) + (1 if cfg["interpolated_scale_aspect_ratio"] > 0 else 0)
        first = 3 if cfg["reduce_boxes_in_lowest_layer"] else n
        return [first] + [n] * (levels - 1)
    return [2 + 2 * len(cfg["aspect_ratios"])] * levels

def tf_ssd_anchors(shapes: Sequence[tuple[int, int]], image_size: int, cfg: dict) -> Tensor:
    """The TF OD API ``ssd_anchor_generator`` (``create_ssd_anchors`` and
    ``MultipleGridAnchorGenerator`` with base size 1, default strides and offsets) for feature
    maps of ``shapes``, in float32 as TensorFlow computes them; returned as ``[x1, y1, x2, y2]``
    in pixels of ``image_size``, in TF's order (level, row, column, box)."""
    n = len(shapes)
    lo, hi = float(cfg["min_ratio"]), float(cfg["max_ratio"])
    scales = [lo + (hi - lo) * i / (n - 1) for i in range(n)] + [1.0]
    interp = float(cfg["interpolated_scale_aspect_ratio"])
    out = []
    for layer, (h, w) in enumerate(shapes):
        if layer == 0 and cfg["reduce_boxes_in_lowest_layer"]:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[layer], float(a)) for a in cfg["aspect_ratios"]]
            if interp > 0.0:
                specs.append((math.sqrt(scales[layer] * scales[layer + 1]), interp))
        sc = torch.tensor([s for s, _ in specs], dtype=torch.float32)
        ratio_sqrt = torch.sqrt(torch.tensor([a for _, a in specs], dtype=torch.float32))
        heights, widths = sc / ratio_sqrt, sc * ratio_sqrt
        stride_y = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(float(h))
        stride_x = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(float(w))
        cy = torch.arange(h, dtype=torch.float32) * stride_y + 0.5 * stride_y
        cx = torch.arange(w, dtype=torch.float32) * stride_x + 0.5 * stride_x
        cy, cx = cy[:, None, None], cx[None, :, None]
        k = len(specs)
        ymin = (cy - 0.5 * heights).expand(h, w, k)
        xmin = (cx - 0.5 * widths).expand(h, w, k)
        ymax = (cy + 0.5 * heights).expand(h, w, k)
        xmax = (cx + 0.5 * widths).expand(h, w, k)
        out.append(torch.stack([xmin, ymin, xmax, ymax], -1).reshape(-1, 4))
    return torch.cat(out) * float(image_size)

def tf_legacy_resize(img: Tensor, size: int) -> Tensor:
    """TF1 ``ResizeBilinear(align_corners=False, half_pixel_centers=False)`` of a ``[C, H, W]``
    float tensor to ``size`` x ``size``: source coordinate ``dst * (in / out)``, no half-pixel
    offset, as TensorFlow's kernel computes it in float32."""
    def axis(n_in: int) -> tuple[Tensor, Tensor, Tensor]:
        scale = torch.tensor(n_in / size, dtype=torch.float32)
        src = torch.arange(size, dtype=torch.float32) * scale
        low = src.floor()
        return (low.long().clamp(0, n_in - 1), src.ceil().long().clamp(max=n_in - 1),
                (src - low).to(img.dtype))

    y0, y1, ly = axis(img.shape[-2])
    x0, x1, lx = axis(img.shape[-1])
    top, bottom = img[:, y0], img[:, y1]
    tl, tr, bl, br = top[:, :, x0], top[:, :, x1], bottom[:, :, x0], bottom[:, :, x1]
    t = tl + (tr - tl) * lx
    b = bl + (br - bl) * lx
    return t + (b - t) * ly[:, None]
