"""INT8 recipes on a real detector, measured per CPU class (issue 26, item 4).

Usage (from the repository root, navya's virtualenv active; the machine's rules may ask for a
niceness and a core: ``nice -n 19 taskset -c 0 python ...``)::

    python docs/results/real_int8/study.py [--photos /work/shared/real/voc2012_100] \\
        [--work /tmp/navya_real_int8] [--out docs/results/real_int8] \\
        [--settings native,avx2,qemu-haswell] [--only RECIPE,...] [--resamples 1000]

The model: the TF Object Detection API SSD-Lite MobileNetV2 person detector shipped in
``navya/checkpoints/tfod/`` (``import_tf_od_api(graph, classes=["person"])``). The photographs:
a VOC folder outside the repository (``--photos``; default ``NAVYA_REAL_PHOTOS``, else
``../shared/real/voc2012_100`` beside the checkout): ``train`` (21 images) calibrates,
``val`` (79 images) is scored; their 20-class annotations are read with
``VOCDataset(..., class_names=["person"], other_classes="ignore")`` (the other classes'
objects dropped), JPEGs decoded reduced to the model's 300 px as the suite does.

Each recipe is built with navya's own transforms and configs (``PTQConfig`` /
``quantize_static``, ``OnnxRuntimeConfig``, ``OpenVINOConfig``, ``ExecuTorchConfig``;
``apply_transform``). Two choices navya makes by itself from the CPU class are forced here so
that both values can be measured: ONNX Runtime's ``reduce_range`` (``deploy._ort_reduce_range``)
and NNCF's ``overflow_fix`` (``deploy._nncf_overflow_fix``) are replaced in the worker process
by a function returning the recipe's value (what navya would have chosen there is recorded).

Every (recipe, CPU class setting) runs in a fresh subprocess:

``native``
    this CPU as it is.
``avx2``
    ``navya.cpuclass.restriction_env("avx2")`` in the environment: torch's x86 engine and
    OpenVINO's CPU plugin run their AVX2 int8 arithmetic; ONNX Runtime and XNNPACK ignore it
    (run anyway, to show that they do).
``qemu-haswell``
    ONNX Runtime and ExecuTorch/XNNPACK only, under ``qemu-x86_64 -cpu Haswell`` with
    ``NAVYA_CPU_CLASS=avx2`` (user-mode QEMU emulates an AVX2 CPU's CPUID and instructions;
    ~100x slower). The artifact is the one built natively (its weights and scales do not depend
    on the CPU, only the kernels that run it do); the preprocessed inputs are computed natively
    and only the network runs under QEMU; navya's post-processing (decode, NMS) runs natively on
    its raw outputs.

ONNX Runtime and ExecuTorch artifacts are built once (in the ``native`` run) and loaded by the
other settings; torch eager and OpenVINO recipes are built (calibrated) in each setting's
process.

Per run: person AP (all-point and VOC07) on ``val`` with a 95 % bootstrap interval over images
(``navya.metrics.bootstrap.bootstrap_ap``, 1000 resamples, seed 0), the paired AP drop against
eager fp32 (the same resamples for both: the same seed draws the same images; the reference is
eager fp32 of the same setting, native eager fp32 for ``qemu-haswell``), the size ratio (eager
fp32 ``serialized_size`` over the recipe's state dict or artifact), and, natively only, the
median 1-thread latency of one image end to end (for information: a shared 2-core machine).

Caching: every run writes ``<work>/runs/<setting>/<recipe>.json`` (its detections and facts)
under a key of the recipe, the graph and the data; a rerun skips runs whose key matches.
Writes ``results.json`` and ``results.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
GRAPH = ROOT / "navya/checkpoints/tfod/frozen_inference_graph.pb"
PHOTOS = Path(os.environ.get("NAVYA_REAL_PHOTOS") or ROOT.parent / "shared/real/voc2012_100")
STUDY_VERSION = 1
SETTINGS = ("native", "avx2", "qemu-haswell")
CALIB_MAX = 21
METHODS = ("all-point", "voc07")


@dataclass(frozen=True)
class Recipe:
    name: str
    runtime: str  # torch | onnxruntime | openvino | executorch-xnnpack
    params: dict = field(default_factory=dict)
    settings: tuple[str, ...] = ("native", "avx2")
    catalogue: str = ""  # the navya variant it equals (up to the calibration image count)

    def key(self) -> str:
        return json.dumps({"name": self.name, "runtime": self.runtime, "params": self.params,
                           "v": STUDY_VERSION}, sort_keys=True)


def _recipes() -> list[Recipe]:
    out = [Recipe("fp32", "torch", {"fp32": True}, catalogue="fp32")]
    # eager INT8 (x86 engine): torch's reduce_range is 7-bit *activations* (PTQConfig)
    for pc in (False, True):
        for rr in (True, False):
            for obs in ("histogram", "minmax"):
                cat = ""
                if rr and obs == "histogram":
                    cat = "int8-ptq-per-channel" if pc else "int8-ptq"
                out.append(Recipe(
                    f"eager-{'pc' if pc else 'pt'}-a{'7' if rr else '8'}-{obs[:4]}-c21", "torch",
                    {"per_channel": pc, "reduce_range": rr, "activation_observer": obs,
                     "calibration_images": 21}, catalogue=cat))
    # the same saturating recipe on the onednn engine (oneDNN kernels only): does the x86 engine's
    # loss come from its kernels or from the recipe?
    out.append(Recipe("eager-pc-a8-minm-c21-onednn", "torch",
                      {"per_channel": True, "reduce_range": False, "activation_observer": "minmax",
                       "calibration_images": 21, "engine": "onednn"}))
    for pc in (False, True):
        for n in (5, 10):
            out.append(Recipe(
                f"eager-{'pc' if pc else 'pt'}-a7-hist-c{n}", "torch",
                {"per_channel": pc, "reduce_range": True, "activation_observer": "histogram",
                 "calibration_images": n},
                catalogue="int8-ptq-per-channel" if pc else "int8-ptq"))
    # ONNX Runtime QDQ (MinMax, uint8 activations, int8 weights): reduce_range = 7-bit weights
    qemu = ("native", "avx2", "qemu-haswell")
    out.append(Recipe("ort-fp32", "onnxruntime", {"quantize": False}, ("native", "qemu-haswell"),
                      catalogue="onnx-fp32"))
    for pc in (False, True):
        for rr in (False, True):
            out.append(Recipe(
                f"ort-{'pc' if pc else 'pt'}-w{'7' if rr else '8'}", "onnxruntime",
                {"quantize": True, "per_channel": pc, "reduce_range": rr,
                 "calibration_images": 21}, qemu,
                catalogue="onnx-int8" if not pc and not rr else ""))
    # OpenVINO + NNCF: overflow_fix default (None: NNCF's, first layer), enable, disable
    for fix in ("default", "enable", "disable"):
        out.append(Recipe(f"ov-fix-{fix}", "openvino",
                          {"overflow_fix": fix, "calibration_images": 21},
                          catalogue="openvino-int8" if fix != "disable" else ""))
    out.append(Recipe("et-xnnpack-pc", "executorch-xnnpack",
                      {"quantize": True, "per_channel": True, "calibration_images": 21}, qemu,
                      catalogue="executorch-xnnpack-int8"))
    return out


RECIPES = {r.name: r for r in _recipes()}


# -- the worker (a fresh process per recipe and setting) ---------------------------------------


def _datasets(photos: Path, image_size: int):
    from navya.data.voc import VOCDataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the count of dropped objects is recorded instead
        val = VOCDataset(photos, "val", class_names=["person"], other_classes="ignore",
                         decode_size=image_size)
        train = VOCDataset(photos, "train", class_names=["person"], other_classes="ignore",
                           decode_size=image_size)
    return val, train


def _with_core(model, core):
    import copy

    out = copy.deepcopy(model).eval()
    out.core = core
    return out


def _force_choices(params: dict, facts: dict) -> None:
    """Replace navya's class-driven ORT reduce_range and NNCF overflow_fix choices by the
    recipe's; record what navya would have chosen in this process."""
    from navya.compress import deploy

    if "reduce_range" in params and params.get("quantize"):
        auto = deploy._ort_reduce_range(params["per_channel"])
        facts["navya_auto_choice"] = f"reduce_range {auto[1]}"
        value = bool(params["reduce_range"])
        deploy._ort_reduce_range = lambda per_channel: (value, f"{value}: forced by the study")
    if "overflow_fix" in params:
        auto = deploy._nncf_overflow_fix()
        facts["navya_auto_choice"] = f"overflow_fix {auto[1]}"
        fix = params["overflow_fix"]
        if fix == "default":
            deploy._nncf_overflow_fix = lambda: (None, "NNCF default: forced by the study")
        else:
            from nncf.quantization.advanced_parameters import (
                AdvancedQuantizationParameters,
                OverflowFix,
            )

            value = OverflowFix.ENABLE if fix == "enable" else OverflowFix.DISABLE
            deploy._nncf_overflow_fix = lambda: (
                AdvancedQuantizationParameters(overflow_fix=value),
                f"{fix}: forced by the study")


