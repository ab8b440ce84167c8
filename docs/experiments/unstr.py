import json

from torch import nn

from navya.compress.prune import UnstructuredConfig, head_output_names, prune_unstructured
from navya.data.voc import VOCDataset
from navya.metrics.evaluate import evaluate_model
from navya.metrics.model_stats import param_stats, serialized_size
from navya.models import load_checkpoint

m, ck = load_checkpoint("navya/checkpoints/ssdlite_mobilenet_v2.pt")
val = VOCDataset("data/synth", "val", class_names=ck.class_names)
ref = 0.8630
fs = serialized_size(m)
heads = set(head_output_names(m))
dense = tuple(n for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d) and mod.groups == 1 and n not in heads)
dense_nofirst = tuple(n for n in dense if n != dense[0])
print("dense convs", len(dense), dense[0], flush=True)
for name, cfg in [
    ("global conv", UnstructuredConfig(0.3, scope="global")),
    ("layer dense-only", UnstructuredConfig(0.3, layers=dense)),
    ("global dense-only", UnstructuredConfig(0.3, scope="global", layers=dense)),
    ("layer dense-nofirst", UnstructuredConfig(0.3, layers=dense_nofirst)),
]:
    p = prune_unstructured(m, cfg)
    mp = evaluate_model(p, val).map("all-point")
    s = serialized_size(p); ps = param_stats(p)
    print(json.dumps({"cfg": name, "map": mp, "drop": (ref - mp) * 100, "zip_ratio": fs.size_zip_bytes / s.size_zip_bytes,
                      "sparsity": ps.sparsity, "prunable_sparsity": ps.prunable_sparsity}), flush=True)
