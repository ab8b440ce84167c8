"""A small INT8 network whose outputs depend on the CPU's int8 instructions, run in a fresh
process (the kernel restrictions of navya.cpuclass act at torch's import): full-range uint8
activations times large int8 weights, so adjacent products overflow int16. A CPU with int8 dot
products (VNNI, AMX) accumulates them in int32 and matches exact integer arithmetic; AVX2's
``vpmaddubsw`` saturates. Prints JSON: the output's SHA-256, its largest distance from the
exact result in quantization steps, and the share of outputs that differ from it."""

import hashlib
import json
import warnings

import torch

warnings.filterwarnings("ignore")
torch.backends.quantized.engine = "x86"
torch.manual_seed(0)
C, K, S = 32, 3, 12
x = torch.randint(0, 256, (1, C, S, S), dtype=torch.uint8)
w = torch.randint(-127, 128, (C, C, K, K), dtype=torch.int8)
xs, ws, out_scale = 0.02, 0.01, 0.5
qx = torch._make_per_tensor_quantized_tensor(x, xs, 0)
qw = torch._make_per_tensor_quantized_tensor(w, ws, 0)
from torch.ao.nn.quantized import Conv2d  # noqa: E402

conv = Conv2d(C, C, K, padding=1)
conv.set_weight_bias(qw, None)
conv.scale, conv.zero_point = out_scale, 128
with torch.no_grad():
    got = conv(qx).int_repr().to(torch.int64)
    exact = torch.nn.functional.conv2d(x.double() * xs, w.double() * ws, padding=1)
    want = torch.clamp(torch.round(exact / out_scale) + 128, 0, 255).to(torch.int64)
diff = (got - want).abs()
print(json.dumps({"sha256": hashlib.sha256(got.numpy().tobytes()).hexdigest(),
                  "max_steps_from_exact": int(diff.max()),
                  "differing_fraction": float((diff > 1).double().mean()),
                  "capability": torch.backends.cpu.get_cpu_capability()}))