def _latency_ms(model, images, rounds: int = 3) -> float:
    import numpy as np
    import torch

    times = []
    with torch.inference_mode():
        model([images[0]])  # warm-up (opens a runtime session)
        for _ in range(rounds):
            for img in images:
                t = time.perf_counter()
                model([img])
                times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def worker(recipe: Recipe, setting: str, photos: Path, work: Path, out_file: Path,
           latency: bool) -> None:
    import torch

    torch.set_num_threads(1)
    from navya.compress.base import CompressContext, apply_transform
    from navya.compress.deploy import (
        ExecuTorchConfig,
        ExecuTorchCore,
        OnnxRuntimeConfig,
        OnnxRuntimeCore,
        OpenVINOConfig,
    )
    from navya.compress.quantize import PTQConfig
    from navya.cpuclass import host_class, kernel_class, restrictions_in_force
    from navya.metrics.evaluate import predict
    from navya.metrics.model_stats import artifact_size, serialized_size
    from navya.models.tfod import import_tf_od_api

    facts: dict = {"recipe": recipe.name, "setting": setting, "host_class": host_class(),
                   "kernel_class": kernel_class(), "restrictions": restrictions_in_force(),
                   "torch_capability": torch.backends.cpu.get_cpu_capability()}
    model = import_tf_od_api(GRAPH, ["person"])
    val, train = _datasets(photos, model.image_size)
    ctx = CompressContext(train_dataset=train, seed=0)
    p = dict(recipe.params)
    _force_choices(p, facts)
    art_dir = work / "artifacts"
    art_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if recipe.runtime == "torch":
        if p.get("fp32"):
            q = model
        else:
            q = apply_transform(model, PTQConfig(
                engine=p.get("engine", "x86"),
                per_channel=p["per_channel"], reduce_range=p["reduce_range"],
                activation_observer=p["activation_observer"],
                calibration_images=p["calibration_images"]), ctx)
            facts["calibration_indices"] = list(q.calibration_indices)
        facts["size_bytes"] = serialized_size(q).size_bytes
    elif recipe.runtime in ("onnxruntime", "executorch-xnnpack"):
        ext = "onnx" if recipe.runtime == "onnxruntime" else "pte"
        art = art_dir / f"{recipe.name}.{ext}"
        if setting == "native":
            if recipe.runtime == "onnxruntime":
                cfg = OnnxRuntimeConfig(quantize=p["quantize"],
                                        per_channel=p.get("per_channel", False),
                                        calibration_images=p.get("calibration_images"))
            else:
                cfg = ExecuTorchConfig(quantize=True, per_channel=p["per_channel"],
                                       calibration_images=p["calibration_images"])
            q = apply_transform(model, cfg, ctx)
            files = q.core.artifact_files()
            art.write_bytes(files[f"model.{ext}"])
            facts["artifact_built_here"] = True
        else:
            if not art.is_file():
                raise SystemExit(f"{art} missing: run the native setting first")
            files = {f"model.{ext}": art.read_bytes()}
            kind = OnnxRuntimeCore if ext == "onnx" else ExecuTorchCore
            q = _with_core(model, kind(files, image_size=model.image_size,
                                       precision="int8" if p.get("quantize") else "f32"))
            facts["artifact_built_here"] = False
        facts["info"] = {k: v for k, v in getattr(q.core, "info", {}).items()}
        facts["size_bytes"] = artifact_size(files).size_bytes
        facts["artifact_sha256"] = hashlib.sha256(art.read_bytes()).hexdigest()
    elif recipe.runtime == "openvino":
        q = apply_transform(model, OpenVINOConfig("int8", calibration_images=p["calibration_images"]),
                            ctx)
        facts["info"] = dict(q.core.info)
        facts["size_bytes"] = artifact_size(q.core.artifact_files()).size_bytes
    else:
        raise SystemExit(f"unknown runtime {recipe.runtime}")
    facts["build_s"] = time.perf_counter() - t0
    facts["fp32_size_bytes"] = serialized_size(model).size_bytes
    t0 = time.perf_counter()
    preds = predict(q, val)
    facts["eval_s"] = time.perf_counter() - t0
    if latency:
        images = [val[i][0] for i in range(10)]
        facts["latency_ms"] = _latency_ms(q, images)
    facts["n_images"] = len(val)
    facts["preds"] = [{k: v.tolist() for k, v in d.items()} for d in preds]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(facts))


