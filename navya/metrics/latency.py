"""Wall-clock latency: single measurement and same-process A/B speedup with a bootstrap CI.

Protocol (docs/DESIGN.md, "Measurement protocol"): the intra-op thread count is pinned for the
measurement and restored afterwards, calls are warmed up, then timed for many rounds; the
median is the headline figure. Absolute milliseconds drift between runs on the same machine,
so budgets use :func:`compare_latency`, which times a reference and a candidate interleaved
in the same process and reports their speedup ratio.

Two process-history effects (glibc's allocator, and the thread count at an INT8 model's first
call) are controlled by :mod:`navya.runtime`: every timing function here pins the allocator
(:func:`~navya.runtime.steady_allocator`) and the thread count
(:func:`~navya.runtime.num_threads`); time a fresh :func:`~navya.runtime.timing_copy`.
``num_threads``, ``steady_allocator`` and ``timing_copy`` stay importable from here.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# re-exported: the measurement code imports them from here
from navya.runtime import num_threads, steady_allocator, timing_copy

__all__ = [
    "LatencyStats",
    "SpeedupResult",
    "compare_latency",
    "measure_latency",
    "num_threads",
    "speedup_from_samples",
    "steady_allocator",
    "time_interleaved",
    "timing_copy",
]

_BOOTSTRAP_RESAMPLES = 2000


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

    t_a, t_b = time_interleaved(fn_a, fn_b, threads=threads, warmup=warmup, rounds=rounds)
    return speedup_from_samples(t_a, t_b, threads=threads, confidence=confidence, seed=seed)


def time_interleaved(fn_a: Callable[[], Any], fn_b: Callable[[], Any], *, threads: int = 1,
                     warmup: int = 5, rounds: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Per-call times (ms) of ``fn_a`` and ``fn_b``: ``warmup`` alternating untimed calls
    each, then ``rounds`` pairs timed A B, B A, A B, ... (the protocol of
    :func:`compare_latency`)."""
    _validate(threads=threads, warmup=warmup, rounds=rounds)
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
    return t_a, t_b


def speedup_from_samples(t_a, t_b, *, threads: int = 1, confidence: float = 0.95,
                         seed: int = 0) -> SpeedupResult:
    """The :class:`SpeedupResult` of paired per-call times (ms) of a reference ``t_a`` and a
    candidate ``t_b`` (same length, timed interleaved): ratio of medians and its paired
    bootstrap interval, as :func:`compare_latency` reports it."""
    t_a, t_b = np.asarray(t_a, dtype=float), np.asarray(t_b, dtype=float)
    if t_a.shape != t_b.shape or t_a.ndim != 1 or t_a.size < 3:
        raise ValueError(f"paired samples of equal length >= 3 expected, got {t_a.shape} and "
                         f"{t_b.shape}")
    rounds = t_a.size
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
