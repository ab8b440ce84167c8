"""Reduced JPEG decoding: time and mAP on 4000 px photos (synthetic val images upscaled 12.5x).

Usage: python docs/results/reduced_decode/decode_bench.py [N_IMAGES] [SYNTH_DIR] [OUT_DIR]"""
import io, time, statistics, sys
from pathlib import Path
import numpy as np, torch
from PIL import Image
from navya.data.voc import VOCDataset, write_annotation
from navya.models import load_checkpoint
from navya.metrics.evaluate import evaluate_model

torch.set_num_threads(1)
src = VOCDataset(sys.argv[2] if len(sys.argv) > 2 else "data/synth", "val", limit=int(sys.argv[1]) if len(sys.argv) > 1 else 20)
root = Path(sys.argv[3] if len(sys.argv) > 3 else "/tmp/navya-big-jpeg"); voc = root / "VOCdevkit" / "VOC2007"
for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
    (voc / d).mkdir(parents=True, exist_ok=True)
(voc / "classes.txt").write_text("\n".join(src.class_names) + "\n")
S = 4000
ids = []
for i in range(len(src)):
    img, t = src[i]
    arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    big = Image.fromarray(arr).resize((S, S), Image.Resampling.BICUBIC)
    iid = t["image_id"]; ids.append(iid)
    big.save(voc / "JPEGImages" / f"{iid}.jpg", quality=92)
    ann = src.annotations[i]
    k = S / 320
    xml = ['<annotation><filename>%s.jpg</filename><size><width>%d</width><height>%d</height><depth>3</depth></size>' % (iid, S, S)]
    for b, l, d in zip(ann.boxes, ann.labels, ann.difficult):
        x1, y1, x2, y2 = (b * k).tolist()
        xml.append(f"<object><name>{src.class_names[l-1]}</name><difficult>{int(d)}</difficult><bndbox><xmin>{round(x1)+1}</xmin><ymin>{round(y1)+1}</ymin><xmax>{round(x2)}</xmax><ymax>{round(y2)}</ymax></bndbox></object>")
    xml.append("</annotation>")
    (voc / "Annotations" / f"{iid}.xml").write_text("".join(xml))
(voc / "ImageSets/Main/val.txt").write_text("\n".join(ids) + "\n")
print(f"{len(ids)} images {S}x{S}, JPEG q92, {sum(p.stat().st_size for p in (voc/'JPEGImages').iterdir())/len(ids)/1e6:.2f} MB each")
model, _ = load_checkpoint("navya/checkpoints/ssdlite_mobilenet_v2.pt")
for decode in (None, 320):
    ds = VOCDataset(root, "val", decode_size=decode)
    ts = []
    for rep in range(3):
        t0 = time.perf_counter()
        for i in range(len(ds)):
            ds.load_image(i)
        ts.append((time.perf_counter() - t0) / len(ds))
    t0 = time.perf_counter(); ev = evaluate_model(model, ds); te = time.perf_counter() - t0
    print(f"decode_size={decode}: decoded {ds.decoded_size(0)}; load_image median {1000*statistics.median(ts):.1f} ms/image "
          f"(runs {', '.join(f'{1000*t:.1f}' for t in ts)}); evaluate {te:.1f} s for {len(ds)} images "
          f"({1000*te/len(ds):.0f} ms/image); mAP {ev.map('all-point'):.4f}")