# -- the QEMU worker: only the runtime, on natively preprocessed inputs -------------------------


def qemu_worker(recipe: Recipe, inputs: Path, artifact: Path, out: Path) -> None:
    import numpy as np

    x = np.load(inputs)
    outs: list[list] = [[], []]
    t0 = time.perf_counter()
    if recipe.runtime == "onnxruntime":
        import onnxruntime as ort  # no torch: starts in seconds under QEMU

        o = ort.SessionOptions()  # as navya.compress.deploy.OnnxRuntimeCore opens it
        o.intra_op_num_threads = o.inter_op_num_threads = 1
        o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        o.log_severity_level = 3
        s = ort.InferenceSession(artifact.read_bytes(), o, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        for i in range(len(x)):
            for j, t in enumerate(s.run(None, {name: x[i : i + 1]})):
                outs[j].append(t)
    else:
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        portable_lib._unsafe_reset_threadpool(1)
        # the Program must outlive its Method: a Method whose Program was freed segfaulted
        # under QEMU (natively it happened to run)
        program = Runtime.get().load_program(artifact.read_bytes())
        method = program.load_method("forward")
        for i in range(len(x)):
            for j, t in enumerate(method.execute((torch.from_numpy(x[i : i + 1]),))):
                outs[j].append(t.numpy().copy())
    from navya.cpuclass import host_class

    np.savez(out, bbox_regression=np.concatenate(outs[0]), cls_logits=np.concatenate(outs[1]),
             seconds=np.array(time.perf_counter() - t0), host_class=np.array(host_class()))


# -- the parent -------------------------------------------------------------------------------


def _cpu() -> dict:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        info[k.strip()] = v.strip()
    flags = set(info.get("Flags", "").split())
    from navya.cpuclass import host_class

    watch = ("avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
    return {"model_name": info.get("Model name", "unknown"),
            "cpu_family": info.get("CPU family"), "model": info.get("Model"),
            "flags": {f: f in flags for f in watch}, "navya_class": host_class({*flags}),
            "cpus": info.get("CPU(s)")}


def _git_state() -> dict:
    """HEAD and the navya files that differ from it (the code the runs used, if unchanged
    since)."""
    def git(*a):
        r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.rstrip("\n") if r.returncode == 0 else None

    status = git("status", "--porcelain", "--", "navya")
    return {"head": git("rev-parse", "HEAD"),
            "navya_changes": [ln[3:] for ln in (status or "").splitlines()]}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _env(setting: str) -> dict:
    from navya.cpuclass import OVERRIDE_VAR, restriction_env

    env = {k: v for k, v in os.environ.items()
           if k not in ("ATEN_CPU_CAPABILITY", "FBGEMM_ENABLE_INSTRUCTIONS",
                        "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", OVERRIDE_VAR)}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
                "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")})
    if setting == "avx2":
        env.update(restriction_env("avx2"))
    elif setting == "qemu-haswell":
        env[OVERRIDE_VAR] = "avx2"
    return env


