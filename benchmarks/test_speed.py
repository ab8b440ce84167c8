"""Speed: each variant's end-to-end speedup over fp32 at threads=1, timed interleaved in a fresh
worker process pinned to one core.

``test_speedup`` holds it to its floor in budgets.toml: an INT8 or half-precision variant's
floor of this machine's CPU class (NO BUDGET FOR CLASS where that class has none), a float
variant's floor that every measured machine meets. ``test_speed_regression`` compares it with the runs recorded on this very machine
(benchmarks/baselines/speed/<machine>.json), with a tolerance derived from their spread; for
fp32 it guards the reference's own cost against a fixed yardstick workload, which catches a
slowdown shared by every variant (pre-processing, decoding, NMS) that the ratios cancel."""

import pytest

pytestmark = pytest.mark.navya_budget


def test_speedup(variant, navya_suite, record_property):
    for key, value in navya_suite.properties(variant, "speedup_ci").items():
        record_property(key, value)
    navya_suite.check(variant, "min_speedup")


def test_p95_speedup(variant, navya_suite):
    """The tail: the variant's 95th-percentile latency against the reference's, same run."""
    navya_suite.check(variant, "min_p95_speedup")


def test_speed_regression(variant, navya_suite, record_property):
    navya_suite.check_speed_baseline(variant)
    for key, value in navya_suite.properties(variant, "speed_runs").items():
        record_property(key, value)
