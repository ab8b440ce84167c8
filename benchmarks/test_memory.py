"""Memory budget: peak bytes allocated during one inference (memray); peak RSS is reported."""

import pytest

pytestmark = pytest.mark.navya_budget


def test_peak_memory(variant, navya_suite, record_property):
    for key, value in navya_suite.properties(variant, "rss_mb").items():
        record_property(key, value)
    navya_suite.check(variant, "max_peak_mem_mb")
