"""Wall-clock latency: single measurement and same-process A/B speedup with a bootstrap CI.

Protocol (DESIGN.md, "Measurement protocol"): the intra-op thread count is pinned for the
measurement and restored afterwards, calls are warmed up, then timed for many rounds; the
median is the headline figure. Absolute milliseconds drift between runs on the same machine,
so budgets use :func:`compare_latency`, which times a reference and a candidate interleaved
in the same process and reports their speedup ratio.

Two process-history effects are controlled here, both measured on this project's machine
(torch 2.14.1, glibc, 1 thread, SSD-Lite MobileNetV2 at 320 px):

* **The allocator.** glibc serves each activation over its mmap threshold (128 KiB at first,
  then moved by every free of an mmapped block) with a fresh ``mmap``, so every call takes
  thousands of page faults, or none, depending on which tensors the process freed before: the
  same fp32 network took 43-49 ms a call with ~5,000 minor faults a call in a fresh process and
  35 ms with none after one batch-8 call had moved the threshold. :func:`steady_allocator`
  (called by every timing function) pins the thresholds with ``mallopt`` so activations are
  reused from the heap: 35 ms from the first call, 0 faults.
* **Thread count at the first call.** Eager INT8 convolutions (x86 engine: oneDNN) build and
  cache their kernels at their first call, for the intra-op thread count of that moment: an
  INT8 network first run with 2 threads then timed with 1 took 13.4 ms against 10.9 ms for a
  copy first run with 1 thread (and the reverse at 2 threads). Time a fresh
  :func:`timing_copy` whose first call runs at the timing thread count, not a model that was
  just evaluated with all cores.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "LatencyStats",
    "SpeedupResult",
    "compare_latency",
    "measure_latency",
    "num_threads",
    "steady_allocator",
    "timing_copy",
]

_BOOTSTRAP_RESAMPLES = 2000

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


def timing_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` for timing, in eval mode, that has never run.

    Eager INT8 layers build their kernels at their first call for the thread count of that
    call (module docstring); a copy re-packs its weights, so its first call (make it at the
    timing thread count) builds them afresh. An INT8 model is copied under its own
    ``quantized_engine`` (weights re-pack with the current engine).
    """
    from navya.compress._ao import quantized_engine

    engine = getattr(model, "quantized_engine", None)
    with quantized_engine(engine) if engine else contextlib.nullcontext():
        return copy.deepcopy(model).eval()


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


@dataclass(frozen=True)
class LatencyStats:
    """Per-call wall-clock latency over ``rounds`` timed calls, in milliseconds.

    ``p95_ms`` is the 95th percentile (linear interpolation), ``std_ms`` the sample standard
    deviation (ddof=1), ``threads`` the intra-op thread count the calls ran with.
    """

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    p95_ms: float
    rounds: int
    threads: int

    @property
    def fps(self) -> float:
        """Calls per second at the median latency (frames per second for one image a call)."""
        return 1000.0 / self.median_ms if self.median_ms > 0 else float("inf")


@dataclass(frozen=True)
class SpeedupResult:
    """Speedup of candidate ``b`` over reference ``a``: ``median(t_a) / median(t_b)``.

    Greater than 1 means ``b`` is faster. ``[ci_low, ci_high]`` is a paired-bootstrap
    percentile interval at level ``confidence``.
    """

    speedup: float
    ci_low: float
    ci_high: float
    confidence: float
    a: LatencyStats
    b: LatencyStats


def _validate(*, threads: int, warmup: int, rounds: int) -> None:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 3:
        raise ValueError(f"rounds must be an integer >= 3, got {rounds!r}")


def _stats(samples_ms: np.ndarray, threads: int) -> LatencyStats:
    return LatencyStats(
        median_ms=float(np.median(samples_ms)),
        mean_ms=float(np.mean(samples_ms)),
        std_ms=float(np.std(samples_ms, ddof=1)),
        min_ms=float(np.min(samples_ms)),
        p95_ms=float(np.percentile(samples_ms, 95)),
        rounds=int(samples_ms.size),
        threads=threads,
    )


@contextmanager
def _timing_context(threads: int) -> Iterator[None]:
    """Pinned threads, inference mode, the cyclic GC paused (as ``timeit`` does), and the
    allocator pinned (:func:`steady_allocator`)."""
    steady_allocator()
    gc_was_enabled = gc.isenabled()
    with num_threads(threads), torch.inference_mode():
        gc.disable()
        try:
            yield
        finally:
            if gc_was_enabled:
                gc.enable()


def _time_ms(fn: Callable[[], Any]) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / 1e6


def measure_latency(
    fn: Callable[[], Any], *, threads: int = 1, warmup: int = 5, rounds: int = 30
) -> LatencyStats:
    """Time ``fn()``: ``warmup`` untimed calls then ``rounds`` timed ones.

    Runs under ``torch.inference_mode()`` with ``torch.set_num_threads(threads)`` (restored
    afterwards) and the cyclic garbage collector paused; each call is timed with
    ``time.perf_counter_ns``.

    Raises:
        ValueError: if ``threads < 1``, ``warmup < 0`` or ``rounds < 3``.
    """
    _validate(threads=threads, warmup=warmup, rounds=rounds)
    with _timing_context(threads):
        for _ in range(warmup):
            fn()
        samples = np.array([_time_ms(fn) for _ in range(rounds)])
    return _stats(samples, threads)


def compare_latency(
    fn_a: Callable[[], Any],
    fn_b: Callable[[], Any],
    *,
    threads: int = 1,
    warmup: int = 5,
    rounds: int = 30,
    confidence: float = 0.95,
    seed: int = 0,
) -> SpeedupResult:
    """Speedup of ``fn_b`` (candidate) over ``fn_a`` (reference), timed in the same process.

    Both are warmed up (``warmup`` calls each, alternating), then timed in ``rounds`` pairs,
    interleaved A B, B A, A B, ... (ABBA: the first of a pair alternates, cancelling order
    effects such as cache warmth), so machine drift during the run affects both alike.
    ``speedup = median(t_a) / median(t_b)``. The confidence interval is a paired bootstrap:
    ``2000`` resamples of the pair indices (``numpy.random.default_rng(seed)``), the ratio of
    medians of each resample, and its percentile interval; if that interval does not contain
    the point estimate (possible with few rounds, medians being discrete), it is widened to
    include it.

    Runs under ``torch.inference_mode()`` with ``threads`` intra-op threads (restored after).

    Raises:
        ValueError: if ``threads < 1``, ``warmup < 0``, ``rounds < 3`` or ``confidence``
            is not in (0, 1).
    """
    _validate(threads=threads, warmup=warmup, rounds=rounds)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")

    t_a = np.empty(rounds)
    t_b = np.empty(rounds)
    with _timing_context(threads):
        for _ in range(warmup):
            fn_a()
            fn_b()
        for i in range(rounds):
            if i % 2 == 0:
                t_a[i] = _time_ms(fn_a)
                t_b[i] = _time_ms(fn_b)
            else:
                t_b[i] = _time_ms(fn_b)
                t_a[i] = _time_ms(fn_a)

    speedup = float(np.median(t_a) / np.median(t_b))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, rounds, size=(_BOOTSTRAP_RESAMPLES, rounds))
    ratios = np.median(t_a[idx], axis=1) / np.median(t_b[idx], axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [alpha, 1.0 - alpha])
    return SpeedupResult(
        speedup=speedup,
        ci_low=min(float(low), speedup),
        ci_high=max(float(high), speedup),
        confidence=float(confidence),
        a=_stats(t_a, threads),
        b=_stats(t_b, threads),
    )
