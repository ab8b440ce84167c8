"""Size and MACs budgets: serialized artifact (dense and zipped) and multiply-accumulates."""

import pytest

pytestmark = pytest.mark.navya_budget


def test_size_ratio(variant, navya_suite):
    ref = navya_suite.stats("fp32")["size_bytes"]
    navya_suite.check(variant, "min_size_ratio",
                      lambda: ref / navya_suite.stats(variant)["size_bytes"])


def test_zip_size_ratio(variant, navya_suite):
    ref = navya_suite.stats("fp32")["size_zip_bytes"]
    navya_suite.check(variant, "min_zip_size_ratio",
                      lambda: ref / navya_suite.stats(variant)["size_zip_bytes"])


def test_macs_reduction(variant, navya_suite):
    ref = navya_suite.stats("fp32")["macs"]
    navya_suite.check(variant, "min_macs_reduction",
                      lambda: 1 - navya_suite.stats(variant)["macs"] / ref)
