import json

from navya.compress.base import CompressContext
from navya.compress.quantize import PTQConfig, quantize_static
from navya.data.voc import VOCDataset
from navya.metrics.evaluate import evaluate_model
from navya.metrics.model_stats import serialized_size
from navya.models import load_checkpoint

m, ck = load_checkpoint("navya/checkpoints/ssdlite_mobilenet_v2.pt")
train = VOCDataset("data/synth", "train", class_names=ck.class_names)
val = VOCDataset("data/synth", "val", class_names=ck.class_names)
ctx = CompressContext(train_dataset=train, seed=0)
ref = evaluate_model(m, val).map("all-point")
fsize = serialized_size(m).size_bytes
print(json.dumps({"cfg": "fp32", "map": ref}), flush=True)
cfgs = [
  ("per-channel hist 2%", PTQConfig()),
  ("per-tensor hist 2%", PTQConfig(per_channel=False)),
  ("per-tensor minmax 2%", PTQConfig(per_channel=False, activation_observer="minmax")),
  ("per-tensor hist 2% rr=False", PTQConfig(per_channel=False, reduce_range=False)),
  ("per-channel hist 2% rr=False", PTQConfig(reduce_range=False)),
  ("per-tensor hist 0.5%", PTQConfig(per_channel=False, calibration_fraction=0.005)),
  ("per-tensor hist 1%", PTQConfig(per_channel=False, calibration_fraction=0.01)),
  ("per-tensor hist 5%", PTQConfig(per_channel=False, calibration_fraction=0.05)),
]
for name, cfg in cfgs:
    q = quantize_static(m, cfg, ctx)
    mp = evaluate_model(q, val).map("all-point")
    print(json.dumps({"cfg": name, "map": mp, "drop": (ref - mp) * 100, "calib_s": q.calibration_seconds,
                      "n_calib": len(q.calibration_indices), "size_ratio": fsize / serialized_size(q).size_bytes}), flush=True)
