"""torchvision's ssdlite320_mobilenet_v3_large state dict imports into navya's SSD-Lite and gives
torchvision's own outputs: the same network outputs and the same detections, on both backbone
tails, from a file or a references/detection checkpoint; layouts that do not fit are refused by
name."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from navya.cli import main as navya_main
from navya.models import load_checkpoint
from navya.models.tvssd import TorchvisionImportError, import_torchvision_ssdlite

pytestmark = pytest.mark.usefixtures("one_thread_per_module")
CLASSES = ["person", "car", "dog"]


def _torchvision(num_classes: int = 4, *, imagenet_tail: bool = False, seed: int = 0):
    """A torchvision ssdlite320 with random weights and batch-norm statistics (no download).
    ``imagenet_tail``: the full last stage torchvision builds on an ImageNet backbone."""
    torch.manual_seed(seed)
    if imagenet_tail:  # what weights_backbone=IMAGENET1K_V1 builds, without the download
        import torchvision.models.detection.ssdlite as tv_ssdlite

        real = tv_ssdlite.mobilenet_v3_large

        def full_tail(**kw):
            return real(**{**kw, "reduced_tail": False})

        tv_ssdlite.mobilenet_v3_large = full_tail
        try:
            model = ssdlite320_mobilenet_v3_large(num_classes=num_classes, weights_backbone=None)
        finally:
            tv_ssdlite.mobilenet_v3_large = real
    else:
        model = ssdlite320_mobilenet_v3_large(num_classes=num_classes, weights_backbone=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        # a head that scores some boxes above the 0.001 threshold of every class
        for conv in model.head.classification_head.module_list:
            conv[1].bias.normal_(0.0, 1.0)
    return model.eval()


def _images(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 240, 320, generator=g), torch.rand(3, 320, 320, generator=g),
            torch.rand(3, 375, 500, generator=g)]


@pytest.mark.parametrize("imagenet_tail", [False, True], ids=["reduced-tail", "full-tail"])
def test_same_network_outputs_and_detections_as_torchvision(imagenet_tail):
    tv = _torchvision(imagenet_tail=imagenet_tail)
    ours = import_torchvision_ssdlite(tv.state_dict(), CLASSES)
    assert ours.import_meta["source"]["reduced_tail"] is (not imagenet_tail)
    x = torch.rand(2, 3, 320, 320) * 2 - 1
    with torch.no_grad():
        feats = tv.backbone(x)
        head = tv.head(list(feats.values()))
        reg, logits = ours.core(x)
    assert torch.allclose(reg, head["bbox_regression"], atol=1e-5)
    assert torch.allclose(logits, head["cls_logits"], atol=1e-5)
    images = _images()
    with torch.no_grad():
        batch, _ = tv.transform(images)
        anchors = tv.anchor_generator(batch, list(feats.values()))[0]
    assert torch.allclose(ours.anchors, anchors, atol=1e-5)
    # the post-processing on tie-free head outputs (a random network's saturated features tie
    # many scores exactly, and tied detections may come in any order)
    g = torch.Generator().manual_seed(2)
    n_anchors = anchors.shape[0]
    head = {"bbox_regression": torch.randn(3, n_anchors, 4, generator=g) * 0.5,
            "cls_logits": torch.randn(3, n_anchors, 4, generator=g) * 3.0}
    sizes = [tuple(im.shape[-2:]) for im in images]
    with torch.no_grad():
        want = tv.postprocess_detections(head, [anchors] * 3, batch.image_sizes)
        want = tv.transform.postprocess(want, batch.image_sizes, sizes)
        got = ours.postprocess(head["bbox_regression"], head["cls_logits"], sizes)
    for w, o in zip(want, got, strict=True):
        assert len(w["boxes"]) == 300  # torchvision's cap: the per-class top-k matters
        assert torch.equal(o["labels"], w["labels"])
        assert torch.allclose(o["scores"], w["scores"], atol=1e-6)
        assert torch.allclose(o["boxes"], w["boxes"], atol=1e-3)
    # and end to end, up to the order of tied detections: as many, with the same scores
    with torch.no_grad():
        want, got = tv(images), ours(images)
    for w, o in zip(want, got, strict=True):
        assert len(o["scores"]) == len(w["scores"]) > 10
        assert torch.allclose(o["scores"][:50], w["scores"][:50], atol=1e-5)


def test_cli_imports_a_references_checkpoint_and_the_result_loads(tmp_path, capsys):
    tv = _torchvision()
    src = tmp_path / "model_25.pth"
    torch.save({"model": tv.state_dict(), "epoch": 25}, src)  # references/detection's format
    out = tmp_path / "navya.pt"
    rc = navya_main(["import", "torchvision", str(src), "--out", str(out),
                     "--classes", ",".join(CLASSES)])
    assert rc == 0, capsys.readouterr()
    model, ckpt = load_checkpoint(out)
    assert ckpt.class_names == tuple(CLASSES)
    assert ckpt.meta["source"]["file"] == "model_25.pth"
    assert len(ckpt.meta["source"]["sha256"]) == 64
    x = torch.rand(1, 3, 320, 320) * 2 - 1
    with torch.no_grad():
        head = tv.head(list(tv.backbone(x).values()))
        reg, logits = model.core(x)
    assert torch.allclose(logits, head["cls_logits"], atol=1e-5)
    assert torch.allclose(reg, head["bbox_regression"], atol=1e-5)


def test_wrong_layouts_are_refused_with_the_names(tmp_path):
    sd = _torchvision().state_dict()
    with pytest.raises(TorchvisionImportError, match=r"4 class name\(s\) for a model of 3 class"):
        import_torchvision_ssdlite(sd, ["a", "b"] + CLASSES[:1] + ["d"])
    bad = dict(sd)
    bad["backbone.extra.9.weight"] = torch.zeros(1)
    with pytest.raises(TorchvisionImportError, match=r"no place for: backbone\.extra\.9\.weight"):
        import_torchvision_ssdlite(bad, CLASSES)
    short = {k: v for k, v in sd.items() if not k.startswith("backbone.extra.3.")}
    with pytest.raises(TorchvisionImportError, match=r"does not hold: core\.extras\.3\."):
        import_torchvision_ssdlite(short, CLASSES)
    with pytest.raises(TorchvisionImportError, match="not torchvision's ssdlite320"):
        import_torchvision_ssdlite({"fc.weight": torch.zeros(2, 2)}, CLASSES)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(TorchvisionImportError, match="junk.pt: not a readable torch file"):
        import_torchvision_ssdlite(junk, CLASSES)
