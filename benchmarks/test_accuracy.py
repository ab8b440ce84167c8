"""Accuracy budget: the mAP drop of every variant against fp32, scored in the same run."""

import pytest

pytestmark = pytest.mark.navya_budget


def test_map_drop(variant, navya_suite, record_property):
    bench, name = navya_suite.case(variant)  # the model's engine, the variant's name
    record_property("map", bench.map(name))
    if name != bench.reference:
        ref, own = bench.class_ap(bench.reference), bench.class_ap(name)
        record_property("per_class_drop_points", {
            c: None if ref[c] is None or own[c] is None else round((ref[c] - own[c]) * 100, 3)
            for c in ref})
    navya_suite.check(variant, "max_map_drop_points")