def _run_file(work: Path, setting: str, recipe: Recipe) -> Path:
    return work / "runs" / setting / f"{recipe.name}.json"


def _qemu_inputs(work: Path, photos: Path) -> tuple[Path, list[tuple[int, int]]]:
    """The val images preprocessed natively (``[79, 3, 300, 300]`` float32) and their sizes."""
    import numpy as np
    import torch

    from navya.models.tfod import import_tf_od_api

    path = work / "val_inputs.npy"
    model = import_tf_od_api(GRAPH, ["person"])
    val, _ = _datasets(photos, model.image_size)
    sizes = [(int(val[i][0].shape[-2]), int(val[i][0].shape[-1])) for i in range(len(val))]
    if not path.is_file():
        with torch.no_grad():
            x = torch.cat([model.preprocess([val[i][0]]) for i in range(len(val))])
        np.save(path, x.numpy())
    return path, sizes


def run_qemu(recipe: Recipe, photos: Path, work: Path, out_file: Path) -> None:
    import numpy as np
    import torch

    from navya.models.tfod import import_tf_od_api

    inputs, sizes = _qemu_inputs(work, photos)
    ext = "onnx" if recipe.runtime == "onnxruntime" else "pte"
    art = work / "artifacts" / f"{recipe.name}.{ext}"
    if not art.is_file():
        raise SystemExit(f"{art} missing: run the native setting first")
    raw = work / "runs" / "qemu-haswell" / f"{recipe.name}.raw.npz"
    raw.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["qemu-x86_64", "-cpu", "Haswell", sys.executable, str(Path(__file__).resolve()),
           "--qemu-worker", recipe.name, "--inputs", str(inputs), "--artifact", str(art),
           "--raw-out", str(raw)]
    r = subprocess.run(cmd, env=_env("qemu-haswell"), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"QEMU worker {recipe.name} failed:\n{r.stderr[-3000:]}")
    with np.load(raw) as z:
        reg, logits = torch.from_numpy(z["bbox_regression"]), torch.from_numpy(z["cls_logits"])
        seconds, cls = float(z["seconds"]), str(z["host_class"])
    model = import_tf_od_api(GRAPH, ["person"])
    preds = []
    with torch.no_grad():
        for i, hw in enumerate(sizes):
            d = model.postprocess(reg[i : i + 1], logits[i : i + 1], [hw])[0]
            preds.append({k: v.numpy().tolist() for k, v in d.items()})
    from navya.metrics.model_stats import artifact_size, serialized_size

    facts = {"recipe": recipe.name, "setting": "qemu-haswell", "host_class": cls,
             "kernel_class": cls, "restrictions": {}, "emulator": "qemu-x86_64 -cpu Haswell",
             "artifact_built_here": False, "artifact_sha256": _sha(art),
             "size_bytes": artifact_size({f"model.{ext}": art.read_bytes()}).size_bytes,
             "fp32_size_bytes": serialized_size(model).size_bytes, "eval_s": seconds,
             "n_images": len(sizes), "preds": preds}
    out_file.write_text(json.dumps(facts))


def _targets(photos: Path):
    from navya.metrics.evaluate import targets_of
    from navya.models.tfod import import_tf_od_api

    model = import_tf_od_api(GRAPH, ["person"])
    val, train = _datasets(photos, model.image_size)
    return val, train, targets_of(val, len(val))


def _np_preds(preds):
    import numpy as np

    return [{"boxes": np.asarray(d["boxes"], np.float32).reshape(-1, 4),
             "scores": np.asarray(d["scores"], np.float32),
             "labels": np.asarray(d["labels"], np.int64)} for d in preds]


def _iv(point, samples, conf=0.95):
    from navya.metrics.bootstrap import percentile_interval

    lo, hi = percentile_interval(samples, conf)
    return {"point": point, "low": lo, "high": hi}


