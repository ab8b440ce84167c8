"""pytest-benchmark latency of every variant (end to end, post-processing included), at each
thread count of --navya-threads. History and regressions: --benchmark-autosave and
``pytest-benchmark compare``."""

import torch

from navya.runtime import num_threads


def test_latency(benchmark, variant, threads, navya_suite):
    model, images, rounds, info = navya_suite.timed_call(variant, threads)
    benchmark.group = f"latency threads={threads}"
    benchmark.extra_info.update(info)
    with num_threads(threads), torch.inference_mode():
        benchmark.pedantic(model, args=(images,), rounds=rounds, warmup_rounds=5, iterations=1)


def test_network_latency(variant, navya_suite, record_property):
    """Network-only time (no pre/post-processing), threads=1, reported beside end to end."""
    median = navya_suite.properties(variant, "net_latency_ms_median")["net_latency_ms_median"]
    record_property("net_latency_ms_median", median)
    assert median > 0
