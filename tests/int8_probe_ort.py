"""The runtimes' twin of ``int8_probe.py``: one ONNX ``QLinearConv`` (uint8 activations over
their full range, int8 weights) run by ONNX Runtime's MLAS (default), or with the argument
``openvino`` by OpenVINO's CPU plugin. Without int8 dot products (AVX2) adjacent u8 x s8
products are summed in saturating int16 lanes; with VNNI they are not. MLAS picks its kernels
from CPUID with no environment switch; OpenVINO's oneDNN honours ``ONEDNN_MAX_CPU_ISA``. Prints
JSON as ``int8_probe.py``. Used to check that a restriction, or an emulated CPU
(``qemu-x86_64 -cpu Haswell``), computes what a real AVX2 CPU computes (README, "CPU
classes")."""

import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

C, K, S = 32, 3, 12
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (1, C, S, S), dtype=np.uint8)
w = rng.integers(-127, 128, (C, C, K, K), dtype=np.int8)
xs, ws, out_scale = 0.02, 0.01, 0.5
inits = [numpy_helper.from_array(np.array(v, dtype=d), n) for n, v, d in (
    ("xs", xs, np.float32), ("xz", 0, np.uint8), ("ws", ws, np.float32), ("wz", 0, np.int8),
    ("ys", out_scale, np.float32), ("yz", 128, np.uint8))] + [numpy_helper.from_array(w, "w")]
node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"],
                        pads=[1, 1, 1, 1])
graph = helper.make_graph([node], "probe",
                          [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
runtime = sys.argv[1] if len(sys.argv) > 1 else "onnxruntime"
if runtime == "openvino":
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.onnx")
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
        compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": 1})
        got = compiled(x)[0].astype(np.int64)
    version = ov.get_version().split("-")[0]
else:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x})[0].astype(np.int64)
    version = ort.__version__
xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
exact = np.zeros((1, C, S, S))
for i in range(K):
    for j in range(K):
        exact += np.einsum("nchw,oc->nohw", xp[:, :, i:i + S, j:j + S], w[:, :, i, j] * 1.0)
want = np.clip(np.round(exact * xs * ws / out_scale) + 128, 0, 255).astype(np.int64)
diff = np.abs(got - want)
print(json.dumps({"sha256": hashlib.sha256(got.tobytes()).hexdigest(),
                  "max_steps_from_exact": int(diff.max()),
                  "differing_fraction": float((diff > 1).mean()),
                  "runtime": runtime, "version": version}))