def analyse(runs: dict, targets, resamples: int) -> dict:
    """Bootstrap every run; paired drops against the setting's eager fp32."""
    from navya.metrics.bootstrap import bootstrap_ap

    boots = {}
    for (setting, name), facts in runs.items():
        boots[(setting, name)] = bootstrap_ap(_np_preds(facts["preds"]), targets, ["person"],
                                              methods=METHODS, n_resamples=resamples, seed=0)
    rows = []
    for (setting, name), facts in runs.items():
        ref_setting = setting if (setting, "fp32") in boots else "native"
        ref = boots.get((ref_setting, "fp32"))
        b = boots[(setting, name)]
        row = {"recipe": name, "setting": setting, "runtime": RECIPES[name].runtime,
               "params": RECIPES[name].params, "catalogue": RECIPES[name].catalogue,
               "host_class": facts.get("host_class"), "kernel_class": facts.get("kernel_class"),
               "restrictions": facts.get("restrictions"), "emulator": facts.get("emulator"),
               "n_images": facts["n_images"], "n_resamples": resamples,
               "size_ratio": facts["fp32_size_bytes"] / facts["size_bytes"],
               "size_bytes": facts["size_bytes"], "latency_ms": facts.get("latency_ms"),
               "info": facts.get("info"), "navya_auto_choice": facts.get("navya_auto_choice"),
               "artifact_sha256": facts.get("artifact_sha256"),
               "calibration_images": RECIPES[name].params.get("calibration_images"),
               "drop_reference": f"{ref_setting}/fp32", "ap": {}, "drop_points": {}}
        for m in METHODS:
            iv = b.mean_ap[m]
            row["ap"][m] = {"point": iv.point, "low": iv.low, "high": iv.high}
            if ref is not None:
                d = 100 * (ref.map_samples[m] - b.map_samples[m])
                row["drop_points"][m] = _iv(100 * (ref.mean_ap[m].point - iv.point), d)
        rows.append(row)
    return {"rows": rows, "boots": boots}


def paired_diff(boots, a, b, method="voc07") -> dict:
    """AP(a) - AP(b) in points, with its paired bootstrap interval (same resamples)."""
    d = 100 * (boots[a].map_samples[method] - boots[b].map_samples[method])
    return _iv(100 * (boots[a].mean_ap[method].point - boots[b].mean_ap[method].point), d)


# -- the report -------------------------------------------------------------------------------


def _f(x, nd=3):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _ivs(iv, nd=3):
    return f"{_f(iv['point'], nd)} [{_f(iv['low'], nd)}, {_f(iv['high'], nd)}]"


def _describe(r) -> str:
    p = r["params"]
    if r["runtime"] == "torch":
        if p.get("fp32"):
            return "fp32"
        return (f"{'per-channel' if p['per_channel'] else 'per-tensor'} w, "
                f"{'7' if p['reduce_range'] else '8'}-bit act, {p['activation_observer']}, "
                f"{p.get('engine', 'x86')} engine")
    if r["runtime"] == "onnxruntime":
        if not p.get("quantize"):
            return "fp32"
        return (f"{'per-channel' if p['per_channel'] else 'per-tensor'} w, "
                f"{'7' if p['reduce_range'] else '8'}-bit w (reduce_range "
                f"{'on' if p['reduce_range'] else 'off'}), MinMax")
    if r["runtime"] == "openvino":
        return f"NNCF overflow_fix {p['overflow_fix']}"
    return "XNNPACKQuantizer symmetric, per-channel w"


