"""CPU kernel classes: which instruction tier the INT8 and half-precision kernels run on.

INT8 and bf16/fp16 kernels are chosen at run time from the CPU's instructions, and the choice
changes both their speed and their numbers:

* without VNNI, an INT8 convolution multiplies uint8 x int8 pairs with ``vpmaddubsw``, which
  adds adjacent products into *saturating* int16 lanes; with VNNI (``vpdpbusd``) or AMX the
  products accumulate straight into int32. The same model and inputs give other outputs (and
  per-channel weights with full-range activations can lose many AP points on AVX2).
* bf16 without AVX512-BF16 or AMX is emulated by conversions: far slower than fp32, not faster.

A *class* names the tier that decides this. On x86 it is the highest rung of
:data:`X86_LADDER` the CPU has (the rungs follow oneDNN's ``ONEDNN_MAX_CPU_ISA`` levels); on
Arm the highest of :data:`ARM_LADDER`. Figures that depend on the kernels (the accuracy and
speed of INT8 and half-precision variants) are keyed by class: they are compared, and held to
budgets, only within it.

The class of torch's own kernels, and of OpenVINO's CPU plugin (its oneDNN honours
``ONEDNN_MAX_CPU_ISA``), can be lowered below the host's with the environment that
:func:`restriction_env` returns (``ATEN_CPU_CAPABILITY``, ``FBGEMM_ENABLE_INSTRUCTIONS``,
``ONEDNN_MAX_CPU_ISA``): :func:`kernel_class` honours it. Runtimes without such a switch
(:data:`UNRESTRICTABLE`) keep running the host's class.

Under an emulator the flags lie: user-mode QEMU (``qemu-x86_64 -cpu Haswell``) emulates the
CPUID of its ``-cpu`` model, which the kernels dispatch on, but /proc/cpuinfo is the host's.
``NAVYA_CPU_CLASS`` then names the emulated class (:func:`host_class` honours it), and
:func:`capability_mismatch` catches the case where nobody said so: the flags claim AVX-512 while
torch found only AVX2.

Imports only the standard library (layer 0).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Mapping

__all__ = [
    "ARM_LADDER",
    "CLASSES",
    "UNRESTRICTABLE",
    "X86_LADDER",
    "OVERRIDE_VAR",
    "capability_mismatch",
    "cpu_flags",
    "host_class",
    "kernel_class",
    "class_features",
    "restriction_env",
    "x86_engine_uses_onednn",
    "restrictions_in_force",
    "validate_class",
]

#: x86 rungs, lowest first, with the flags (all of them) that make a CPU reach the rung.
X86_LADDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("x86", ()),
    ("avx2", ("avx2", "fma")),
    ("avx2_vnni", ("avx2", "fma", "avx_vnni")),
    ("avx512", ("avx512f", "avx512bw", "avx512vl")),
    ("avx512_vnni", ("avx512f", "avx512bw", "avx512vl", "avx512_vnni")),
    ("avx512_bf16", ("avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16")),
    ("amx", ("amx_tile", "amx_int8", "amx_bf16")),
)
#: Arm rungs (``Features`` of /proc/cpuinfo): NEON, the int8 dot product, int8 matrix multiply.
ARM_LADDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("arm", ()),
    ("neon", ("asimd",)),
    ("dotprod", ("asimd", "asimddp")),
    ("i8mm", ("asimd", "asimddp", "i8mm")),
)
#: Every class name, x86 then Arm.
CLASSES: tuple[str, ...] = (tuple(n for n, _ in X86_LADDER) + tuple(n for n, _ in ARM_LADDER))

#: Per class: does it have native int8 dot products (no int16 saturation), native bf16?
_FEATURES = {
    "x86": (False, False), "avx2": (False, False), "avx2_vnni": (True, False),
    "avx512": (False, False), "avx512_vnni": (True, False), "avx512_bf16": (True, True),
    "amx": (True, True), "arm": (False, False), "neon": (False, False),
    "dotprod": (True, False), "i8mm": (True, False),
}

#: oneDNN ISA names (``ONEDNN_MAX_CPU_ISA``) of each x86 class, and the class each caps to.
_ONEDNN_ISA = {"x86": "SSE41", "avx2": "AVX2", "avx2_vnni": "AVX2_VNNI",
               "avx512": "AVX512_CORE", "avx512_vnni": "AVX512_CORE_VNNI",
               "avx512_bf16": "AVX512_CORE_BF16", "amx": "AVX512_CORE_AMX"}
_ONEDNN_CAP = {v: k for k, v in _ONEDNN_ISA.items()} | {"ALL": "amx", "DEFAULT": "amx"}
#: FBGEMM's forced ISA (``FBGEMM_ENABLE_INSTRUCTIONS``; it has no rung below AVX2).
_FBGEMM_ISA = {"avx2": "AVX2", "avx2_vnni": "AVX2", "avx512": "AVX512",
               "avx512_vnni": "AVX512_E1", "avx512_bf16": "AVX512_E1", "amx": "AVX512_E1"}
_FBGEMM_CAP = {"AVX2": "avx2", "AVX512": "avx512", "AVX512_256": "avx512",
               "AVX512_E1": "avx512_vnni", "AVX512_E1_256": "avx512_vnni"}
#: ATen's vectorized kernels (``ATEN_CPU_CAPABILITY``: default, avx2, avx512).
_ATEN_ISA = {"x86": "default", "avx2": "avx2", "avx2_vnni": "avx2", "avx512": "avx512",
             "avx512_vnni": "avx512", "avx512_bf16": "avx512", "amx": "avx512"}
_ATEN_CAP = {"default": "x86", "avx2": "avx2", "avx512": "amx"}

#: Runtimes whose kernels no environment restricts: their figures are the host class's.
UNRESTRICTABLE: dict[str, str] = {
    "onnxruntime": "MLAS dispatches on CPUID alone (no environment switch; ONEDNN_MAX_CPU_ISA "
                   "measured to change nothing)",
    "executorch-xnnpack": "XNNPACK dispatches on cpuinfo alone (no environment switch)",
}


def _cpuinfo_flags(text: str) -> set[str]:
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (``flags`` on x86, ``Features`` on Arm) from /proc/cpuinfo, or
    from ``cpuinfo`` (its text) when given; an empty set where there is none."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return set()
    return _cpuinfo_flags(cpuinfo)


def _arch(machine: str | None) -> str:
    m = (machine or platform.machine()).lower()
    if m in ("x86_64", "amd64", "i686", "i386", "x86"):
        return "x86"
    if m in ("aarch64", "arm64") or m.startswith("arm"):
        return "arm"
    return m or "unknown"


#: The environment variable that names this machine's class where /proc/cpuinfo does not (an
#: emulated CPU under user-mode QEMU).
OVERRIDE_VAR = "NAVYA_CPU_CLASS"


def host_class(flags: Iterable[str] | None = None, machine: str | None = None,
               env: Mapping[str, str] | None = None) -> str:
    """The kernel class of the CPU with ``flags`` (default: this one): the highest rung of its
    architecture's ladder whose flags it has all of; the architecture's name (``machine``, e.g.
    ``ppc64le``) off x86 and Arm. Without ``flags``, ``NAVYA_CPU_CLASS`` in ``env`` (default:
    this process's environment) names the class instead (an emulated CPU); a name that is not a
    class is a ValueError."""
    if flags is None:
        declared = (os.environ if env is None else env).get(OVERRIDE_VAR, "").strip()
        if declared:
            return validate_class(declared, f"{OVERRIDE_VAR}: ")
    arch = _arch(machine)
    have = set(cpu_flags() if flags is None else flags)
    ladder = X86_LADDER if arch == "x86" else ARM_LADDER if arch == "arm" else None
    if ladder is None:
        return arch
    best = ladder[0][0]
    for name, needs in ladder:
        if all(f in have for f in needs):
            best = name
    return best


def _rank(cls: str) -> int:
    for ladder in (X86_LADDER, ARM_LADDER):
        names = [n for n, _ in ladder]
        if cls in names:
            return names.index(cls)
    return -1


def restrictions_in_force(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kernel-restricting variables set in ``env`` (default: this process's)."""
    env = os.environ if env is None else env
    names = ("ATEN_CPU_CAPABILITY", "FBGEMM_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA",
             "DNNL_MAX_CPU_ISA")
    return {n: env[n] for n in names if env.get(n)}


def kernel_class(host: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The class torch's own kernels run at: ``host`` (default: this CPU's) capped by each
    restriction in ``env`` (default: this process's environment). With no restriction it is
    the host class. Restrictions that cap to different rungs give the lowest."""
    host = host_class() if host is None else host
    if _rank(host) < 0 or host in {n for n, _ in ARM_LADDER}:
        return host
    tables = {"ATEN_CPU_CAPABILITY": _ATEN_CAP, "FBGEMM_ENABLE_INSTRUCTIONS": _FBGEMM_CAP,
              "ONEDNN_MAX_CPU_ISA": _ONEDNN_CAP, "DNNL_MAX_CPU_ISA": _ONEDNN_CAP}
    caps = []
    for var, value in restrictions_in_force(env).items():
        value = value.strip()
        cap = tables[var].get(value.lower() if var == "ATEN_CPU_CAPABILITY" else value.upper())
        if cap is not None:
            caps.append(cap)
    best = host
    for cap in caps:
        if _rank(cap) < _rank(best):
            best = cap
    return best


def restriction_env(cls: str) -> dict[str, str]:
    """The environment that makes torch's x86 kernels run at class ``cls`` on a CPU of that
    class or above: ATen's vectorized kernels, FBGEMM (the x86 quantized engine's GEMMs and
    convolutions) and oneDNN (its other quantized kernels, bf16). It must be set before
    torch is imported (a fresh process)."""
    validate_class(cls)
    if cls not in _ONEDNN_ISA:
        raise ValueError(f"kernel class {cls!r} cannot be emulated by restriction: only x86 "
                         f"classes can ({', '.join(_ONEDNN_ISA)})")
    env = {"ATEN_CPU_CAPABILITY": _ATEN_ISA[cls], "ONEDNN_MAX_CPU_ISA": _ONEDNN_ISA[cls]}
    if cls in _FBGEMM_ISA:
        env["FBGEMM_ENABLE_INSTRUCTIONS"] = _FBGEMM_ISA[cls]
    return env


#: ATen's vectorization levels (``ATEN_CPU_CAPABILITY`` values), lowest first.
_ATEN_LEVELS = ("default", "avx2", "avx512")


def capability_mismatch(host: str, capability: str,
                        env: Mapping[str, str] | None = None) -> str | None:
    """Why the class ``host`` (read from /proc/cpuinfo) cannot be this machine's, given the
    ATen capability torch detected (``torch.backends.cpu.get_cpu_capability()``); None when they
    agree. They disagree when the flags promise an ATen level (:data:`_ATEN_ISA`) torch did not
    find (and ``ATEN_CPU_CAPABILITY`` does not explain it): the kernels dispatch on CPUID, so the
    flags are not this CPU's, as under user-mode QEMU, whose /proc/cpuinfo is the host's."""
    env = os.environ if env is None else env
    if env.get(OVERRIDE_VAR, "").strip() or env.get("ATEN_CPU_CAPABILITY", "").strip():
        return None
    found, promised = capability.lower(), _ATEN_ISA.get(host)
    if promised is None or found not in _ATEN_LEVELS:
        return None
    if _ATEN_LEVELS.index(found) >= _ATEN_LEVELS.index(promised):
        return None
    return (f"/proc/cpuinfo's flags make this CPU class {host}, but torch's kernels found only "
            f"{capability} on it: the flags are not the CPU the kernels run on (user-mode QEMU "
            f"shows the host's /proc/cpuinfo). Name the class of the CPU they run on with "
            f"{OVERRIDE_VAR}=<class> (e.g. {OVERRIDE_VAR}=avx2 under `qemu-x86_64 -cpu "
            f"Haswell`); classes: {', '.join(CLASSES)}")


def x86_engine_uses_onednn(cls: str) -> bool:
    """Whether torch's ``x86`` quantized engine sends convolutions to oneDNN on a CPU of class
    ``cls``: it does (for groups <= 100 and symmetric weights) exactly where the CPU has
    AVX512-VNNI (``should_use_onednn_quant`` asks cpuinfo for ``avx512vnni``), and uses FBGEMM
    everywhere else. A restriction does not change that question's answer, so a CPU restricted
    below its class must be told which engine its target class would use."""
    return cls in ("avx512_vnni", "avx512_bf16", "amx")


def class_features(cls: str) -> dict[str, bool]:
    """``{"int8_dot": ..., "bf16": ...}``: whether class ``cls`` has native int8 dot products
    (no int16 saturation) and native bf16 arithmetic; False for an unknown class."""
    int8_dot, bf16 = _FEATURES.get(cls, (False, False))
    return {"int8_dot": int8_dot, "bf16": bf16}


def validate_class(cls: str, where: str = "") -> str:
    """``cls`` if it names a class of :data:`CLASSES`; otherwise a ValueError that lists them."""
    if cls not in CLASSES:
        raise ValueError(f"{where}unknown CPU class {cls!r}; known: {', '.join(CLASSES)}")
    return cls
