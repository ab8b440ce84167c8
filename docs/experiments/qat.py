import json
import sys
import time

from navya.compress.base import CompressContext
from navya.compress.quantize import QATConfig, quantize_qat
from navya.data.voc import VOCDataset
from navya.metrics.evaluate import evaluate_model
from navya.models import load_checkpoint

m, ck = load_checkpoint("navya/checkpoints/ssdlite_mobilenet_v2.pt")
train = VOCDataset("data/synth", "train", class_names=ck.class_names)
val = VOCDataset("data/synth", "val", class_names=ck.class_names)
ref = 0.8630151993077911
base = dict(iterations=50, warmup_iters=5, freeze_bn_after=20, freeze_observers_after=35)
cfgs = {"pt30-lr5e-5": QATConfig(iterations=30, warmup_iters=3, freeze_bn_after=12, freeze_observers_after=20, lr=5e-5), "pt50": QATConfig(**base), "pt50-kd": QATConfig(**base, distill=True),
        "pt50-lr5e-5": QATConfig(**base, lr=5e-5), "pt50-lr2e-5-noaug": QATConfig(**base, lr=2e-5, augment=False)}
for name in sys.argv[1:]:
    t0 = time.time()
    q = quantize_qat(m, cfgs[name], CompressContext(train_dataset=train, seed=0))
    mp = evaluate_model(q, val).map("all-point")
    print(json.dumps({"cfg": name, "map": mp, "drop": (ref - mp) * 100, "seconds": time.time() - t0,
                      "loss": [q.qat_losses[0], q.qat_losses[-1]]}), flush=True)