def report(result: dict, out: Path, command: str) -> str:
    rows = result["rows"]
    cpu = result["cpu"]
    fl = cpu["flags"]
    lines = [
        "# INT8 recipes on a real detector, per CPU class",
        "",
        "Issue 26, item 4. Model: the TF OD API SSD-Lite MobileNetV2 person detector "
        "(`navya/checkpoints/tfod/frozen_inference_graph.pb`, sha256 "
        f"`{result['graph_sha256'][:8]}…`), imported with `import_tf_od_api(graph, "
        "classes=['person'])`. Data: the 100 VOC2012 photographs (outside the repository): "
        f"calibration on `train` ({result['data']['train_images']} images), person AP on `val` "
        f"({result['data']['val_images']} images, {result['data']['val_persons']} non-difficult "
        "persons; the other 19 classes' objects dropped with `other_classes=\"ignore\"`). "
        f"AP at IoU 0.5, all-point and VOC07 11-point; intervals: 95 % bootstrap over images "
        f"({result['resamples']} resamples, seed 0); drops in AP points against eager fp32, "
        "paired (the same resampled images for both models).",
        "",
        f"CPU: `{cpu['model_name']}` (family {cpu['cpu_family']} model {cpu['model']}, "
        f"{cpu['cpus']} CPUs), navya class `{cpu['navya_class']}`; lscpu flags: "
        + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in fl.items()) + ".",
        f"Software: torch {result['versions'].get('torch')}, onnxruntime "
        f"{result['versions'].get('onnxruntime')}, openvino {result['versions'].get('openvino')}, "
        f"nncf {result['versions'].get('nncf')}, executorch {result['versions'].get('executorch')}; "
        f"{result['qemu']}.",
        "",
        f"Command: `{command}`",
        "",
        "Settings: **native** (this CPU, VNNI); **avx2** (`restriction_env('avx2')`: torch and "
        "OpenVINO run their AVX2 int8 kernels; ONNX Runtime and XNNPACK ignore it); "
        "**qemu-haswell** (`qemu-x86_64 -cpu Haswell`, `NAVYA_CPU_CLASS=avx2`: ONNX Runtime and "
        "XNNPACK on an emulated AVX2 CPU; drops against native eager fp32). Size ratio: eager "
        "fp32 state dict over the recipe's state dict or artifact. ms: native median 1-thread "
        "end-to-end latency of one image (10 images x 3), a noisy shared 2-core machine, for "
        "information only; not measured under restriction or QEMU.",
        "",
    ]
    for setting in SETTINGS:
        rs = [r for r in rows if r["setting"] == setting]
        if not rs:
            continue
        kc = sorted({str(r["kernel_class"]) for r in rs if r["runtime"] in ("torch", "openvino")})
        lines += [f"## {setting}", ""]
        if setting == "avx2":
            lines += [f"Kernel class of torch and OpenVINO here: {', '.join(kc)}; ONNX Runtime "
                      "and XNNPACK still run the host's kernels.", ""]
        lines += ["| recipe | runtime | what | calib | AP all-point [95 % CI] | AP VOC07 [95 % CI] "
                  "| drop all-point, pts | drop VOC07, pts | size x | ms | catalogue |",
                  "|---|---|---|---:|---|---|---|---|---:|---:|---|"]
        for r in rs:
            dp = r["drop_points"]
            lines.append(
                f"| {r['recipe']} | {r['runtime']} | {_describe(r)} | "
                f"{r['calibration_images'] or '-'} | {_ivs(r['ap']['all-point'])} | "
                f"{_ivs(r['ap']['voc07'])} | "
                f"{_ivs(dp['all-point'], 1) if 'all-point' in dp else 'n/a'} | "
                f"{_ivs(dp['voc07'], 1) if 'voc07' in dp else 'n/a'} | {r['size_ratio']:.2f} | "
                f"{_f(r['latency_ms'], 1)} | {r['catalogue'] or '-'} |")
        lines.append("")
    lines += ["## Best recipe per runtime and setting (by VOC07 AP drop)", "",
              "Paired difference: AP of the best recipe minus AP of the runner-up (and of the "
              "worst), VOC07 points, with its 95 % bootstrap interval over the same resamples; "
              "'outside' when the interval excludes 0. Eager recipes compared at 21 calibration "
              "images on the x86 engine (the calibration count is a separate question: see the "
              "reading).", "",
              "| setting | runtime | best | drop VOC07 | runner-up | best - runner-up | worst | "
              "best - worst |", "|---|---|---|---|---|---|---|---|"]
    for c in result["comparisons"]:
        lines.append(
            f"| {c['setting']} | {c['runtime']} | {c['best']} | {_ivs(c['best_drop'], 1)} | "
            f"{c['second'] or '-'} | "
            f"{_ivs(c['vs_second'], 1) + (' outside' if c['vs_second_outside'] else ' inside') if c['second'] else '-'} | "
            f"{c['worst'] or '-'} | "
            f"{_ivs(c['vs_worst'], 1) + (' outside' if c['vs_worst_outside'] else ' inside') if c['worst'] else '-'} |")
    lines += ["", "## Single-factor contrasts", "",
              "AP(a) - AP(b), VOC07 points, paired (the same resamples), 95 % interval.", "",
              "| setting | contrast | a - b, pts | |", "|---|---|---|---|"]
    for c in result["contrasts"]:
        lines.append(f"| {c['setting']} | {c['what']} | {_ivs(c['a_minus_b'], 1)} | "
                     f"{'outside' if c['outside'] else 'inside'} |")
    lines += ["", "## The class's effect: the same recipe, AVX2 minus native", "",
              "VOC07 AP points, paired (the same resamples); 'same AP' when the AP of every "
              "resample agrees to 1e-6, both methods (the detections may still differ in their "
              "last digits).", "",
              "| recipe | setting | AP minus native AP, pts | |", "|---|---|---|---|"]
    for e in result["class_effects"]:
        verdict = ("same AP" if e["same_ap"] else
                   "outside the interval" if e["outside"] else "inside")
        lines.append(f"| {e['recipe']} | {e['setting']} | {_ivs(e['minus_native'], 1)} | "
                     f"{verdict} |")
    lines += ["", "## The issue's AVX2 table against this study", "",
              "Issue 26 measured ONNX Runtime QDQ INT8 (MinMax, 20 calibration photographs) on "
              "an AVX2-only AMD EPYC, VOC07 AP on 80 photographs. Here: the same recipes on 79 "
              "`val` photographs, natively (VNNI) and under QEMU Haswell (emulated AVX2).", "",
              "| recipe | issue, real AVX2 EPYC: AP VOC07 (drop) | here native VNNI: drop VOC07 | "
              "here QEMU Haswell: drop VOC07 |", "|---|---|---|---|"]
    issue = {"ort-pt-w8": "0.755 (-2.8)", "ort-pt-w7": "0.400 (-38.3)",
             "ort-pc-w8": "0.577 (-20.6)", "ort-pc-w7": "0.744 (-3.9)"}
    by = {(r["setting"], r["recipe"]): r for r in rows}
    for name, iss in issue.items():
        cells = []
        for s in ("native", "qemu-haswell"):
            r = by.get((s, name))
            cells.append(_ivs(r["drop_points"]["voc07"], 1) if r and "voc07" in r["drop_points"]
                         else "not run")
        lines.append(f"| {name} | {iss} | {cells[0]} | {cells[1]} |")
    reading = out / "reading.md"
    if reading.is_file():
        lines += ["", reading.read_text().rstrip()]
    lines += ["", "Reproduce: `" + command + "` (resumes from the cache in `--work`; "
              "`results.json` holds every figure, the per-run facts and navya's automatic "
              "choice for each class).", ""]
    return "\n".join(lines)


