"""Tests for navya.models.ssdlite: the SSD-Lite detectors, on tiny widths (0.25, 128 px)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.ao.nn.intrinsic import ConvBn2d, ConvBnReLU2d, _FusedModule

from navya.models import MODELS, SSDLite, build_model, fusion_groups
from navya.models.ssdlite import DEFAULTS

ARCHS = ("ssdlite_mobilenet_v2", "ssdlite_mobilenet_v3_large")
NUM_CLASSES = 4  # background + 3
SIZE = 128
TINY = {"width_mult": 0.25, "image_size": SIZE}


def tiny(arch: str, num_classes: int = NUM_CLASSES) -> SSDLite:
    torch.manual_seed(0)
    return build_model(arch, num_classes, **TINY)


@pytest.fixture(scope="module", params=ARCHS)
def model(request) -> SSDLite:
    """One tiny model per architecture, shared by the module: tests that change it deep-copy."""
    return tiny(request.param)


def _images(*sizes: tuple[int, int]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, h, w, generator=g) for h, w in sizes]


def _randomize_bn(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine terms, so that fusion has something to fold."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))


# -- registry and construction errors ----------------------------------------------------------


def test_both_architectures_registered():
    assert set(ARCHS) <= set(MODELS)


@pytest.mark.parametrize("arch", ARCHS)
def test_builder_records_arch_and_config(arch):
    m = MODELS[arch](NUM_CLASSES, width_mult=0.25, image_size=SIZE)
    assert isinstance(m, SSDLite)
    assert m.arch == arch
    assert m.num_classes == NUM_CLASSES
    assert m.image_size == SIZE
    assert m.config == TINY


def test_unknown_architecture():
    with pytest.raises(KeyError, match="unknown model 'resnet'.*ssdlite_mobilenet_v2"):
        build_model("resnet", NUM_CLASSES)


@pytest.mark.parametrize("num_classes", [0, 1, -3])
def test_num_classes_counts_the_background(num_classes):
    with pytest.raises(ValueError, match="num_classes.*>= 2"):
        build_model("ssdlite_mobilenet_v2", num_classes, **TINY)


def test_unknown_option():
    with pytest.raises(ValueError, match=r"unknown model option\(s\) \['nms_treshold'\]"):
        build_model("ssdlite_mobilenet_v2", NUM_CLASSES, nms_treshold=0.5, **TINY)


def test_image_size_too_small():
    with pytest.raises(ValueError, match="image_size"):
        build_model("ssdlite_mobilenet_v2", NUM_CLASSES, width_mult=0.25, image_size=32)


# -- anchors -------------------------------------------------------------------------------


def test_anchor_count_is_six_per_cell_over_six_levels(model):
    with torch.no_grad():
        feats = copy.deepcopy(model.core).eval().features(torch.zeros(1, 3, SIZE, SIZE))
    assert len(feats) == 6
    per_cell = 2 + 2 * len(DEFAULTS["aspect_ratios"])
    assert per_cell == 6
    expected = sum(f.shape[-2] * f.shape[-1] * per_cell for f in feats)
    assert model.anchors.shape == (expected, 4)
    # 128 px: strides 16, 32, 64, 128, 256, 512 -> 8x8, 4x4, 2x2 then 1x1 (x3)
    assert expected == (64 + 16 + 4 + 1 + 1 + 1) * 6
    # the core predicts one box and one score vector per anchor
    with torch.no_grad():
        reg, logits = copy.deepcopy(model.core).eval()(torch.zeros(2, 3, SIZE, SIZE))
    assert reg.shape == (2, expected, 4)
    assert logits.shape == (2, expected, NUM_CLASSES)


# -- train mode ------------------------------------------------------------------------------


def test_train_mode_returns_two_finite_scalar_losses_and_backward_works(model):
    m = copy.deepcopy(model).train()
    images = _images((SIZE, SIZE), (96, 160))
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[0.0, 0.0, 160.0, 96.0], [30.0, 20.0, 50.0, 44.0]]),
         "labels": torch.tensor([3, 2])},
    ]
    losses = m(images, targets)
    assert set(losses) == {"bbox_regression", "classification"}
    for name, value in losses.items():
        assert value.dim() == 0, name
        assert torch.isfinite(value), name
        assert value > 0, name
    sum(losses.values()).backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_train_mode_image_without_objects(model):
    m = copy.deepcopy(model).train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = m(_images((SIZE, SIZE), (SIZE, SIZE)), [empty, empty])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["bbox_regression"] == 0


def test_train_mode_needs_targets(model):
    m = copy.deepcopy(model).train()
    with pytest.raises(ValueError, match="targets"):
        m(_images((SIZE, SIZE), (SIZE, SIZE)))


# -- eval mode -----------------------------------------------------------------------------


def test_eval_mode_returns_torchvision_detection_format(model):
    m = copy.deepcopy(model).eval()
    sizes = [(SIZE, SIZE), (96, 200), (150, 70)]
    with torch.no_grad():
        out = m(_images(*sizes))
    assert isinstance(out, list) and len(out) == len(sizes)
    for det, (h, w) in zip(out, sizes, strict=True):
        assert set(det) == {"boxes", "scores", "labels"}
        boxes, scores, labels = det["boxes"], det["scores"], det["labels"]
        k = len(boxes)
        assert 0 < k <= DEFAULTS["detections_per_img"]  # untrained: near-uniform scores
        assert boxes.dtype == torch.float32 and boxes.shape == (k, 4)
        assert scores.dtype == torch.float32 and scores.shape == (k,)
        assert labels.dtype == torch.int64 and labels.shape == (k,)
        assert ((labels >= 1) & (labels <= NUM_CLASSES - 1)).all()
        assert ((scores > DEFAULTS["score_thresh"]) & (scores <= 1)).all()
        assert (scores[:-1] >= scores[1:]).all()  # sorted, best first
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w + 1e-4).all() and (boxes[:, 3] <= h + 1e-4).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()


def test_eval_boxes_are_in_input_image_pixels_for_a_non_square_image(model):
    m = copy.deepcopy(model).eval()
    h, w = 80, 224  # resized to 128 x 128 inside
    (img,) = _images((h, w))
    with torch.no_grad():
        (det,) = m([img])
        reg, logits = m.core(m.preprocess([img]))
        (square,) = m.postprocess(reg, logits, [(SIZE, SIZE)])
    scale = torch.tensor([w / SIZE, h / SIZE, w / SIZE, h / SIZE])
    torch.testing.assert_close(det["boxes"], square["boxes"] * scale)
    torch.testing.assert_close(det["scores"], square["scores"])
    assert torch.equal(det["labels"], square["labels"])
    # boxes span the wide side beyond the network's 128 px, and stay inside the short side
    assert det["boxes"][:, 2].max() > SIZE
    assert det["boxes"][:, 3].max() <= h + 1e-4


def test_eval_is_deterministic_and_batch_independent(model):
    m = copy.deepcopy(model).eval()
    a, b = _images((SIZE, SIZE), (100, 140))
    with torch.no_grad():
        both = m([a, b])
        alone = m([b])
    for k in ("boxes", "scores", "labels"):
        torch.testing.assert_close(both[1][k], alone[0][k], atol=1e-5, rtol=1e-5)


def test_rejects_images_that_are_not_rgb_chw(model):
    m = copy.deepcopy(model).eval()
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        m([torch.rand(1, SIZE, SIZE)])


# -- fusion --------------------------------------------------------------------------------


def _conv_bn_pairs(module: nn.Module) -> set[str]:
    """Names of every Conv2d directly followed by a BatchNorm2d among its parent's children,
    found independently of :func:`fusion_groups` (children in registration order)."""
    pairs = set()
    for parent_name, parent in module.named_modules():
        children = list(parent.named_children())
        for (name, child), (_, nxt) in zip(children, children[1:], strict=False):
            if isinstance(child, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
                pairs.add(f"{parent_name}.{name}" if parent_name else name)
    return pairs


def test_fusion_groups_name_existing_modules_and_cover_every_conv_bn(model):
    modules = dict(model.core.named_modules())
    groups = fusion_groups(model.core)
    assert groups
    for group in groups:
        assert len(group) in (2, 3)
        assert all(name in modules for name in group), group
        assert isinstance(modules[group[0]], nn.Conv2d)
        assert isinstance(modules[group[1]], nn.BatchNorm2d)
        if len(group) == 3:
            assert type(modules[group[2]]) is nn.ReLU
    convs = [g[0] for g in groups]
    assert len(convs) == len(set(convs))  # no conv fused twice
    assert set(convs) == _conv_bn_pairs(model.core)
    # every BatchNorm in the network sits behind a conv, so all of them are covered
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.core.modules())
    assert len(groups) == n_bn


def test_fuse_model_leaves_eval_outputs_equal(model):
    reference = copy.deepcopy(model).eval()
    _randomize_bn(reference.core)
    fused = copy.deepcopy(reference)
    fused.fuse_model(is_qat=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.core.modules())
    if model.arch == "ssdlite_mobilenet_v2":
        # ReLU everywhere in V2: every activation fused into its conv (ConvReLU2d holds it)
        for parent in fused.core.modules():
            if not isinstance(parent, _FusedModule):
                assert not any(type(c) is nn.ReLU for c in parent.children()), parent
    x = reference.preprocess(_images((SIZE, SIZE), (SIZE, SIZE)))
    with torch.no_grad():
        ref_reg, ref_logits = reference.core(x)
        reg, logits = fused.core(x)
    assert ref_logits.abs().max() > 0.1  # the comparison is not between near-zero tensors
    torch.testing.assert_close(reg, ref_reg, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)


def test_fuse_model_for_qat_keeps_batch_norm_trainable(model):
    m = copy.deepcopy(model).train()
    m.fuse_model(is_qat=True)
    fused = [mod for mod in m.core.modules() if isinstance(mod, ConvBn2d | ConvBnReLU2d)]
    assert len(fused) == len(fusion_groups(model.core))
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 70.0, 80.0]]), "labels": torch.tensor([2])}] * 2
    losses = m(_images((SIZE, SIZE), (SIZE, SIZE)), targets)
    assert all(torch.isfinite(v) for v in losses.values())


def _reference_postprocess(m: SSDLite, reg: torch.Tensor, logits: torch.Tensor):
    """The plain SSD post-processing, written as directly as possible (decode every anchor,
    per class: threshold, top-k, NMS; merge by score): what SSDLite.postprocess must equal."""
    from torchvision.ops import clip_boxes_to_image, nms

    s = m.image_size
    boxes = clip_boxes_to_image(m.box_coder.decode_single(reg, m.anchors), (s, s))
    scores = torch.softmax(logits, dim=-1)
    found = []
    for c in range(1, logits.shape[-1]):
        sc = scores[:, c]
        idx = torch.nonzero(sc > m.score_thresh).squeeze(1)
        for i in nms(boxes[idx], sc[idx], m.nms_thresh):
            found.append((float(sc[idx[i]]), c, boxes[idx[i]]))
    found.sort(key=lambda f: -f[0])
    return found[: m.detections_per_img]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_postprocess_equals_the_plain_per_class_reference(model, seed):
    """The fast post-processing (class-major softmax, only candidates decoded) returns the same
    detections as the textbook one, on random logits spread enough that NMS has work to do."""
    m = copy.deepcopy(model).eval()
    g = torch.Generator().manual_seed(seed)
    a = m.anchors.shape[0]
    reg = torch.randn(a, 4, generator=g)
    logits = torch.randn(a, NUM_CLASSES, generator=g) * 3
    m.topk_candidates = a * NUM_CLASSES  # no top-k cut: the reference has none
    (det,) = m.postprocess(reg[None], logits[None], [(SIZE, SIZE)])
    ref = _reference_postprocess(m, reg, logits)
    assert 5 < len(ref) and det["scores"].numel() == len(ref)
    torch.testing.assert_close(det["scores"], torch.tensor([f[0] for f in ref]))
    assert det["labels"].tolist() == [f[1] for f in ref]
    torch.testing.assert_close(det["boxes"], torch.stack([f[2] for f in ref]))
