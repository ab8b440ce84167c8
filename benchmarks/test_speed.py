"""Speed budget: end-to-end speedup over fp32 at threads=1, both timed interleaved in this run."""

import pytest

pytestmark = pytest.mark.navya_budget


def test_speedup(variant, navya_suite, record_property):
    bench = navya_suite.bench
    if variant != bench.reference:
        result = bench.speedup(variant)
        record_property("speedup_ci", (result.ci_low, result.ci_high))
    navya_suite.check(variant, "min_speedup")
