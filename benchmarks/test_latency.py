"""pytest-benchmark latency of every variant (end to end, post-processing included), at each
thread count of --navya-threads. History and regressions: --benchmark-autosave and
``pytest-benchmark compare``."""

import torch

from navya.runtime import num_threads


def test_latency(benchmark, variant, threads, navya_suite):
    bench, name = navya_suite.case(variant)  # the model's engine, the variant's name
    model = bench.timed_model(name, threads)  # first called at this thread count
    images = bench.images
    benchmark.group = f"latency threads={threads}"
    benchmark.extra_info.update(bench.deterministic_figures(name))
    benchmark.extra_info["config"] = bench.config_dict(name)
    benchmark.extra_info["model"] = navya_suite.model_of(variant)
    benchmark.extra_info["threads"] = threads
    with num_threads(threads), torch.inference_mode():
        benchmark.pedantic(model, args=(images,), rounds=bench.settings.rounds, warmup_rounds=5,
                           iterations=1)


def test_network_latency(variant, navya_suite, record_property):
    """Network-only time (no pre/post-processing), threads=1, reported beside end to end."""
    bench, name = navya_suite.case(variant)
    stats = bench.net_latency(name)
    record_property("net_latency_ms_median", stats.median_ms)
    assert stats.median_ms > 0
