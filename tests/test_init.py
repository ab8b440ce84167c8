"""Starting from weights trained elsewhere: a checkpoint of other classes (heads afresh), an
ImageNet backbone in torchvision's layout, a frozen backbone; the loaded/skipped report is
exact and nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from navya.models import build_model, load_checkpoint, save_checkpoint
from navya.models.init import (
    InitError,
    load_matching,
    resolve_backbone_weights,
    torchvision_backbone_state,
)


def _randomize(module):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g))
    return module


def test_a_torchvision_v2_backbone_loads_whole_into_the_detector(tmp_path):
    tv = _randomize(torchvision.models.mobilenet_v2(width_mult=0.25))
    path = tmp_path / "mnv2_imagenet.pth"
    torch.save(tv.state_dict(), path)
    state, origin = resolve_backbone_weights(path)
    assert origin["file"] == str(path) and len(origin["sha256"]) == 64
    model = build_model("ssdlite_mobilenet_v2", 4, width_mult=0.25, image_size=96)
    report = load_matching(model, torchvision_backbone_state(model, state), str(path),
                           scope="core.backbone.")
    backbone = {k for k in model.state_dict() if k.startswith("core.backbone.")}
    assert set(report.loaded) == backbone and report.skipped == {}
    assert report.fraction == 1.0
    assert sorted(report.unused) == []  # the classifier was dropped by the renaming
    bb = model.core.backbone
    c4 = [i for i, b in enumerate(tv.features) if getattr(b, "_is_cn", False)][-1]
    pairs = [(bb.stage1[0][0].weight, tv.features[0][0].weight),
             (bb.stage1[c4][0].weight, tv.features[c4].conv[0][0].weight),  # the cut block
             (bb.stage2[0][0].weight, tv.features[c4].conv[1][0].weight),
             (bb.stage2[-1][1].running_var, tv.features[-1][1].running_var)]
    for ours, theirs in pairs:
        assert torch.equal(ours, theirs)


def test_v3_reduced_tail_blocks_are_reported_exactly_as_not_fitting(tmp_path):
    tv = _randomize(torchvision.models.mobilenet_v3_large())
    model = build_model("ssdlite_mobilenet_v3_large", 4, image_size=96)
    mapped = torchvision_backbone_state(model, tv.state_dict())
    report = load_matching(model, mapped, "tv-v3", scope="core.backbone.")
    own = model.state_dict()
    expected = {k for k, v in mapped.items() if v.shape != own[k].shape}
    assert expected and set(report.skipped) == expected  # the reduced tail: half the channels
    assert all(why.startswith("shape:") for why in report.skipped.values())
    assert all(k.startswith("core.backbone.stage2.") for k in expected)
    assert 0.3 < report.fraction < 1.0
    assert "not loaded (shape)" in report.summary()


def _three_class_tree(tmp_path, n=8, size=96):
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    classes = ("cat", "dog", "cow")
    (voc / "classes.txt").write_text("\n".join(classes) + "\n")
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{i}.png")
        c = classes[i % 3]
        (voc / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.png</filename><size><width>{size}</width><height>{size}"
            f"</height></size><object><name>{c}</name><bndbox><xmin>10</xmin><ymin>10</ymin>"
            f"<xmax>60</xmax><ymax>70</ymax></bndbox></object></annotation>")
    ids = "\n".join(str(i) for i in range(n)) + "\n"
    for split in ("train", "val"):
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text(ids)
    return tmp_path


def test_init_from_a_checkpoint_of_other_classes_starts_fresh_heads(tmp_path, capsys):
    from navya.cli import main

    torch.manual_seed(0)
    source = build_model("ssdlite_mobilenet_v2", 11, width_mult=0.25, image_size=96).eval()
    src = tmp_path / "ten_classes.pt"
    save_checkpoint(src, source, {"class_names": [f"c{i}" for i in range(10)]})
    data = _three_class_tree(tmp_path / "data")
    out = tmp_path / "three.pt"
    assert main(["train", "--data", str(data), "--out", str(out), "--init", str(src),
                 "--max-iters", "2", "--batch-size", "4", "--val-split", "",
                 "--freeze-backbone", "2", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "the last layer of each classification head starts afresh" in printed
    model, ckpt = load_checkpoint(out)
    init = ckpt.meta["init"]
    import re

    heads = {k for k in source.state_dict()  # the 1x1 projections: 11 -> 4 classes
             if re.fullmatch(r"core\.cls_heads\.\d+\.1\.(weight|bias)", k)}
    assert len(heads) == 12
    assert set(init["skipped"]) == heads
    assert init["loaded"] == len(source.state_dict()) - len(heads)
    assert init["checkpoint"] == str(src) and init["freeze_backbone_iters"] == 2
    # two frozen iterations: the backbone is the source's, the heads moved
    for k, v in source.state_dict().items():
        if k.startswith("core.backbone.") and v.is_floating_point() and "running" not in k:
            assert torch.equal(model.state_dict()[k], v), k
    assert ckpt.class_names == ("cat", "dog", "cow")


def test_a_start_of_as_many_other_classes_never_hands_over_its_class_scores(tmp_path):
    """Same number of classes, other names: every shape fits, yet the last layer of each
    classification head starts afresh (it scored the source's classes), and the report says
    why; a start of the same classes keeps them."""
    from navya.models.init import class_output_names

    torch.manual_seed(0)
    source = _randomize(build_model("ssdlite_mobilenet_v2", 4, width_mult=0.25, image_size=96))
    target = build_model("ssdlite_mobilenet_v2", 4, width_mult=0.25, image_size=96)
    fresh_before = {k: v.clone() for k, v in target.state_dict().items()}
    names = class_output_names(target)
    assert names == [f"core.cls_heads.{i}.1.{p}" for i in range(6) for p in ("weight", "bias")]
    report = load_matching(target, source.state_dict(), "src.pt",
                           exclude=dict.fromkeys(names, "class scores: a, b, c in the source"))
    assert set(report.skipped) == set(names)
    assert set(report.skipped.values()) == {"class scores: a, b, c in the source"}
    assert "not loaded (class scores)" in report.summary()
    for k, v in target.state_dict().items():
        want = fresh_before[k] if k in names else source.state_dict()[k]
        assert torch.equal(v, want), k
    same = build_model("ssdlite_mobilenet_v2", 4, width_mult=0.25, image_size=96)
    assert not load_matching(same, source.state_dict(), "src.pt").skipped


def test_init_tfod_person_starts_from_the_shipped_real_photograph_detector(tmp_path):
    """``--init tfod-person`` imports the committed TF OD API graph (offline) and trains from
    it: its input size, TF semantics and every tensor but the class scores; the checkpoint
    records the name, the graph file and its sha256."""
    from navya.cli import main
    from navya.finetune import load_start
    from navya.models import CheckpointError
    from navya.models.checkpoint import sha256_file

    with pytest.raises(CheckpointError, match="tfod-persn: checkpoint file not found, and not "
                                              "a start navya ships \\(tfod-person\\)"):
        load_start("tfod-persn")
    source, src_ckpt = load_start("tfod-person")
    assert src_ckpt.class_names == ("person",) and source.image_size == 300
    data = _three_class_tree(tmp_path / "data", n=4)
    out = tmp_path / "cards.pt"
    # lr 1e-12: the loaded weights stay (to 1e-9) as they were loaded, so they can be compared
    assert main(["train", "--data", str(data), "--out", str(out), "--init", "tfod-person",
                 "--max-iters", "1", "--batch-size", "2", "--lr", "1e-12", "--val-split", "",
                 "--threads", "1"]) == 0
    model, ckpt = load_checkpoint(out)
    init = ckpt.meta["init"]
    assert init["checkpoint"] == "tfod-person" and init["classes"] == ["person"]
    assert init["sha256"] == sha256_file(src_ckpt.path) == (
        "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a")
    assert model.image_size == 300 and ckpt.meta["options"]["image_size"] == 300
    assert ckpt.model_config == src_ckpt.model_config  # TF padding, ReLU6, TF anchors, sigmoid
    fresh = {k for k in init["skipped"]}
    assert fresh == {f"core.cls_heads.{i}.1.{p}" for i in range(6) for p in ("weight", "bias")}
    for k, v in source.state_dict().items():
        if k not in fresh and v.is_floating_point() and "running" not in k:
            assert torch.allclose(model.state_dict()[k], v, rtol=0, atol=1e-9), k


def test_weights_that_do_not_fit_are_refused_clearly(tmp_path):
    v3 = build_model("ssdlite_mobilenet_v3_large", 4, width_mult=0.25, image_size=96)
    v2 = build_model("ssdlite_mobilenet_v2", 4, width_mult=0.25, image_size=96)
    with pytest.raises(InitError, match=r"v3\.pt: only .* parameters fit this "
                                        r"ssdlite_mobilenet_v2 .*another architecture"):
        load_matching(v2, v3.state_dict(), "v3.pt")
    with pytest.raises(InitError, match="no torchvision backbone tensor"):
        torchvision_backbone_state(v2, {"conv.weight": torch.zeros(1)})
    with pytest.raises(InitError, match="neither a file nor a torchvision weights name"):
        resolve_backbone_weights("MobileNet_V9_Weights.NOPE")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(InitError, match=r"bad\.pth: not a readable state dict"):
        resolve_backbone_weights(bad)
    with pytest.raises(InitError, match=r"missing\.pth: backbone weights file not found"):
        resolve_backbone_weights(tmp_path / "missing.pth")
