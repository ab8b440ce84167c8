"""Accuracy budget: the mAP drop of every variant against fp32, scored in the same run."""

import pytest

pytestmark = pytest.mark.navya_budget


def test_map_drop(variant, navya_suite, record_property):
    for key, value in navya_suite.properties(variant, "map", "per_class_drop_points").items():
        record_property(key, value)
    navya_suite.check(variant, "max_map_drop_points")
