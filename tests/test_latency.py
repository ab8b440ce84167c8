"""Tests for navya.metrics.latency (and navya.runtime's thread and allocator pins). No absolute time threshold anywhere: only orderings/ratios."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from navya.metrics.latency import (
    LatencyStats,
    SpeedupResult,
    compare_latency,
    measure_latency,
)
from navya.runtime import num_threads

_A = torch.randn(192, 192)


def _work(units: int) -> torch.Tensor:
    out = _A
    for _ in range(units):
        out = (_A @ out).tanh()
    return out


def _other_thread_count() -> int:
    return 2 if torch.get_num_threads() == 1 else 1


def test_stats_are_positive_and_ordered() -> None:
    stats = measure_latency(lambda: _work(2), warmup=2, rounds=10)

    assert isinstance(stats, LatencyStats)
    assert (stats.rounds, stats.threads) == (10, 1)
    assert 0 < stats.min_ms <= stats.median_ms <= stats.p95_ms
    assert stats.min_ms <= stats.mean_ms
    assert stats.std_ms >= 0
    assert stats.fps == pytest.approx(1000.0 / stats.median_ms)


def test_fn_runs_with_the_requested_threads_in_inference_mode() -> None:
    before = torch.get_num_threads()
    requested = _other_thread_count()
    seen: list[tuple[int, bool]] = []

    def fn() -> None:
        seen.append((torch.get_num_threads(), torch.is_inference_mode_enabled()))

    measure_latency(fn, threads=requested, warmup=1, rounds=3)

    assert seen == [(requested, True)] * 4
    assert torch.get_num_threads() == before


def test_threads_are_restored_after_an_exception() -> None:
    before = torch.get_num_threads()

    def boom() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        measure_latency(boom, threads=_other_thread_count(), warmup=0, rounds=3)
    assert torch.get_num_threads() == before

    with pytest.raises(KeyError), num_threads(_other_thread_count()):
        raise KeyError("boom")
    assert torch.get_num_threads() == before


def test_compare_with_itself_is_near_one() -> None:
    result = compare_latency(lambda: _work(2), lambda: _work(2), warmup=2, rounds=20)

    assert isinstance(result, SpeedupResult)
    assert result.ci_low <= result.speedup <= result.ci_high
    assert 0.5 < result.speedup < 2.0
    assert result.confidence == 0.95
    assert result.a.rounds == result.b.rounds == 20
    assert result.speedup == pytest.approx(result.a.median_ms / result.b.median_ms)


def test_compare_sees_the_faster_candidate() -> None:
    slow, fast = (lambda: _work(10)), (lambda: _work(2))  # 5x the work

    result = compare_latency(slow, fast, warmup=2, rounds=12)

    assert result.speedup > 1.0
    assert result.ci_high > 1.0
    assert result.a.median_ms > result.b.median_ms


def test_compare_alternates_the_order_of_each_pair() -> None:
    calls: list[str] = []
    compare_latency(lambda: calls.append("a"), lambda: calls.append("b"), warmup=1, rounds=4)
    assert "".join(calls) == "ab" + "abbaabba"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rounds": 2},
        {"warmup": -1},
        {"threads": 0},
        {"confidence": 0.0},
        {"confidence": 1.0},
    ],
)
def test_invalid_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        compare_latency(lambda: None, lambda: None, **kwargs)
    if "confidence" not in kwargs:
        with pytest.raises(ValueError):
            measure_latency(lambda: None, **kwargs)


def test_num_threads_rejects_nonpositive() -> None:
    with pytest.raises(ValueError), num_threads(0):
        pass


_FAULTS_SCRIPT = r"""
import json, resource, sys
import torch
from navya.runtime import steady_allocator

state, again = steady_allocator(), steady_allocator()
numel = (8 << 20) // 4


def forward_like():  # four 8 MB blocks alive at once, then all freed, as in a forward pass
    live = [torch.ones(numel) for _ in range(4)]
    return sum(float(t[0]) for t in live)


for _ in range(3):
    forward_like()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    forward_like()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"state": state, "again": again, "faults_per_call": faults,
                  "pages_per_call": 4 * numel * 4 // resource.getpagesize()}))
"""


def _faults() -> dict:
    out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # 7 s of page-fault counting: `pytest tests/ -m slow`; .ci/run runs it
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux only")
def test_steady_allocator_stops_per_call_page_faults() -> None:
    """After steady_allocator(), a forward pass's freed activations stay in the heap: no page
    faults on the next call, in every process. With glibc's defaults the same pattern faulted
    every page back in (8,160 of 8,192 a call) in about half the processes and not at all in
    the others (measured over 10 runs here: the heap's placement decides), which is why timing
    pins it; so the unpinned control cannot be asserted, and the pinned case is checked in
    several fresh processes (a broken pin would pass all four about one time in sixteen)."""
    for _ in range(4):
        steady = _faults()
        assert steady["state"]["allocator"].startswith("glibc"), steady
        assert steady["state"]["mmap_threshold_bytes"] == 32 * 1024 * 1024
        assert steady["again"] == steady["state"]
        # < 10 % of the pages (unpinned: ~100 %); one full test run here saw 213 of 8,192
        # (2.6 %) while the host reclaimed memory (kdamond runs here), hence not 1 %
        assert steady["faults_per_call"] < steady["pages_per_call"] / 10, steady
