"""SSD-Lite detectors on MobileNetV2 (the default) and MobileNetV3-Large, quantizable.

Layout (as torchvision's quantizable models)::

    SSDLite                                 float pre-processing, anchors, loss, decode + NMS
      .core : SSDLiteCore                   the convolutional network, quantizable
          .quant    QuantStub               float -> (fake-)quantized input
          .backbone MobileNetFeatures       two backbone stages (stride 16 and 32)
          .extras   ModuleList              4 extra blocks (stride 64, 128, 256, 512)
          .cls_heads / .reg_heads           depthwise-separable SSD-Lite predictors, per level
          .dequant  DeQuantStub             head outputs back to float

Only ``core`` is quantized; anchors, box decoding and NMS stay float (torchvision's SSD
pieces: ``DefaultBoxGenerator``, ``BoxCoder``, ``SSDMatcher``, ``batched_nms``).

Conventions: images are float tensors CHW in [0, 1], any size (resized to ``image_size`` x
``image_size`` inside); boxes are ``[x1, y1, x2, y2]`` in pixels of the input image; labels are
1-based (0 is background), so ``num_classes`` counts the background as torchvision does.
Activations are ReLU (not ReLU6) in MobileNetV2 and the SSD-Lite blocks, so every
Conv-BN-ReLU fuses for INT8; MobileNetV3 keeps its Hardswish (Conv-BN fused only).

Options for detectors trained elsewhere (TensorFlow Object Detection API, imported by
:mod:`navya.models.tfod`); every default keeps navya's own behaviour:

=====================================  ===========================================================
``activation="relu6"``                 ReLU6 in MobileNetV2 and the SSD-Lite blocks (Conv-BN fused
                                       for INT8, the ReLU6 a quantized module of its own).
``padding="tf_same"``                  TensorFlow's "SAME" padding, computed for ``image_size``:
                                       where it is asymmetric (stride 2 on an even size: one more
                                       row/column at the bottom/right) an ``nn.ZeroPad2d`` named
                                       ``pad`` precedes the convolution in its ``nn.Sequential``.
``anchor_generator="tf_ssd"``          the TF OD API ``ssd_anchor_generator``: scales
                                       ``min_ratio``..``max_ratio`` over the levels,
                                       ``aspect_ratios`` as listed (TF style, e.g. 1, 2, 0.5, 3,
                                       0.3333), plus the box of the interpolated scale
                                       (``interpolated_scale_aspect_ratio``, 0 for none) and 3 boxes
                                       on the lowest level (``reduce_boxes_in_lowest_layer``).
``score="sigmoid"``                    per-class sigmoid scores (background column dropped), and
                                       a sigmoid (binary cross-entropy) classification loss.
``resize="tf_legacy_bilinear"``        TF1 ``ResizeBilinear`` (``half_pixel_centers=False``).
``clip_boxes="after_nms"``             NMS on the decoded boxes, then clipping to the image and
                                       dropping empty boxes (TF OD API order).
=====================================  ===========================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.ao.quantization import DeQuantStub, QuantStub
from torchvision.models import mobilenetv3 as tv_mnv3
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.quantization.mobilenetv2 import (
    QuantizableInvertedResidual as QuantizableInvertedResidualV2,
)
from torchvision.models.quantization.mobilenetv2 import QuantizableMobileNetV2
from torchvision.models.quantization.mobilenetv3 import (
    QuantizableInvertedResidual as QuantizableInvertedResidualV3,
)
from torchvision.models.quantization.mobilenetv3 import QuantizableMobileNetV3
from torchvision.ops import Conv2dNormActivation, batched_nms, box_iou, clip_boxes_to_image

# Every default in one place (torchvision's ssdlite320 values unless noted).
from navya.models.tfcompat import (
    anchors_per_level,
    apply_tf_same_padding,
    tf_legacy_resize,
    tf_ssd_anchors,
)

DEFAULTS: dict = {
    "image_size": 320,
    "width_mult": 1.0,
    "extra_channels": (512, 256, 256, 128),
    "aspect_ratios": (2, 3),
    "min_ratio": 0.1,  # torchvision: 0.2; smaller first-level anchors (32 px) for small objects
    "max_ratio": 0.95,
    "score_thresh": 0.01,
    "nms_thresh": 0.45,
    "detections_per_img": 100,
    "topk_candidates": 1000,
    "neg_to_pos_ratio": 3,
    "iou_thresh": 0.5,
    "image_mean": 0.5,
    "image_std": 0.5,
    # for imported detectors (see the module docstring); the defaults are navya's own behaviour
    "activation": "relu",
    "padding": "symmetric",
    "anchor_generator": "torchvision",
    "interpolated_scale_aspect_ratio": 1.0,  # tf_ssd only
    "reduce_boxes_in_lowest_layer": True,  # tf_ssd only
    "score": "softmax",
    "resize": "bilinear",
    "clip_boxes": "before_nms",
    # "all_classes": the top-k over every (class, anchor) score; "per_class": the top-k of each
    # class (torchvision's SSD)
    "topk_scope": "all_classes",
}

#: The values each string option accepts, the default first.
CHOICES: dict[str, tuple[str, ...]] = {
    "activation": ("relu", "relu6"),
    "padding": ("symmetric", "tf_same"),
    "anchor_generator": ("torchvision", "tf_ssd"),
    "score": ("softmax", "sigmoid"),
    "resize": ("bilinear", "tf_legacy_bilinear"),
    "clip_boxes": ("before_nms", "after_nms"),
    "topk_scope": ("all_classes", "per_class"),
}

_BN = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _relu_everywhere(module: nn.Module) -> None:
    """Replace every ReLU6 by ReLU in place (fusable Conv-BN-ReLU for eager INT8)."""
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU6):
            setattr(module, name, nn.ReLU(inplace=True))
        else:
            _relu_everywhere(child)


class MobileNetFeatures(nn.Module):
    """The two MobileNet stages SSD-Lite reads: stride 16 (the expansion output of the first
    stride-32 block, as in the SSD-Lite paper) and stride 32 (the last backbone layer).

    Works for torchvision's MobileNetV2 (``block.conv``) and V3 (``block.block``) alike.
    """

    def __init__(self, features: nn.Sequential):
        super().__init__()
        c4 = [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)][-1]
        inner = features[c4].conv if hasattr(features[c4], "conv") else features[c4].block
        self.stage1 = nn.Sequential(*features[:c4], inner[0])
        self.stage2 = nn.Sequential(*inner[1:], *features[c4 + 1 :])
        #: layers of the C4 block (its expansion ends stage1, the others start stage2)
        self.c4_layers = len(inner)

    def forward(self, x: Tensor) -> list[Tensor]:
        c4 = self.stage1(x)
        return [c4, self.stage2(c4)]


def _extra_block(cin: int, cout: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    mid = cout // 2
    return nn.Sequential(
        Conv2dNormActivation(cin, mid, 1, norm_layer=_BN, activation_layer=act),
        Conv2dNormActivation(mid, mid, 3, stride=2, groups=mid, norm_layer=_BN,
                             activation_layer=act),
        Conv2dNormActivation(mid, cout, 1, norm_layer=_BN, activation_layer=act),
    )


def _predictor(cin: int, cout: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """SSD-Lite predictor: depthwise 3x3 Conv-BN-ReLU, then a 1x1 projection (with bias)."""
    return nn.Sequential(
        Conv2dNormActivation(cin, cin, 3, groups=cin, norm_layer=_BN, activation_layer=act),
        nn.Conv2d(cin, cout, 1),
    )


def _normal_init(module: nn.Module, std: float = 0.03) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SSDLiteCore(nn.Module):
    """The quantizable convolutional part of SSD-Lite.

    ``forward(x)`` takes the normalized batch ``[N, 3, S, S]`` and returns
    ``(bbox_regression [N, A, 4], cls_logits [N, A, num_classes])`` in float, where ``A`` is the
    total number of anchors over the six feature levels.
    """

    def __init__(self, backbone: MobileNetFeatures, backbone_channels: Sequence[int],
                 extra_channels: Sequence[int], num_anchors: int | Sequence[int],
                 num_classes: int, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.num_classes = num_classes
        self.num_anchors = num_anchors  # per cell: one number, or one per level
        self.quant = QuantStub()
        self.backbone = backbone
        chans = list(backbone_channels)
        extras = []
        for c in extra_channels:
            extras.append(_extra_block(chans[-1], c, act))
            chans.append(c)
        per_level = [num_anchors] * len(chans) if isinstance(num_anchors, int) else num_anchors
        if len(per_level) != len(chans):
            raise ValueError(f"{len(per_level)} anchor counts for {len(chans)} feature levels")
        self.extras = nn.ModuleList(extras)
        self.cls_heads = nn.ModuleList(_predictor(c, a * num_classes, act)
                                       for c, a in zip(chans, per_level, strict=True))
        self.reg_heads = nn.ModuleList(_predictor(c, a * 4, act)
                                       for c, a in zip(chans, per_level, strict=True))
        self.dequant = DeQuantStub()
        _normal_init(self.extras)
        _normal_init(self.cls_heads)
        _normal_init(self.reg_heads)

    def features(self, x: Tensor) -> list[Tensor]:
        feats = self.backbone(self.quant(x))
        for block in self.extras:
            feats.append(block(feats[-1]))
        return feats

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n = x.shape[0]
        regs, logits = [], []
        for f, cls_head, reg_head in zip(self.features(x), self.cls_heads, self.reg_heads, strict=True):
            # [N, A*K, H, W] -> [N, H*W*A, K], in float after the dequant stub
            r = self.dequant(reg_head(f))
            c = self.dequant(cls_head(f))
            regs.append(r.permute(0, 2, 3, 1).reshape(n, -1, 4))
            logits.append(c.permute(0, 2, 3, 1).reshape(n, -1, self.num_classes))
        return torch.cat(regs, 1), torch.cat(logits, 1)


def fusion_groups(module: nn.Module) -> list[list[str]]:
    """Exact module names of every Conv-BN(-ReLU) sequence in ``module``.

    Found structurally: inside every ``nn.Sequential`` (``Conv2dNormActivation`` included), a
    ``Conv2d`` directly followed by ``BatchNorm2d`` (and by ``ReLU`` if there is one).
    """
    groups = []
    for name, seq in module.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        mods = list(seq._modules.values())
        for i in range(len(mods) - 1):
            if isinstance(mods[i], nn.Conv2d) and isinstance(mods[i + 1], nn.BatchNorm2d):
                group = [names[i], names[i + 1]]
                if i + 2 < len(mods) and type(mods[i + 2]) is nn.ReLU:
                    group.append(names[i + 2])
                prefix = f"{name}." if name else ""
                groups.append([prefix + g for g in group])
    return groups


class SSDLite(nn.Module):
    """SSD-Lite detector: float pre/post-processing around a quantizable :class:`SSDLiteCore`.

    ``forward(images, targets=None)``: ``images`` is a list of float tensors ``[3, H, W]`` in
    [0, 1]. In training mode, with ``targets`` (dicts with ``boxes`` float ``[M, 4]`` in pixels
    and ``labels`` int64 ``[M]``, 1-based), returns ``{"bbox_regression", "classification"}``
    losses. In eval mode returns, per image, ``{"boxes" [K, 4] (pixels of that image),
    "scores" [K], "labels" [K] int64}``, as torchvision's detection models do.
    """

    #: the candidates' top-k (DEFAULTS["topk_scope"]); a class default, so that models
    #: pickled before the option existed (the artifact cache, workers) unpickle with it
    topk_scope = "all_classes"

    def __init__(self, core: SSDLiteCore, *, arch: str, config: dict):
        super().__init__()
        self.core = core
        self.arch = arch
        self.config = dict(config)
        cfg = {**DEFAULTS, **config}
        self.image_size = int(cfg["image_size"])
        self.num_classes = core.num_classes
        self.score_thresh = cfg["score_thresh"]
        self.nms_thresh = cfg["nms_thresh"]
        self.detections_per_img = cfg["detections_per_img"]
        self.topk_candidates = cfg["topk_candidates"]
        self.neg_to_pos_ratio = cfg["neg_to_pos_ratio"]
        self.image_mean = float(cfg["image_mean"])
        self.image_std = float(cfg["image_std"])
        self.score = cfg["score"]
        self.resize = cfg["resize"]
        self.clip_boxes = cfg["clip_boxes"]
        self.topk_scope = cfg["topk_scope"]
        self.box_coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.matcher = det_utils.SSDMatcher(cfg["iou_thresh"])
        self._channels_last = False  # a bool, not a torch.memory_format: pickles with any protocol
        self.register_buffer("anchors", self._make_anchors(cfg), persistent=False)

    def _make_anchors(self, cfg: dict) -> Tensor:
        s = self.image_size
        with torch.no_grad():
            was_training = self.core.training
            self.core.eval()
            shapes = [f.shape for f in self.core.features(torch.zeros(1, 3, s, s))]
            self.core.train(was_training)
        if cfg["anchor_generator"] == "tf_ssd":
            return tf_ssd_anchors([tuple(sh[-2:]) for sh in shapes], s, cfg)
        gen = DefaultBoxGenerator([list(cfg["aspect_ratios"])] * len(shapes),
                                  min_ratio=cfg["min_ratio"], max_ratio=cfg["max_ratio"])
        feats = [torch.zeros(sh) for sh in shapes]
        return gen(ImageList(torch.zeros(1, 3, s, s), [(s, s)]), feats)[0]

    @property
    def memory_format(self) -> torch.memory_format:
        """Memory format the input batch is converted to (``channels_last`` for NHWC kernels)."""
        return torch.channels_last if self._channels_last else torch.contiguous_format

    @memory_format.setter
    def memory_format(self, fmt: torch.memory_format) -> None:
        if fmt not in (torch.channels_last, torch.contiguous_format):
            raise ValueError(f"unsupported memory format {fmt}")
        self._channels_last = fmt == torch.channels_last

    # -- pieces, usable separately (the suite times the network alone too) ---------------------

    def preprocess(self, images: Sequence[Tensor]) -> Tensor:
        """Resize to ``image_size`` (bilinear) and normalize: ``[N, 3, S, S]``."""
        s = self.image_size
        batch = []
        for img in images:
            if img.dim() != 3 or img.shape[0] != 3:
                raise ValueError(f"expected images of shape [3, H, W], got {tuple(img.shape)}")
            if img.shape[-2:] != (s, s):
                if self.resize == "tf_legacy_bilinear":
                    img = tf_legacy_resize(img, s)
                else:
                    img = F.interpolate(img[None], size=(s, s), mode="bilinear",
                                        align_corners=False)[0]
            batch.append(img)
        x = (torch.stack(batch) - self.image_mean) / self.image_std
        return x.contiguous(memory_format=self.memory_format)

    def postprocess(self, bbox_regression: Tensor, cls_logits: Tensor,
                    sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Softmax, threshold, decode the candidates, NMS per class; boxes scaled back to each
        image's ``(h, w)``.

        Scores are computed class-major (``[N, K, A]``): a softmax over a short last dimension
        (the classes) is far slower than over the transposed layout, and only the candidate
        boxes above ``score_thresh`` are decoded and clipped (a few percent of the anchors on
        the reference model); the detections are the same up to the order of exactly tied
        scores (measured: docs/results/code_decisions/, "Post-processing").
        """
        s = self.image_size
        # [N, A, K] -> [N, K, A], softmax over the classes (or sigmoid), background dropped
        if self.score == "sigmoid":
            scores_all = torch.sigmoid(cls_logits.float().transpose(1, 2)[:, 1:].contiguous())
        else:
            scores_all = F.softmax(cls_logits.float().transpose(1, 2).contiguous(), dim=1)[:, 1:]
        num_anchors = scores_all.shape[2]
        out = []
        for reg, scores, (h, w) in zip(bbox_regression.float(), scores_all, sizes, strict=True):
            flat = scores.flatten()  # index = class * A + anchor
            keep = torch.nonzero(flat > self.score_thresh).squeeze(1)
            if self.topk_scope == "per_class":  # the top-k of each class (torchvision's SSD)
                label_of = torch.div(keep, num_anchors, rounding_mode="floor")
                parts = []
                for c in torch.unique(label_of):
                    own = keep[label_of == c]
                    if own.numel() > self.topk_candidates:
                        own = own[flat[own].topk(self.topk_candidates).indices]
                    parts.append(own)
                keep = torch.cat(parts) if parts else keep
            elif keep.numel() > self.topk_candidates:
                keep = keep[flat[keep].topk(self.topk_candidates).indices]
            anchor_idx = keep % num_anchors
            labels = torch.div(keep, num_anchors, rounding_mode="floor") + 1
            b = self.box_coder.decode_single(reg[anchor_idx], self.anchors[anchor_idx])
            sc = flat[keep]
            if self.clip_boxes == "after_nms":  # TF OD API: NMS, clip, drop empty boxes
                kept = batched_nms(b, sc, labels, self.nms_thresh)[: self.detections_per_img]
                b = clip_boxes_to_image(b[kept], (s, s))
                nonempty = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) > 0
                kept, b = kept[nonempty], b[nonempty]
            else:
                b = clip_boxes_to_image(b, (s, s))
                kept = batched_nms(b, sc, labels, self.nms_thresh)[: self.detections_per_img]
                b = b[kept]
            b = b * torch.tensor([w / s, h / s, w / s, h / s], dtype=b.dtype)
            out.append({"boxes": b, "scores": sc[kept], "labels": labels[kept]})
        return out

    def compute_loss(self, bbox_regression: Tensor, cls_logits: Tensor,
                     targets: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        """SSD loss: smooth-L1 on matched anchors + cross-entropy with 3:1 hard negative mining,
        both normalized by the number of matched anchors. Targets in ``image_size`` pixels."""
        n, a = cls_logits.shape[:2]
        cls_t = torch.zeros((n, a), dtype=torch.int64)
        reg_t = torch.zeros((n, a, 4), dtype=bbox_regression.dtype)
        for i, t in enumerate(targets):
            if t["boxes"].numel() == 0:
                continue
            matched = self.matcher(box_iou(t["boxes"], self.anchors))
            fg = matched >= 0
            cls_t[i, fg] = t["labels"][matched[fg]]
            reg_t[i, fg] = self.box_coder.encode_single(t["boxes"][matched[fg]],
                                                        self.anchors[fg]).to(reg_t.dtype)
        fg = cls_t > 0
        num_fg = max(1, int(fg.sum()))
        bbox_loss = F.smooth_l1_loss(bbox_regression[fg].float(), reg_t[fg].float(),
                                     reduction="sum")
        if self.score == "sigmoid":  # one-hot binary cross-entropy, summed over the classes
            onehot = F.one_hot(cls_t, cls_logits.shape[-1]).to(torch.float32)
            ce = F.binary_cross_entropy_with_logits(cls_logits.float(), onehot,
                                                    reduction="none").sum(-1)
        else:
            ce = F.cross_entropy(cls_logits.float().reshape(-1, cls_logits.shape[-1]),
                                 cls_t.reshape(-1), reduction="none").view(n, a)
        neg = ce.detach().clone()
        neg[fg] = -math.inf
        order = neg.sort(1, descending=True)[1].sort(1)[1]
        hard_neg = order < self.neg_to_pos_ratio * fg.sum(1, keepdim=True)
        return {
            "bbox_regression": bbox_loss / num_fg,
            "classification": (ce[fg].sum() + ce[hard_neg].sum()) / num_fg,
        }

    def forward(self, images: Sequence[Tensor], targets: Sequence[dict] | None = None):
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        x = self.preprocess(images)
        bbox_regression, cls_logits = self.core(x)
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            s = self.image_size
            scaled = []
            for t, (h, w) in zip(targets, sizes, strict=True):
                k = torch.tensor([s / w, s / h, s / w, s / h])
                scaled.append({"boxes": t["boxes"].float() * k, "labels": t["labels"]})
            return self.compute_loss(bbox_regression, cls_logits, scaled)
        return self.postprocess(bbox_regression, cls_logits, sizes)

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse every Conv-BN(-ReLU) of ``core`` in place, by exact module names
        (:func:`fusion_groups`). ``is_qat`` selects the QAT fusion (BN kept for training);
        default: the module's training mode."""
        from torch.ao.quantization import fuse_modules, fuse_modules_qat

        is_qat = self.training if is_qat is None else is_qat
        groups = fusion_groups(self.core)
        (fuse_modules_qat if is_qat else fuse_modules)(self.core, groups, inplace=True)


# -- builders --------------------------------------------------------------------------------


def _build(arch: str, features: nn.Sequential, num_classes: int, config: dict) -> SSDLite:
    cfg = {**DEFAULTS, **config}
    width = float(cfg["width_mult"])
    backbone = MobileNetFeatures(features)
    with torch.no_grad():
        s = int(cfg["image_size"])
        chans = [f.shape[1] for f in backbone.eval()(torch.zeros(1, 3, s, s))]
    backbone.train()
    extras = [_make_divisible(c * width, 8) for c in cfg["extra_channels"]]
    per_level = anchors_per_level(cfg, len(chans) + len(extras))
    num_anchors = per_level[0] if len(set(per_level)) == 1 else tuple(per_level)
    act = nn.ReLU6 if cfg["activation"] == "relu6" else nn.ReLU
    core = SSDLiteCore(backbone, chans, extras, num_anchors, num_classes, act)
    if cfg["padding"] == "tf_same":
        apply_tf_same_padding(core, s)
    return SSDLite(core, arch=arch, config=config)


def _check(num_classes: int, config: dict) -> None:
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown model option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    if config.get("image_size", 320) < 64:
        raise ValueError("image_size must be >= 64 pixels")
    for key, allowed in CHOICES.items():
        if key in config and config[key] not in allowed:
            raise ValueError(f"model option {key}={config[key]!r}: expected one of {allowed}")


def ssdlite_mobilenet_v2(num_classes: int, width_mult: float = 1.0, image_size: int = 320,
                         **config) -> SSDLite:
    """SSD-Lite on MobileNetV2 (ReLU activations, or ReLU6 with ``activation="relu6"``;
    quantizable inverted residuals)."""
    config = {"width_mult": width_mult, "image_size": image_size, **config}
    _check(num_classes, config)
    mnv2 = QuantizableMobileNetV2(width_mult=width_mult, block=QuantizableInvertedResidualV2,
                                  norm_layer=_BN)
    if config.get("activation", DEFAULTS["activation"]) == "relu":
        _relu_everywhere(mnv2)
    return _build("ssdlite_mobilenet_v2", mnv2.features, num_classes, config)


def ssdlite_mobilenet_v3_large(num_classes: int, width_mult: float = 1.0, image_size: int = 320,
                               **config) -> SSDLite:
    """SSD-Lite on MobileNetV3-Large (reduced tail, as torchvision's ssdlite320 without
    pretrained backbone), quantizable (FloatFunctional adds, quantizable squeeze-excitation).
    ``reduced_tail=False``: the full-width last stage (torchvision's ssdlite320 built on an
    ImageNet backbone)."""
    config = {"width_mult": width_mult, "image_size": image_size, **config}
    reduced_tail = config.get("reduced_tail", True)
    if not isinstance(reduced_tail, bool):
        raise ValueError(f"reduced_tail must be True or False, got {reduced_tail!r}")
    if reduced_tail:
        config.pop("reduced_tail", None)  # the default: checkpoints stay as they were
    _check(num_classes, {k: v for k, v in config.items() if k != "reduced_tail"})
    setting, last = tv_mnv3._mobilenet_v3_conf("mobilenet_v3_large", width_mult=width_mult,
                                               reduced_tail=reduced_tail)
    mnv3 = QuantizableMobileNetV3(setting, last, block=QuantizableInvertedResidualV3,
                                  norm_layer=_BN)
    return _build("ssdlite_mobilenet_v3_large", mnv3.features, num_classes, config)


MODELS = {
    "ssdlite_mobilenet_v2": ssdlite_mobilenet_v2,
    "ssdlite_mobilenet_v3_large": ssdlite_mobilenet_v3_large,
}


def build_model(arch: str, num_classes: int, **config) -> SSDLite:
    """Build a registered detector by name (see :data:`MODELS`)."""
    if arch not in MODELS:
        raise KeyError(f"unknown model {arch!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[arch](num_classes, **config)