def comparisons(rows, boots) -> list[dict]:
    out = []
    for setting in SETTINGS:
        for runtime in ("torch", "onnxruntime", "openvino", "executorch-xnnpack"):
            rs = [r for r in rows if r["setting"] == setting and r["runtime"] == runtime
                  and "voc07" in r["drop_points"] and r["recipe"] not in ("fp32", "ort-fp32")
                  and r["params"].get("calibration_images") in (None, CALIB_MAX)
                  and r["params"].get("engine", "x86") == "x86"]
            if not rs:
                continue
            rs.sort(key=lambda r: r["drop_points"]["voc07"]["point"])
            best = rs[0]
            c = {"setting": setting, "runtime": runtime, "best": best["recipe"],
                 "best_drop": best["drop_points"]["voc07"], "second": None, "worst": None}
            if len(rs) > 1:
                for key, other in (("second", rs[1]), ("worst", rs[-1])):
                    d = paired_diff(boots, (setting, best["recipe"]), (setting, other["recipe"]))
                    c[key] = other["recipe"]
                    c[f"vs_{key}"] = d
                    c[f"vs_{key}_outside"] = bool(d["low"] > 0 or d["high"] < 0)
            out.append(c)
    return out


def class_effects(rows, boots) -> list[dict]:
    """Per recipe run in several settings: AP there minus AP natively (VOC07 points), paired
    (the same images and the same resamples)."""
    out = []
    have = {(r["setting"], r["recipe"]) for r in rows}
    for r in rows:
        if r["setting"] == "native" or ("native", r["recipe"]) not in have or r["recipe"] in (
                "fp32", "ort-fp32"):
            continue
        a, b = boots[(r["setting"], r["recipe"])], boots[("native", r["recipe"])]
        d = paired_diff(boots, (r["setting"], r["recipe"]), ("native", r["recipe"]))
        same = all(abs(a.mean_ap[m].point - b.mean_ap[m].point) < 1e-6 and bool(
            (abs(a.map_samples[m] - b.map_samples[m]) < 1e-6).all()) for m in METHODS)
        out.append({"recipe": r["recipe"], "setting": r["setting"], "minus_native": d,
                    "outside": bool(d["low"] > 0 or d["high"] < 0), "same_ap": same})
    return out


#: (a, b, what): the single-factor contrasts the reading rests on, AP(a) - AP(b)
CONTRASTS = (
    ("eager-pc-a7-hist-c21", "eager-pt-a7-hist-c21", "eager: per-channel - per-tensor weights"),
    ("eager-pt-a8-hist-c21", "eager-pt-a7-hist-c21", "eager: 8-bit - 7-bit activations, per-tensor"),
    ("eager-pc-a8-hist-c21", "eager-pc-a7-hist-c21", "eager: 8-bit - 7-bit activations, per-channel"),
    ("eager-pt-a7-minm-c21", "eager-pt-a7-hist-c21", "eager: minmax - histogram, per-tensor"),
    ("eager-pc-a7-minm-c21", "eager-pc-a7-hist-c21", "eager: minmax - histogram, per-channel"),
    ("eager-pt-a7-hist-c5", "eager-pt-a7-hist-c21", "eager: 5 - 21 calibration images, per-tensor"),
    ("eager-pt-a7-hist-c10", "eager-pt-a7-hist-c21", "eager: 10 - 21 calibration images, per-tensor"),
    ("eager-pc-a7-hist-c5", "eager-pc-a7-hist-c21", "eager: 5 - 21 calibration images, per-channel"),
    ("eager-pc-a7-hist-c10", "eager-pc-a7-hist-c21", "eager: 10 - 21 calibration images, per-channel"),
    ("eager-pc-a8-minm-c21-onednn", "eager-pc-a8-minm-c21", "eager: onednn - x86 engine, "
     "per-channel 8-bit minmax"),
    ("ort-pc-w8", "ort-pt-w8", "ORT: per-channel - per-tensor weights (8-bit)"),
    ("ort-pt-w7", "ort-pt-w8", "ORT: reduce_range on - off, per-tensor"),
    ("ort-pc-w7", "ort-pc-w8", "ORT: reduce_range on - off, per-channel"),
    ("ov-fix-enable", "ov-fix-default", "OpenVINO: overflow_fix enable - default"),
    ("ov-fix-disable", "ov-fix-default", "OpenVINO: overflow_fix disable - default"),
    ("ov-fix-enable", "ov-fix-disable", "OpenVINO: overflow_fix enable - disable"),
)


