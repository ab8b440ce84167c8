"""``navya doctor``: this machine's CPU class, what each runtime's kernels use on it, and which
budgets and baselines apply here.

Everything printed is read off this machine: the CPU's flags, oneDNN's own report of the ISA
it dispatches to (``ONEDNN_VERBOSE`` in a child process), ATen's CPU capability, OpenVINO's
CPU plugin's capabilities; the INT8 paths of FBGEMM, ONNX Runtime (MLAS) and XNNPACK have no
such report and are stated from the class (:mod:`navya.cpuclass`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from navya.cpuclass import (
    OVERRIDE_VAR,
    UNRESTRICTABLE,
    class_features,
    cpu_flags,
    host_class,
    kernel_class,
    restriction_env,
    restrictions_in_force,
)

#: flags shown (those that change a kernel's choice)
SHOWN_FLAGS = ("avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
               "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm",
               "sve")

_PROBE = """
import torch
torch.backends.quantized.engine = "onednn"
x = torch.quantize_per_tensor(torch.ones(1, 4, 6, 6), 0.1, 128, torch.quint8)
w = torch.quantize_per_tensor(torch.ones(4, 4, 3, 3), 0.1, 0, torch.qint8)
from torch.ao.nn.quantized import Conv2d
c = Conv2d(4, 4, 3)
c.set_weight_bias(w, None)
c(x)
print("ATEN_CAPABILITY=" + torch.backends.cpu.get_cpu_capability())
"""


def probe_torch(env: dict[str, str] | None = None) -> dict[str, str]:
    """ATen's CPU capability and oneDNN's ISA as a fresh torch process reports them under
    ``env`` (added to this process's environment)."""
    import warnings

    full = {**os.environ, **(env or {}), "ONEDNN_VERBOSE": "1"}
    try:
        with warnings.catch_warnings():
            out = subprocess.run([sys.executable, "-W", "ignore", "-c", _PROBE], env=full,
                                 capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"the torch probe could not run: {exc}"}
    found = {}
    for line in out.stdout.splitlines():
        if ",info,cpu,isa:" in line:
            found["onednn_isa"] = line.split("isa:", 1)[1].strip()
        elif line.startswith("ATEN_CAPABILITY="):
            found["aten_capability"] = line.split("=", 1)[1].strip()
    if out.returncode != 0:
        found["error"] = (out.stderr.strip().splitlines() or ["no output"])[-1]
    return found


def _int8_path(cls: str) -> str:
    f = class_features(cls)
    if cls == "amx":
        return "AMX tiles (int32 accumulation)"
    if f["int8_dot"]:
        return ("VNNI dot products (vpdpbusd: u8 x s8 straight into int32, no saturation)"
                if not cls.startswith(("dotprod", "i8mm")) else
                "Arm int8 dot products (sdot/udot" + (", smmla" if cls == "i8mm" else "") + ")")
    if cls in ("avx2", "avx512"):
        return "u8 x s8 by vpmaddubsw into SATURATING int16 lanes (see below)"
    return "no int8 dot-product instructions: widened multiplies"


def runtimes(cls_host: str, cls_kernel: str) -> list[tuple[str, str]]:
    """``(runtime, what its kernels use here)`` lines."""
    torch_probe = probe_torch()
    out = [("torch eager (ATen)", f"CPU capability {torch_probe.get('aten_capability', '?')}"),
           ("torch x86 INT8 (FBGEMM)",
            f"{_int8_path(cls_kernel)}"
            + (f"; forced by FBGEMM_ENABLE_INSTRUCTIONS="
               f"{os.environ['FBGEMM_ENABLE_INSTRUCTIONS']}"
               if os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS") else "")),
           ("torch oneDNN (INT8, bf16)",
            f"ISA {torch_probe.get('onednn_isa', '?')} (oneDNN's own report)"
            + (f" [probe: {torch_probe['error']}]" if "error" in torch_probe else "")),
           ("torch bf16", "native (AVX512-BF16/AMX)" if class_features(cls_kernel)["bf16"]
            else "EMULATED by conversions: slower than fp32; bf16 variants are NOT APPLICABLE")]
    try:
        import onnxruntime as ort

        out.append(("onnxruntime (MLAS)", f"{ort.__version__}: {_int8_path(cls_host)}; "
                    f"{UNRESTRICTABLE['onnxruntime']}"))
    except ImportError:
        out.append(("onnxruntime", "not installed"))
    try:
        import openvino as ov

        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        out.append(("openvino (CPU plugin)", f"{ov.get_version().split('-')[0]}: "
                    f"capabilities {', '.join(caps)}; INT8 {_int8_path(cls_kernel)}; its "
                    f"oneDNN honours ONEDNN_MAX_CPU_ISA"))
    except Exception as exc:  # noqa: BLE001 -- not installed, or no CPU plugin
        out.append(("openvino", f"unavailable ({exc.__class__.__name__})"))
    try:
        import executorch  # noqa: F401

        out.append(("executorch (XNNPACK)", f"{_int8_path(cls_host)}; "
                    f"{UNRESTRICTABLE['executorch-xnnpack']}"))
    except ImportError:
        out.append(("executorch", "not installed"))
    return out


def applicable(budgets_path: Path, baselines_dir: Path, cls_kernel: str,
               cls_host: str) -> list[str]:
    """What applies here, per gated model: budgets of this class, the variants whose
    class-keyed budgets or baselines this class lacks, the variants NOT APPLICABLE here."""
    from navya.budgets import class_baselines, load_budgets
    from navya.catalogue import DEFAULT_MODEL, MODELS, get_variant, variant_names

    lines = []
    for model in MODELS:
        try:
            b = load_budgets(budgets_path, variant_names(),
                             model=None if model == DEFAULT_MODEL else model)
        except Exception as exc:  # noqa: BLE001 -- shown, not raised: doctor diagnoses
            lines.append(f"{model}: budgets unreadable: {exc}")
            continue
        folder = baselines_dir if model == DEFAULT_MODEL else baselines_dir / model
        names = [n for n in variant_names()
                 if get_variant(n).fits(model) and (b.for_variant(n)
                                                   or any(n in t for t in b.classes.values()))]
        na, no_budget, no_base, other_base = [], [], [], []
        for n in names:
            v = get_variant(n)
            cls = cls_host if v.runtime in UNRESTRICTABLE else cls_kernel
            if v.not_applicable(cls):
                na.append(n)
                continue
            keys = {k for t in b.classes.values() for k in t.get(n, {})}
            if any(b.lookup(n, k, cls)[1] == "no budget for class" for k in keys):
                no_budget.append(n)
            if v.kernel_dependent:
                have = class_baselines(folder, n)
                if cls not in have:
                    (other_base if have else no_base).append(n)
        own = sorted(b.classes.get(cls_kernel, {}))
        lines.append(f"{model}: budgets {b.path}; required_classes "
                     f"{', '.join(b.required_classes) or 'any'}"
                     + ("" if not b.required_classes or cls_kernel in b.required_classes
                        else f"  <- THIS MACHINE ({cls_kernel}) MAY NOT RUN THE SUITE"))
        lines.append(f"  class {cls_kernel} sets budgets of {len(own)} variant(s)"
                     + (f": {', '.join(own)}" if own else ""))
        if no_budget:
            lines.append(f"  NO BUDGET FOR CLASS {cls_kernel} (speed/accuracy reported, not "
                         f"gated): {', '.join(no_budget)}")
        if other_base:
            lines.append(f"  BASELINE NOT COMPARABLE (only other classes' baselines in "
                         f"{folder / 'classes'}): {', '.join(other_base)}")
        if no_base:
            lines.append(f"  NO BASELINE in any class: {', '.join(no_base)}")
        if na:
            lines.append(f"  NOT APPLICABLE ON {cls_kernel}: {', '.join(na)}")
    return lines


def real_data() -> list[tuple[str, str, str | None, str]]:
    """Per gated model with data of its own: the model, the set, its folder here (None: not
    here) and what to do about it."""
    from navya.catalogue import MODELS
    from navya.data.real import real_set

    out = []
    for name, model in MODELS.items():
        if model.data:
            found = model.data_folder()
            out.append((name, model.data, str(found) if found else None,
                        real_set(model.data).missing()))
    return out


def doctor(budgets_path: Path, baselines_dir: Path, *, as_json: bool = False) -> str:
    """The report of ``navya doctor`` (text, or JSON with ``as_json``)."""
    from navya.runtime import cpu_class_mismatch, cpu_model, machine_key, machine_slug

    flags = cpu_flags()
    host, flag_class = host_class(), host_class(flags)  # NAVYA_CPU_CLASS may name the first
    kernel = kernel_class(host)
    mismatch = cpu_class_mismatch()
    key = machine_key(1)
    shown = [f for f in SHOWN_FLAGS if f in flags]
    rts = runtimes(host, kernel)
    apply = applicable(budgets_path, baselines_dir, kernel, host)
    speed = baselines_dir / "speed" / f"{machine_slug(key)}.json"
    own_data = real_data()
    if as_json:
        return json.dumps({"cpu_model": cpu_model(), "flags": shown, "cpu_class": host,
                           "kernel_class": kernel, "restrictions": restrictions_in_force(),
                           "class_mismatch": mismatch, "machine_slug": machine_slug(key),
                           "runtimes": dict(rts),
                           "speed_baseline": str(speed) if speed.exists() else None,
                           "applies": apply,
                           "own_data": {m: {"set": d, "folder": f} for m, d, f, _ in own_data}},
                          indent=2)
    lines = [f"CPU        {cpu_model()} ({key['cores']} usable cores)",
             f"flags      {' '.join(shown) or 'none of ' + ', '.join(SHOWN_FLAGS)}",
             f"CPU class  {host}"
             + (f"; torch's kernels restricted to {kernel} by "
                + ", ".join(f"{k}={v}" for k, v in restrictions_in_force().items())
                if kernel != host else ""),
             f"machine    {machine_slug(key)}"]
    if host != flag_class:
        lines.append(f"           (the class is {OVERRIDE_VAR}'s; the flags say {flag_class})")
    if mismatch:
        lines.append(f"WARNING    {mismatch}")
    lines += ["", "kernels here:"]
    lines += [f"  {name:<26} {text}" for name, text in rts]
    if not class_features(host)["int8_dot"]:
        lines.append("  (no int8 dot products: adjacent u8 x s8 products are summed into int16 "
                     "lanes that saturate; per-channel weights with full-range uint8 "
                     "activations can lose accuracy, 7-bit activations (reduce_range) avoid "
                     "it; INT8 is far less faster than fp32 than on VNNI/AMX CPUs)")
    lines += ["", "what applies here:", *[f"  {line}" for line in apply],
              "  speed baseline of this machine: "
              + (str(speed) if speed.exists() else f"none ({speed}): `pytest benchmarks/ "
                 "--navya-record-speed 10` records one"),
              *[f"  model {m} is gated on the real set {d}: "
                + (f"found at {f}" if f else f"NOT GATED here: {why}")
                for m, d, f, why in own_data],
              "", "record this class's kernel-dependent baselines: pytest benchmarks/ "
              "--navya-update-baselines (other classes' files are left alone)"]
    if host not in ("avx2", "x86") and host in {"avx2_vnni", "avx512", "avx512_vnni",
                                                 "avx512_bf16", "amx"}:
        env = " ".join(f"{k}={v}" for k, v in restriction_env("avx2").items())
        lines.append(f"emulate the avx2 class's torch and OpenVINO numerics (accuracy only, "
                     f"never speed): {env} pytest ...")
        lines.append(f"  ONNX Runtime and XNNPACK ignore it; an emulated CPU reproduces them too "
                     f"(slowly): {OVERRIDE_VAR}=avx2 qemu-x86_64 -cpu Haswell $(which python) "
                     f"-m pytest ...")
    return "\n".join(lines)
