"""Accuracy budget: the mAP drop of every variant against fp32, scored in the same run."""

import pytest

pytestmark = pytest.mark.navya_budget


def test_map_drop(variant, navya_suite, record_property):
    drops = {}
    if variant != "fp32":
        ref = navya_suite.evaluation("fp32").ap["all-point"]
        own = navya_suite.evaluation(variant).ap["all-point"]
        drops = {c: round((ref[c] - own[c]) * 100, 3) for c in ref}
    record_property("map", navya_suite.map(variant))
    record_property("per_class_drop_points", drops)
    navya_suite.check(variant, "max_map_drop_points",
                      lambda: navya_suite.map_drop_points(variant))
