import json
import sys
import time

from torch import nn

from navya.compress.base import CompressContext
from navya.compress.prune import StructuredConfig, prune_structured
from navya.data.voc import VOCDataset
from navya.metrics.evaluate import evaluate_model
from navya.metrics.model_stats import count_macs
from navya.models import load_checkpoint

m, ck = load_checkpoint("navya/checkpoints/ssdlite_mobilenet_v2.pt")
train = VOCDataset("data/synth", "train", class_names=ck.class_names)
val = VOCDataset("data/synth", "val", class_names=ck.class_names)
ref = 0.8630151993077911
x = m.preprocess([val[0][0]])
base_macs = count_macs(m.core, (x,)).macs
heads_extras = tuple(n for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d) and n.startswith(("core.extras", "core.cls_heads", "core.reg_heads")))
which = sys.argv[1:]
cfgs = {
 "lr3e-3": StructuredConfig(0.3, finetune_lr=3e-3),
 "ign-he-lr3e-3": StructuredConfig(0.3, finetune_lr=3e-3, ignore=heads_extras),
 "ign-he-0": StructuredConfig(0.3, finetune_iters=0, ignore=heads_extras),
 "plain-0": StructuredConfig(0.3, finetune_iters=0),
 "kd-lr3e-3": StructuredConfig(0.3, finetune_lr=3e-3, distill=True),
 "kd-lr1e-3": StructuredConfig(0.3, distill=True),
 "kd-ign-he-lr3e-3": StructuredConfig(0.3, finetune_lr=3e-3, distill=True, ignore=heads_extras),
 "kd-w3-lr3e-3": StructuredConfig(0.3, finetune_lr=3e-3, distill=True, distill_weight=3.0),
 "kd-lr3e-3-250": StructuredConfig(0.3, finetune_lr=3e-3, distill=True, finetune_iters=250),
 "lr3e-3-300": StructuredConfig(0.3, finetune_lr=3e-3, finetune_iters=300),
}
for name in which:
    cfg = cfgs[name]
    t0 = time.time()
    p = prune_structured(m, cfg, CompressContext(train_dataset=train, seed=0, progress=False))
    ft = time.time() - t0
    mp = evaluate_model(p, val).map("all-point")
    macs = count_macs(p.core, (x,)).macs
    print(json.dumps({"cfg": name, "map": mp, "drop": (ref - mp) * 100, "macs_red": 1 - macs / base_macs, "seconds": ft,
                      "params": p.pruning_info["params_after"], "loss": [p.pruning_info.get("finetune_loss_first"), p.pruning_info.get("finetune_loss_last")]}), flush=True)
