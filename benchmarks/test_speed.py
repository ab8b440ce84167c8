"""Speed budget: end-to-end speedup over fp32 at threads=1, both timed interleaved in this run."""

import pytest

pytestmark = pytest.mark.navya_budget


def test_speedup(variant, navya_suite, record_property):
    if variant != "fp32":
        result = navya_suite.speedup(variant)
        record_property("speedup_ci", (result.ci_low, result.ci_high))
    navya_suite.check(variant, "min_speedup", lambda: navya_suite.speedup(variant).speedup)