def contrasts(boots) -> list[dict]:
    out = []
    for setting in SETTINGS:
        for a, b, what in CONTRASTS:
            if (setting, a) in boots and (setting, b) in boots:
                d = paired_diff(boots, (setting, a), (setting, b))
                out.append({"setting": setting, "a": a, "b": b, "what": what, "a_minus_b": d,
                            "outside": bool(d["low"] > 0 or d["high"] < 0)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", default=str(PHOTOS))
    p.add_argument("--work", default="/tmp/navya_real_int8")
    p.add_argument("--out", default=str(HERE))
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--only", default=None, help="comma-separated recipe names")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--report-only", action="store_true", help="no new runs: report the cache")
    # worker modes
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--qemu-worker", help=argparse.SUPPRESS)
    p.add_argument("--setting", help=argparse.SUPPRESS)
    p.add_argument("--out-file", help=argparse.SUPPRESS)
    p.add_argument("--latency", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--inputs", help=argparse.SUPPRESS)
    p.add_argument("--artifact", help=argparse.SUPPRESS)
    p.add_argument("--raw-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    photos, work, out = Path(args.photos), Path(args.work), Path(args.out)
    if args.qemu_worker:
        qemu_worker(RECIPES[args.qemu_worker], Path(args.inputs), Path(args.artifact),
                    Path(args.raw_out))
        return 0
    if args.worker:
        worker(RECIPES[args.worker], args.setting, photos, work, Path(args.out_file),
               args.latency)
        return 0

    import torch

    torch.set_num_threads(1)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    names = list(RECIPES) if args.only is None else [n.strip() for n in args.only.split(",")]
    for n in names:
        if n not in RECIPES:
            raise SystemExit(f"unknown recipe {n!r}; recipes: {', '.join(RECIPES)}")
    if "qemu-haswell" in settings and not shutil.which("qemu-x86_64"):
        raise SystemExit("qemu-x86_64 not found (apt-get install qemu-user), or drop "
                         "qemu-haswell from --settings")
    work.mkdir(parents=True, exist_ok=True)
    val, train, targets = _targets(photos)
    data_key = hashlib.sha256((val.fingerprint() + train.fingerprint()).encode()).hexdigest()
    graph_sha = _sha(GRAPH)
    t_start = time.perf_counter()
    todo = [(s, RECIPES[n]) for s in SETTINGS if s in settings for n in names
            if s in RECIPES[n].settings]
    for k, (setting, recipe) in enumerate(todo, 1):
        f = _run_file(work, setting, recipe)
        key = hashlib.sha256(f"{recipe.key()}|{graph_sha}|{data_key}".encode()).hexdigest()
        if f.is_file() and json.loads(f.read_text()).get("key") == key:
            print(f"[{k}/{len(todo)}] {setting:13s} {recipe.name}: cached", flush=True)
            continue
        if args.report_only:
            continue
        t0 = time.perf_counter()
        f.parent.mkdir(parents=True, exist_ok=True)
        if setting == "qemu-haswell":
            run_qemu(recipe, photos, work, f)
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", recipe.name,
                   "--setting", setting, "--photos", str(photos), "--work", str(work),
                   "--out-file", str(f)] + (["--latency"] if setting == "native" else [])
            r = subprocess.run(cmd, env=_env(setting), capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"worker {recipe.name} ({setting}) failed")
        facts = json.loads(f.read_text())
        facts["key"] = key
        f.write_text(json.dumps(facts))
        print(f"[{k}/{len(todo)}] {setting:13s} {recipe.name}: {time.perf_counter() - t0:.0f} s "
              f"(kernel class {facts.get('kernel_class')}; total "
              f"{(time.perf_counter() - t_start) / 60:.1f} min)", flush=True)

    runs = {}
    for s in SETTINGS:
        for n in RECIPES:
            f = _run_file(work, s, RECIPES[n])
            if s in RECIPES[n].settings and f.is_file():
                runs[(s, n)] = json.loads(f.read_text())
    analysed = analyse(runs, targets, args.resamples)
    rows = analysed["rows"]
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in ("torch", "onnxruntime", "onnx", "openvino", "nncf", "executorch", "torchao"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    qemu = subprocess.run(["qemu-x86_64", "--version"], capture_output=True, text=True).stdout \
        .splitlines()[0] if shutil.which("qemu-x86_64") else "no qemu"
    import numpy as np

    result = {
        "study": "issue 26 item 4: INT8 recipes on the real person detector, per CPU class",
        "graph": str(GRAPH.relative_to(ROOT)), "graph_sha256": graph_sha,
        "photos": str(photos), "data_key": data_key,
        "data": {"val_images": len(val), "train_images": len(train),
                 "val_persons": int(sum(int((~t["difficult"]).sum()) for t in targets)),
                 "val_other_class_objects_dropped": val.ignored_objects,
                 "train_other_class_objects_dropped": train.ignored_objects},
        "resamples": args.resamples, "confidence": 0.95, "seed": 0,
        "cpu": _cpu(), "python": platform.python_version(), "versions": versions,
        "qemu": qemu, "date": time.strftime("%Y-%m-%d"), "git_state": _git_state(),
        "rows": rows,
        "comparisons": comparisons(rows, analysed["boots"]),
        "class_effects": class_effects(rows, analysed["boots"]),
        "contrasts": contrasts(analysed["boots"]),
    }
    command = ("nice -n 19 taskset -c 0 python docs/results/real_int8/study.py --photos "
               "/work/shared/real/voc2012_100")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=lambda o: (
        o.item() if isinstance(o, np.generic) else str(o))) + "\n")
    md = report(result, out, command)
    (out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
