"""Runtime settings: intra-op threads, the quantized engine, glibc's allocator, timing copies.

The ground every measurement stands on (layer 0: imports only torch and the standard library).
Nothing here imports ``torch.ao.quantization``: engines are ``torch.backends.quantized``
settings, and :func:`repair_unpickled` is plain ``nn.Module`` bookkeeping.

Two process-history effects are controlled here (their measured size:
docs/results/code_decisions/, "Timing ground rules"):

* **The allocator.** glibc serves each activation over its mmap threshold (128 KiB at first,
  then moved by every free of an mmapped block) with a fresh ``mmap``, so every call takes
  thousands of page faults, or none, depending on which tensors the process freed before: the
  same network is markedly slower in a fresh process than after one large call moved the
  threshold. :func:`steady_allocator` (called by every timing function of
  :mod:`navya.metrics.latency`) pins the thresholds with ``mallopt`` so activations are reused
  from the heap: the steady speed from the first call, no faults.
* **Thread count at the first call.** Eager INT8 convolutions (x86 engine: oneDNN) build and
  cache their kernels at their first call, for the intra-op thread count of that moment: an
  INT8 network first run with 2 threads then timed with 1 is slower than a copy first run with
  1 thread (and the reverse at 2 threads). Time a fresh
  :func:`timing_copy` whose first call runs at the timing thread count, not a model that was
  just evaluated with all cores.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = [
    "usable_cpus",
    "ENGINES",
    "cpu_class_mismatch",
    "cpu_model",
    "machine_key",
    "machine_slug",
    "MMAP_THRESHOLD_BYTES",
    "TRIM_THRESHOLD_BYTES",
    "num_threads",
    "pinned",
    "quantized_engine",
    "repair_unpickled",
    "steady_allocator",
    "supported_engines",
    "timing_copy",
    "timing_cpu",
]

# -- threads ---------------------------------------------------------------------------------


@contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Set ``torch.set_num_threads(n)`` (intra-op threads) and restore the previous value.

    Inter-op threads are left untouched. The previous value is restored even if the body
    raises.

    Raises:
        ValueError: if ``n`` is not an integer >= 1.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_threads: n must be an integer >= 1, got {n!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# -- quantized engines -----------------------------------------------------------------------

#: Engine names torch's eager quantization knows (``torch.backends.quantized.engine``).
ENGINES: tuple[str, ...] = ("x86", "fbgemm", "onednn", "qnnpack")


def supported_engines() -> list[str]:
    """The quantized engines this build and CPU support (``none`` excluded)."""
    return [e for e in torch.backends.quantized.supported_engines if e != "none"]


@contextmanager
def quantized_engine(engine: str) -> Iterator[None]:
    """Set ``torch.backends.quantized.engine`` for the block and restore the previous one,
    also when the block raises. ``engine`` must be in :func:`supported_engines` (else
    ``RuntimeError`` from torch)."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def repair_unpickled(model: nn.Module) -> nn.Module:
    """Make a whole INT8 model loaded with ``torch.load(..., weights_only=False)`` callable.

    torch 2.14's quantized convolutions unpickle through their own ``__setstate__``, which
    never runs ``nn.Module.__init__``: the loaded modules lack ``_modules``, ``_forward_hooks``,
    ``_backward_hooks``, ... and the first call fails with ``AttributeError: 'ConvReLU2d' object
    has no attribute '_backward_hooks'``. This adds the missing (empty) nn.Module bookkeeping
    to every module, in place, and returns ``model``. A no-op for models that unpickled fine.
    """
    defaults = vars(nn.Module())
    stack = [model]
    while stack:
        module = stack.pop()
        state = module.__dict__
        for key, value in defaults.items():
            if key not in state:
                state[key] = copy.copy(value)
        stack.extend(m for m in state["_modules"].values() if m is not None)
    return model


# -- the allocator ---------------------------------------------------------------------------

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap (batch-1 SSD-Lite activations are <= 10 MB); the
#: largest value glibc accepts on 64-bit.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
#: Freed heap memory is kept up to this much instead of being returned to the OS.
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
_allocator_state: dict[str, Any] | None = None


