"""Size and MACs budgets: serialized artifact (dense and zipped) and multiply-accumulates."""

import pytest

pytestmark = pytest.mark.navya_budget


def test_size_ratio(variant, navya_suite):
    navya_suite.check(variant, "min_size_ratio")


def test_zip_size_ratio(variant, navya_suite):
    navya_suite.check(variant, "min_zip_size_ratio")


def test_macs_reduction(variant, navya_suite):
    navya_suite.check(variant, "min_macs_reduction")
