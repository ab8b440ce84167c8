"""Memory budget: peak bytes allocated during one inference (memray); peak RSS is reported."""

import pytest

pytestmark = pytest.mark.navya_budget


def test_peak_memory(variant, navya_suite, record_property):
    bench, name = navya_suite.case(variant)
    record_property("rss_mb", bench.rss_mb(name))
    navya_suite.check(variant, "max_peak_mem_mb")
