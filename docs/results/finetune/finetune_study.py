"""Fine-tuning the shipped checkpoint on new classes against training from scratch.

A 3-class subset of the embedded synthetic set (square, bar, dot: objects of the other classes
removed from the annotations; images without any of the three left out), 600 train and 200 val
images. Each arm trains the same number of iterations with the same recipe through `navya
train`, then scores val mAP@0.5. Usage (repository root):

    python docs/results/finetune/finetune_study.py [SYNTH_DIR] [OUT_DIR] [ITERS]
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from navya.data.voc import Annotation, VOCDataset, write_annotation

SYNTH = Path(sys.argv[1] if len(sys.argv) > 1 else "data/synth")
OUT = Path(sys.argv[2] if len(sys.argv) > 2 else "runs/finetune_study")
ITERS = int(sys.argv[3]) if len(sys.argv) > 3 else 150
CLASSES = ("square", "bar", "dot")
LIMITS = {"train": 600, "val": 200}


def subset() -> Path:
    root = OUT / "data"
    voc = root / "VOCdevkit" / "VOC2007"
    if (voc / "ImageSets" / "Main" / "val.txt").exists():
        return root
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    (voc / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for split, limit in LIMITS.items():
        src = VOCDataset(SYNTH, split)
        keep = [src.class_names.index(c) + 1 for c in CLASSES]
        ids = []
        for i, ann in enumerate(src.annotations):
            mask = torch.isin(torch.as_tensor(ann.labels), torch.tensor(keep)).numpy()
            if not mask.any():
                continue
            labels = [CLASSES.index(src.class_names[int(lab) - 1]) + 1 for lab in ann.labels[mask]]
            path = src.image_path(i)
            shutil.copyfile(path, voc / "JPEGImages" / path.name)
            write_annotation(voc / "Annotations" / f"{ann.image_id}.xml",
                             Annotation(ann.image_id, path.name, ann.width, ann.height,
                                        ann.boxes[mask], labels, ann.difficult[mask]), CLASSES)
            ids.append(ann.image_id)
            if len(ids) == limit:
                break
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def arm(name: str, extra: list[str]) -> dict:
    out = OUT / f"{name}.pt"
    cmd = [sys.executable, "-m", "navya.cli", "train", "--data", str(subset()), "--out",
           str(out), "--max-iters", str(ITERS), "--batch-size", "16", "--lr", "3e-3",
           "--threads", "2", "--seed", "0", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t0
    meta = torch.load(out, map_location="cpu", weights_only=True)["meta"]
    return {"arm": name, "args": " ".join(extra) or "(from scratch)", "iterations": ITERS,
            "train_seconds": meta["train_seconds"], "wall_seconds": round(seconds, 1),
            "val_map": round(meta["val"]["map"], 4),
            "val_ap": {k: round(v, 4) for k, v in meta["val"]["ap"].items()}}


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    shipped = "navya/checkpoints/ssdlite_mobilenet_v2.pt"
    results = [arm("scratch", []), arm("finetune", ["--init", shipped]),
               arm("finetune_freeze50", ["--init", shipped, "--freeze-backbone", "50"])]
    text = json.dumps(results, indent=1)
    print(text)
    (OUT / "results.json").write_text(text + "\n")
