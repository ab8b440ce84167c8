import copy

import torch

from navya.catalogue import apply_variant
from navya.compress.prune import structured_prune_
from navya.metrics.latency import compare_latency
from navya.models import load_checkpoint
from navya.runtime import timing_copy

m, ck = load_checkpoint("navya/checkpoints/ssdlite_mobilenet_v2.pt")
p = copy.deepcopy(m); structured_prune_(p, 0.3); p.eval()
pcl = apply_variant("fp32-channels-last", p)
mcl = apply_variant("fp32-channels-last", m)
img = [torch.rand(3, 320, 320)]
ref = timing_copy(m)
for name, mod in (("pruned", p), ("pruned-CL", pcl), ("fp32-CL", mcl)):
    t = timing_copy(mod)
    r = compare_latency(lambda: ref(img), lambda: t(img), threads=1, rounds=30)
    print(name, f"{r.speedup:.3f} [{r.ci_low:.3f},{r.ci_high:.3f}] ref {r.a.median_ms:.1f} ms, {r.b.median_ms:.1f} ms", flush=True)