def steady_allocator() -> dict[str, Any]:
    """Pin glibc's malloc thresholds for this process (once; later calls return the same).

    ``mallopt(M_MMAP_THRESHOLD, 32 MiB)`` (which also turns off glibc's dynamic threshold) and
    ``mallopt(M_TRIM_THRESHOLD, 1 GiB)``, so per-call activations are served from the heap
    instead of fresh page-faulting mmaps, whatever the process allocated before (see the module
    docstring for the measured effect). Process-wide and permanent: it changes how much freed
    memory the process keeps, not what any computation returns.

    Returns a description for provenance: ``{"allocator": "glibc", "mmap_threshold_bytes": ...,
    "trim_threshold_bytes": ...}``, or ``{"allocator": "unchanged", "reason": ...}`` where it
    does not apply (not glibc, e.g. macOS or musl, or ``mallopt`` refused).
    """
    global _allocator_state
    if _allocator_state is not None:
        return dict(_allocator_state)
    state: dict[str, Any]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version
    except (OSError, AttributeError) as exc:
        state = {"allocator": "unchanged", "reason": f"not glibc ({exc})"}
    else:
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        gnu_get_libc_version.restype = ctypes.c_char_p
        ok = (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
              and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
        version = gnu_get_libc_version().decode()
        state = ({"allocator": f"glibc {version}", "mmap_threshold_bytes": MMAP_THRESHOLD_BYTES,
                  "trim_threshold_bytes": TRIM_THRESHOLD_BYTES} if ok else
                 {"allocator": "unchanged", "reason": f"glibc {version} refused mallopt"})
    _allocator_state = state
    return dict(state)


# -- the machine ------------------------------------------------------------------------------

#: CPU features that change which kernels run (and so the speed ratios): part of the machine key.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "avx_vnni",
             "asimd", "sve")


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() and key.strip() not in out:
                    out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def cpu_model() -> str:
    """The CPU's ``model name`` from /proc/cpuinfo, else ``platform.processor()``/machine."""
    import platform

    return (_cpuinfo().get("model name") or platform.processor() or platform.machine()
            or "unknown")


def cpu_class_mismatch() -> str | None:
    """Why /proc/cpuinfo's class is not the CPU torch's kernels run on (an emulator that shows
    the host's flags), or None: :func:`navya.cpuclass.capability_mismatch` with torch's own
    capability."""
    from navya.cpuclass import capability_mismatch, cpu_flags, host_class

    return capability_mismatch(host_class(cpu_flags()), torch.backends.cpu.get_cpu_capability())


def machine_key(threads: int) -> dict[str, Any]:
    """What a speed ratio depends on besides the code: CPU model, the ISA features among
    :data:`ISA_FLAGS`, usable cores, torch version, timing threads and the quantized engine.
    Speed baselines are kept per key (:func:`machine_slug`)."""
    from navya.cpuclass import host_class, kernel_class, restrictions_in_force

    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    host = host_class()  # NAVYA_CPU_CLASS names an emulated CPU's class
    return {"cpu_model": cpu_model(), "isa": [f for f in ISA_FLAGS if f in flags],
            "cpu_class": host, "kernel_class": kernel_class(host),
            "restrictions": restrictions_in_force(),
            "cores": usable_cpus(), "torch_version": torch.__version__, "threads": int(threads),
            "quantized_engine": torch.backends.quantized.engine}


def machine_slug(key: dict[str, Any]) -> str:
    """A file-name-safe name of a machine key, e.g.
    ``amd-epyc-2c-avx512_vnni-avx512_bf16-torch2.14.1-cu130-t1-x86``."""
    import re

    isa = [f for f in key.get("isa", []) if f in ("avx512_vnni", "avx512_bf16", "amx_int8",
                                                   "avx_vnni", "sve")]
    # a run whose torch kernels are restricted below the host's class (navya.cpuclass) times
    # other kernels: its own key
    kernel = key.get("kernel_class")
    restricted = [f"k{kernel}"] if kernel and kernel != key.get("cpu_class") else []
    parts = [key["cpu_model"], f"{key['cores']}c", *isa, f"torch{key['torch_version']}",
             f"t{key['threads']}", key["quantized_engine"], *restricted]
    slug = "-".join(re.sub(r"[^a-z0-9._]+", "-", str(p).lower()).strip("-") for p in parts)
    return re.sub(r"-+", "-", slug)


# -- placement -------------------------------------------------------------------------------


def timing_cpu() -> int | None:
    """The core single-thread timing is pinned to: the highest-numbered core this process may
    run on (core 0 takes most interrupts and housekeeping), or None where affinity cannot be
    set (not Linux)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return max(os.sched_getaffinity(0))


@contextmanager
def pinned(cpu: int | None) -> Iterator[dict[str, Any]]:
    """Pin the calling thread to core ``cpu`` for the block, then restore its affinity.

    Yields a description for provenance: ``{"pinned_cpu": 1}``, or ``{"pinned_cpu": None,
    "reason": ...}`` when ``cpu`` is None or the OS refuses. Only the calling thread moves
    (Linux ``sched_setaffinity`` on thread 0): with one intra-op thread that is where torch
    computes; worker threads of a larger pool keep their own placement.
    """
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        yield {"pinned_cpu": None, "reason": "no core given" if cpu is None
               else "affinity not supported here"}
        return
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        yield {"pinned_cpu": None, "reason": f"sched_setaffinity refused: {exc}"}
        return
    try:
        yield {"pinned_cpu": cpu}
    finally:
        os.sched_setaffinity(0, before)


# -- timing copies ---------------------------------------------------------------------------


def timing_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` for timing, in eval mode, that has never run.

    Eager INT8 layers build their kernels at their first call for the thread count of that
    call (module docstring); a copy re-packs its weights, so its first call (make it at the
    timing thread count) builds them afresh. An INT8 model is copied under its own
    ``quantized_engine`` (weights re-pack with the current engine).
    """
    engine = getattr(model, "quantized_engine", None)
    with quantized_engine(engine) if engine else contextlib.nullcontext():
        return copy.deepcopy(model).eval()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, e.g. under ``taskset -c 0``), not the
    machine's count: what ``threads=all`` means."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
